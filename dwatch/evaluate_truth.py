"""Score a store's alerts against any labelled set (``dwatch evaluate --truth DIR``).

The label format is documented in docs/evaluation-labels.md: ``labels/events.csv`` (one row
per logged event: source, id, lawful/violation/anomaly, injected instance, chain),
``labels/instances.json`` (each injected case and the detectors expected to find it) and
``labels/subjects.csv`` (per-taxpayer truth, identifiers as the logs wrote them). Nothing
here knows which writer made the set: the probe (``benchmarks.probe``) and any other.

An alert is matched to labelled events through its ``event_ids`` (with the alert's
``source_system`` when that names the event's log), the ``alert_events`` table (events keyed
with their log, when the store has it) and any ``{source_system, event_id}`` objects or
``*event_ids`` lists in its evidence. It is *right* when it touches an instance
that lists its detector as expected or acceptable, *context* when it touches an injected
instance that does not, and *false* when it touches only lawful events or none.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from dwatch.errors import InputError
from dwatch.evaluate_lawful import coverage_on_lawful, lawful_summary
from dwatch.masking import pseudonymise_id
from dwatch.pseudonym import pseudonymise

EventKey = tuple[str, str]  # (source_system, event_id)
CHAIN_TYPES = ("request", "disclosure", "receipt")
# Which detector's alerts the courts' per-taxpayer count of each truth set is read from.
SUBJECT_DETECTORS = {
    "disclosed_without_usable_address": "disclosure_without_valid_address",
    "disclosed_under_enjoined_flow": "disclosure_under_court_order",
    "used_after_order": "use_after_court_order",
}


@dataclass(frozen=True)
class LabelledEvent:
    label: str  # lawful | violation | anomaly
    instance_id: str
    kind: str
    chain_id: str
    event_type: str


@dataclass
class Truth:
    events: dict[EventKey, LabelledEvent]
    instances: dict[str, dict[str, Any]]
    subjects: list[dict[str, str]]
    manifest: dict[str, Any]
    by_id: dict[str, list[EventKey]] = field(default_factory=dict)
    by_instance: dict[str, set[EventKey]] = field(default_factory=dict)
    by_chain: dict[str, set[EventKey]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key, ev in self.events.items():
            self.by_id.setdefault(key[1], []).append(key)
            if ev.instance_id:
                self.by_instance.setdefault(ev.instance_id, set()).add(key)
            if ev.chain_id and ev.event_type in CHAIN_TYPES:
                self.by_chain.setdefault(ev.chain_id, set()).add(key)

    @property
    def lawful(self) -> int:
        return sum(1 for e in self.events.values() if e.label == "lawful")


def _read_csv(path: Path, required: set[str]) -> list[dict[str, str]]:
    if not path.is_file():
        raise InputError("label file missing", where=str(path), fix="see docs/evaluation-labels.md")
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = required - set(reader.fieldnames or [])
        if missing:
            raise InputError(
                f"label file lacks column(s) {sorted(missing)}",
                where=str(path),
                fix="write the header named in docs/evaluation-labels.md",
            )
        return list(reader)


def load_truth(root: Path, key: bytes | None = None) -> Truth:
    """Read DIR/labels/ (or DIR itself when it holds events.csv).

    With the store's ``key``, a labelled id carrying an SSN/TIN shape is keyed as ingest
    stored it (the pseudonym of the whole id, dwatch.masking), so such events still match."""
    labels = root / "labels" if (root / "labels").is_dir() else root
    events: dict[EventKey, LabelledEvent] = {}
    rows = _read_csv(labels / "events.csv", {"source_system", "event_id", "label", "instance_id"})
    for n, row in enumerate(rows, start=2):
        if row["label"] not in {"lawful", "violation", "anomaly"}:
            raise InputError(
                f"label {row['label']!r} is not lawful, violation or anomaly",
                where=f"{labels / 'events.csv'}:{n}: label",
                fix="use one of lawful, violation, anomaly",
            )
        source, event_id = row["source_system"], row["event_id"]
        if key is not None:
            source = pseudonymise_id(source, key) or source
            event_id = pseudonymise_id(event_id, key) or event_id
        events[(source, event_id)] = LabelledEvent(
            row["label"],
            row["instance_id"],
            row.get("kind", ""),
            row.get("chain_id", ""),
            row.get("event_type", ""),
        )
    path = labels / "instances.json"
    if not path.is_file():
        raise InputError("label file missing", where=str(path), fix="see docs/evaluation-labels.md")
    instances = {i["instance_id"]: i for i in json.loads(path.read_text(encoding="utf-8"))}
    for key, ev in events.items():
        if ev.instance_id and ev.instance_id not in instances:
            raise InputError(
                f"event {key[1]} names instance {ev.instance_id!r} that instances.json lacks",
                where=str(labels / "events.csv"),
                fix="add the instance to instances.json or correct the event's instance_id",
            )
    subjects_path = labels / "subjects.csv"
    subjects = _read_csv(subjects_path, {"truth_set", "taxpayer"}) if subjects_path.exists() else []
    manifest_path = labels / "manifest.json"
    manifest = (
        json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.exists() else {}
    )
    return Truth(events, instances, subjects, manifest)


# ---------------------------------------------------------------------------- matching alerts


def _evidence_keys(evidence: Any, out: set[tuple[str | None, str]]) -> None:
    """{source_system, event_id} objects and *event_ids lists anywhere in the evidence."""
    if isinstance(evidence, dict):
        source = evidence.get("source_system")
        if "event_id" in evidence and evidence["event_id"] is not None:
            out.add((source, str(evidence["event_id"])))
        for name, value in evidence.items():
            if name.endswith("event_ids") and isinstance(value, list):
                out.update(
                    (source, str(v)) for v in value if v is not None and not isinstance(v, dict)
                )
            _evidence_keys(value, out)
    elif isinstance(evidence, list):
        for value in evidence:
            _evidence_keys(value, out)


def resolve(
    truth: Truth, alert_source: str | None, ids: set[tuple[str | None, str]]
) -> set[EventKey]:
    """Labelled events an alert names; a bare id found in several logs counts for each."""
    keys: set[EventKey] = set()
    for source, event_id in ids:
        for candidate in (source, alert_source):
            if candidate and (candidate, event_id) in truth.events:
                keys.add((candidate, event_id))
                break
        else:
            keys.update(truth.by_id.get(event_id, []))
    return keys


@dataclass
class ScoredAlert:
    alert_id: str
    detector_id: str
    detector_kind: str
    score: float | None
    subjects_affected: int | None
    recipient_agency: str | None
    events: set[EventKey]
    verdict: str = "false"  # right | context | false | unresolved
    instances: set[str] = field(default_factory=set)


def _tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {
        r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()
    }


def _keyed_events(con: duckdb.DuckDBPyConnection) -> dict[str, set[tuple[str | None, str]]]:
    """Events each alert names with their log (table alert_events, when the store has it)."""
    keyed: dict[str, set[tuple[str | None, str]]] = defaultdict(set)
    if "alert_events" in _tables(con):
        for alert_id, source, event_id in con.execute(
            "SELECT alert_id, source_system, event_id FROM alert_events"
        ).fetchall():
            keyed[alert_id].add((source, str(event_id)))
    return keyed


def read_alerts(con: duckdb.DuckDBPyConnection, truth: Truth) -> list[ScoredAlert]:
    keyed = _keyed_events(con)
    rows = con.execute(
        "SELECT alert_id, detector_id, detector_kind, score, subjects_affected, recipient_agency, source_system,"
        " event_ids, evidence FROM alerts WHERE status = 'open' ORDER BY alert_id"
    ).fetchall()
    alerts = []
    for alert_id, detector, kind, score, subjects, recipient, source, event_ids, evidence in rows:
        ids: set[tuple[str | None, str]] = {(None, str(i)) for i in event_ids or []} | keyed[
            alert_id
        ]
        _evidence_keys(json.loads(evidence) if isinstance(evidence, str) else evidence, ids)
        a = ScoredAlert(
            alert_id, detector, kind, score, subjects, recipient, resolve(truth, source, ids)
        )
        for key in a.events:
            inst = truth.events[key].instance_id
            if inst:
                a.instances.add(inst)
        wanted = {
            i for i in a.instances
            if detector in truth.instances[i]["expected"] or detector in truth.instances[i].get("acceptable", [])
        }  # fmt: skip
        if wanted:
            a.verdict, a.instances = "right", wanted
        elif a.instances:
            a.verdict = "context"
        elif not a.events:
            a.verdict = "unresolved"
        alerts.append(a)
    return alerts


# ---------------------------------------------------------------------------- figures


def average_precision(ranked: list[ScoredAlert], instances: set[str]) -> float:
    """PR-AUC over a detector's alerts ranked by score: each instance counts once, at the
    first alert that reaches it; instances never reached add nothing (recall stays short).

    The negatives are alerts on lawful events only: an alert that reaches another injected
    instance and none of these is left out of the ranking, not counted as a false positive
    (an insider's alert is not a miss of the volume spike ranked below it)."""
    if not instances:
        return 0.0
    ranked = [a for a in ranked if not a.instances or a.instances & instances]
    seen: set[str] = set()
    hits, total = 0, 0.0
    for rank, a in enumerate(ranked, start=1):
        touched = a.instances & instances
        if touched:
            hits += 1
        new = touched - seen
        if new:
            total += len(new) * hits / rank
            seen |= new
    return total / len(instances)


@dataclass
class DetectorFigures:
    detector_id: str
    alerts: int = 0
    right: int = 0
    context: int = 0
    false: int = 0
    unresolved: int = 0
    expected_instances: int = 0
    found_instances: int = 0
    event_recall: float | None = None

    @property
    def precision(self) -> float | None:
        return self.right / self.alerts if self.alerts else None

    @property
    def recall(self) -> float | None:
        return self.found_instances / self.expected_instances if self.expected_instances else None


@dataclass
class TruthReport:
    manifest: dict[str, Any]
    lawful_events: int
    labelled_events: int
    detectors: list[DetectorFigures]
    instances: list[dict[str, Any]]
    false_alerts: int
    lawful_touched: int
    pr_auc: list[dict[str, Any]]
    subjects: list[dict[str, Any]]
    chains: dict[str, Any]
    coverage: list[dict[str, Any]]
    false_by: dict[str, int]

    @property
    def false_per_10k(self) -> float:
        return 10_000 * self.false_alerts / self.lawful_events if self.lawful_events else 0.0

    def detector_false_per_10k(self, d: DetectorFigures) -> float:
        return 10_000 * (d.false + d.unresolved) / self.lawful_events if self.lawful_events else 0.0

    @property
    def on_lawful(self) -> str:
        false = {d.detector_id: d.false + d.unresolved for d in self.detectors}
        return lawful_summary(self.coverage, false)

    def to_json(self) -> str:
        body = {k: v for k, v in self.__dict__.items() if k != "detectors"}
        body["detectors"] = [
            {
                **d.__dict__,
                "precision": d.precision,
                "recall": d.recall,
                "false_per_10k_lawful": self.detector_false_per_10k(d),
            }
            for d in self.detectors
        ]
        body["false_alerts_per_10k_lawful"] = self.false_per_10k
        body["on_lawful_rows"] = self.on_lawful
        return json.dumps(body, indent=1, default=str)

    def render(self) -> str:
        from dwatch.evaluate_truth_render import render

        return render(self)


def _detector_figures(truth: Truth, alerts: list[ScoredAlert]) -> list[DetectorFigures]:
    figures: dict[str, DetectorFigures] = {}
    covered: dict[tuple[str, str], set[EventKey]] = defaultdict(set)
    for a in alerts:
        f = figures.setdefault(a.detector_id, DetectorFigures(a.detector_id))
        f.alerts += 1
        setattr(f, a.verdict, getattr(f, a.verdict) + 1)
        for inst in a.instances if a.verdict == "right" else ():
            covered[(a.detector_id, inst)] |= a.events & truth.by_instance.get(inst, set())
    for inst_id, inst in truth.instances.items():
        for detector in inst["expected"]:
            f = figures.setdefault(detector, DetectorFigures(detector))
            f.expected_instances += 1
            f.found_instances += (detector, inst_id) in covered
    for f in figures.values():
        insts = [i for i, inst in truth.instances.items() if f.detector_id in inst["expected"]]
        events = sum(len(truth.by_instance.get(i, set())) for i in insts)
        if events:
            f.event_recall = sum(len(covered[(f.detector_id, i)]) for i in insts) / events
    return sorted(figures.values(), key=lambda f: f.detector_id)


def _instance_rows(truth: Truth, alerts: list[ScoredAlert]) -> list[dict[str, Any]]:
    found: dict[str, set[str]] = defaultdict(set)
    for a in alerts:
        for inst in a.instances if a.verdict == "right" else ():
            found[inst].add(a.detector_id)
    rows = []
    for inst_id, inst in truth.instances.items():
        hit = found[inst_id] & set(inst["expected"])
        rows.append(
            {
                "instance_id": inst_id,
                "kind": inst["kind"],
                "family": inst["family"],
                "expected": inst["expected"],
                "found_by": sorted(found[inst_id]),
                "found": bool(hit),
                "missed": sorted(set(inst["expected"]) - hit),
            }
        )
    return rows


def _pr_auc(truth: Truth, alerts: list[ScoredAlert]) -> list[dict[str, Any]]:
    by_kind: dict[str, set[str]] = defaultdict(set)
    detectors: dict[str, set[str]] = defaultdict(set)
    for inst_id, inst in truth.instances.items():
        if inst["family"] == "behaviour":
            by_kind[inst["kind"]].add(inst_id)
            detectors[inst["kind"]].update(inst["expected"])
    rows = []
    for kind, insts in sorted(by_kind.items()):
        for detector in sorted(detectors[kind]):
            mine = [a for a in alerts if a.detector_id == detector]
            scored = [a for a in mine if a.score is not None]
            if len(scored) < len(mine):
                rows.append(
                    {
                        "kind": kind,
                        "detector": detector,
                        "pr_auc": None,
                        "alerts": len(mine),
                        "note": "alerts carry no score",
                    }
                )
                continue
            ranked = sorted(scored, key=lambda a: -float(a.score or 0.0))
            # average_precision leaves alerts on other injected cases out; say how many
            left_out = sum(1 for a in scored if a.instances and not a.instances & insts)
            rows.append(
                {
                    "kind": kind,
                    "detector": detector,
                    "pr_auc": average_precision(ranked, insts),
                    "alerts": len(mine),
                    "other_cases_left_out": left_out,
                    "note": f"{left_out} alert(s) on other injected cases left out"
                    if left_out
                    else "",
                }
            )
    return rows


def _subjects(
    con: duckdb.DuckDBPyConnection, truth: Truth, alerts: list[ScoredAlert], key: bytes | None
) -> list[dict[str, Any]]:
    tables = _tables(con)
    rows = []
    for truth_set, detector in SUBJECT_DETECTORS.items():
        expected = {s["taxpayer"] for s in truth.subjects if s["truth_set"] == truth_set}
        if not expected:
            continue
        summed = sum(a.subjects_affected or 0 for a in alerts if a.detector_id == detector)
        row: dict[str, Any] = {
            "truth_set": truth_set,
            "detector": detector,
            "truth": len(expected),
            "reported_sum": summed,
            "distinct": None,
            "missing": None,
            "extra": None,
        }
        if "alert_subjects" in tables and key is not None:
            stored = {
                r[0]
                for r in con.execute(
                    "SELECT DISTINCT s.taxpayer_ref FROM alert_subjects s JOIN alerts a USING (alert_id)"
                    " WHERE a.status = 'open' AND a.detector_id = ?",
                    [detector],
                ).fetchall()
            }
            refs = {pseudonymise(t, key) for t in expected}
            row.update(distinct=len(stored), missing=len(refs - stored), extra=len(stored - refs))
        rows.append(row)
    return rows


def _chains(truth: Truth, alerts: list[ScoredAlert]) -> dict[str, Any]:
    """Right alerts on a chain: do they name its request, disclosure and receipt events?"""
    judged = whole = 0
    partial: list[str] = []
    for a in alerts:
        if a.verdict != "right":
            continue
        # judged when it names a request, disclosure or receipt of a chain (not only uses)
        chains = {
            truth.events[k].chain_id
            for k in a.events
            if truth.events[k].chain_id and truth.events[k].event_type in CHAIN_TYPES
        }
        chain_events = (
            set().union(*(truth.by_chain.get(c, set()) for c in chains)) if chains else set()
        )
        if len(chain_events) < 2:
            continue
        judged += 1
        if chain_events <= a.events:
            whole += 1
        else:
            partial.append(a.detector_id)
    counts: dict[str, int] = defaultdict(int)
    for d in partial:
        counts[d] += 1
    return {"judged": judged, "whole": whole, "partial_by_detector": dict(sorted(counts.items()))}


def _coverage(con: duckdb.DuckDBPyConnection, truth: Truth) -> list[dict[str, Any]]:
    def injected(source: str, event_id: str) -> bool:
        ev = truth.events.get((source, event_id))
        return ev is not None and ev.label != "lawful"

    return coverage_on_lawful(con, injected)


def score_truth(
    con: duckdb.DuckDBPyConnection, truth: Truth, key: bytes | None = None
) -> TruthReport:
    """Every figure of the report, from the store's open alerts and the labels."""
    alerts = read_alerts(con, truth)
    lawful_touched: set[EventKey] = set()
    for a in alerts:
        lawful_touched |= {k for k in a.events if truth.events[k].label == "lawful"}
    return TruthReport(
        manifest=truth.manifest,
        lawful_events=truth.lawful,
        labelled_events=len(truth.events),
        detectors=_detector_figures(truth, alerts),
        instances=_instance_rows(truth, alerts),
        false_alerts=sum(1 for a in alerts if a.verdict in {"false", "unresolved"}),
        lawful_touched=len(lawful_touched),
        pr_auc=_pr_auc(truth, alerts),
        subjects=_subjects(con, truth, alerts, key),
        chains=_chains(truth, alerts),
        coverage=_coverage(con, truth),
        false_by=_false_by(alerts),
    )


def _false_by(alerts: list[ScoredAlert]) -> dict[str, int]:
    """False alerts by detector and the recipient they name, most first."""
    counts: dict[str, int] = defaultdict(int)
    for a in alerts:
        if a.verdict in {"false", "unresolved"}:
            counts[f"{a.detector_id} -> {a.recipient_agency or '-'}"] += 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
