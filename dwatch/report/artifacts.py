"""What a report run shows in the Prefect UI: a Markdown summary and a table of open cases.

Plain functions (the flow only publishes their output). Prefect renders Markdown artifacts,
so every log-derived value goes through ``markdown_text``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dwatch.report.data import ReportData
from dwatch.report.safety import markdown_text

TOP_CASES = 10


def summary_markdown(report: ReportData, files: list[Path]) -> str:
    s = report.summary
    md = markdown_text
    by_sev = ", ".join(f"{n} {sev}" for sev, n in s["cases_by_severity"].items() if n) or "none"
    lines = [
        f"# {md(report.title)}",
        "",
        f"**{s['cases_needing_attention']} case(s) need attention** ({by_sev}); {s['cases_new']} new since the last report.",
        f"{s['subjects_in_open_cases']:,} subjects in open cases (summed; cases may overlap); {s['alerts_active']} active,"
        f" {s['alerts_suppressed']} suppressed and {s['alerts_retracted']} retracted alert(s).",
        f"Coverage gaps: {s['coverage_gaps']}. Registry: {md(s['registry'])}.",
        "",
    ]
    if report.attention:
        lines += ["| Severity | Risk | Case | What | Triage |", "|---|---:|---|---|---|"]
        for case in report.attention[:TOP_CASES]:
            new = " (new)" if case.is_new else ""
            lines.append(
                f"| {case.severity} | {case.risk_score:.2f} | {case.case_id}{new} | {md(case.title)} | {case.triage_state} |"
            )
        if len(report.attention) > TOP_CASES:
            lines.append(f"\n{len(report.attention) - TOP_CASES} more in the full report.")
    if report.coverage.gaps:
        lines += [
            "",
            "Incomplete logs: "
            + "; ".join(
                f"{md(g.source_system)} ({g.windows} window(s), {md(g.window)})"
                for g in report.coverage.gaps
            ),
        ]
    if files:
        lines += ["", "Report files: " + ", ".join(md(str(p)) for p in files)]
    return "\n".join(lines) + "\n"


def case_table(report: ReportData) -> list[dict[str, Any]]:
    return [
        {
            "case_id": c.case_id,
            "severity": c.severity,
            "risk_score": c.risk_score,
            "triage": c.triage_state,
            "new": c.is_new,
            "subjects": c.subjects_affected,
            "recipient": c.recipient_agency,
            "court_orders": "; ".join(o.label for o in c.court_orders),
            "title": c.title,
            "coverage_incomplete": c.coverage_incomplete,
        }
        for c in report.attention
    ]
