"""The text ``dwatch evaluate --truth`` prints: headline, per-detector table, misses,
PR-AUC per behaviour, per-taxpayer truth, chains, false alerts and coverage gaps."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dwatch.evaluate_truth import TruthReport


def _f(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def render(r: TruthReport) -> str:
    found = sum(1 for i in r.instances if i["found"])
    alerts = sum(d.alerts for d in r.detectors)
    right = sum(d.right for d in r.detectors)
    context = sum(d.context for d in r.detectors)
    lines = [
        f"alerts {alerts}: right {right}, context of an injected case {context}, false {r.false_alerts};"
        f" precision {_f(right / alerts if alerts else None)}"
        f" ({_f((right + context) / alerts if alerts else None)} counting context as right)",
        f"labelled events {r.labelled_events:,} ({r.lawful_events:,} lawful); "
        f"injected instances found {found}/{len(r.instances)}",
        f"false alerts {r.false_alerts} = {r.false_per_10k:.1f} per 10,000 lawful events; lawful events "
        f"named by any alert {r.lawful_touched:,} ({100 * r.lawful_touched / max(1, r.lawful_events):.2f}%)",
        "",
        r.on_lawful,
        "",
        "| detector | alerts | right | context | false | false per 10,000 lawful | precision"
        " | instances | recall | event recall |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for d in r.detectors:
        lines.append(
            f"| {d.detector_id} | {d.alerts} | {d.right} | {d.context} | {d.false + d.unresolved} | "
            f"{r.detector_false_per_10k(d):.2f} | "
            f"{_f(d.precision)} | {d.found_instances}/{d.expected_instances} | {_f(d.recall)} | "
            f"{_f(d.event_recall)} |"
        )
    missed = [i for i in r.instances if i["missed"]]
    lines += ["", "missed (instance: expected detectors that did not find it):"]
    lines += [f"  {i['instance_id']}: {', '.join(i['missed'])}" for i in missed] or ["  none"]
    lines += [
        "",
        "| behaviour | detector | PR-AUC (other cases' alerts left out) | alerts | left out |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {p['kind']} | {p['detector']} | {_f(p['pr_auc'])} | {p['alerts']} |"
        f" {p.get('other_cases_left_out', 0)} |"
        for p in r.pr_auc
    ]
    lines += [
        "",
        "| per-taxpayer truth | detector | truth | reported (sum) | distinct stored | missing | extra |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {s['truth_set']} | {s['detector']} | {s['truth']} | {s['reported_sum']} | "
        f"{'n/a' if s['distinct'] is None else s['distinct']} | "
        f"{'n/a' if s['missing'] is None else s['missing']} | {'n/a' if s['extra'] is None else s['extra']} |"
        for s in r.subjects
    ]
    c = r.chains
    lines += [
        "",
        f"whole chains: {c['whole']}/{c['judged']} right alerts on a chain name its request, "
        f"disclosure and receipt events; partial by detector: {c['partial_by_detector'] or 'none'}",
    ]
    lines += ["", "false alerts by detector -> recipient:"]
    lines += [f"  {k}: {n}" for k, n in r.false_by.items()] or ["  none"]
    lines += [
        "",
        "coverage gaps (failed batch checks) per source, and how many name only lawful rows:",
    ]
    lines += [
        f"  {g['source_system']}: {g['expectation']} x{g['gaps']} (on lawful rows {g['on_lawful_rows']})"
        for g in r.coverage
    ] or ["  none"]
    return "\n".join(lines)
