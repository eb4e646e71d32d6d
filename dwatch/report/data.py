"""Gather everything a report shows from the store, once, already masked.

HTML, CSV and Markdown all render this one ``ReportData``, so the three formats say the same
thing. Values that came from logs are masked here (taxpayer pseudonyms shortened, TIN-shaped
numbers redacted) but not escaped: each renderer escapes for its own format.
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb

from detectors.alerts import SEVERITIES
from dwatch.errors import StoreError
from dwatch.report.cases import (
    SEVERITY_RANK,
    RiskWeights,
    alert_rows,
    distinct_subjects,
    load_risk_weights,
)
from dwatch.report.citations import CitationDirectory, CitationInfo
from dwatch.report.evidence_rows import ALERT_ROWS, SHOWN, table_present
from dwatch.report.safety import evidence_pairs, mask_free_text, mask_text
from dwatch.report.suppressions import describe_criteria, list_suppressions
from dwatch.report.timeline_days import kept_timeline_sums
from dwatch.rowfetch import fetch_by_rowid
from dwatch.store import transaction

EVIDENCE_EVENTS_PER_CASE = 25
# What an evidence row shows (EventView), read back alone: the rest of an event's columns
# (its raw extra fields above all) would be decompressed for nothing.
SHOWN_EVENT_COLUMNS: tuple[str, ...] = (
    "occurred_at",
    "source_system",
    "event_id",
    "event_type",
    "disclosing_agency",
    "recipient_agency",
    "actor_id",
    "request_id",
    "legal_authority",
    "data_elements",
    "record_count",
    "taxpayer_ref",
    "channel",
    "description",
)
TIMELINE_RECIPIENTS = 10
CONTEXT_RECIPIENTS = 3  # unflagged recipients always charted, largest first
# Event types that move data to a recipient, charted per recipient.
CHARTED_EVENT_TYPES: tuple[str, ...] = ("disclosure", "redisclosure")


@dataclass
class AlertView:
    alert_id: str
    detector_id: str
    detector_kind: str
    detector_version: str
    severity: str
    score: float | None
    status: str  # open | retracted | suppressed
    triage_state: str
    resolution: str | None
    entity: str
    actor_id: str
    source_system: str
    window: str
    subjects_affected: int | None
    records_affected: int | None
    event_count: int | None
    citations: list[str]
    explanation: str
    evidence: list[tuple[str, str]]
    coverage_incomplete: bool
    suppression_id: str | None
    retracted_reason: str | None


@dataclass
class EventView:
    occurred_at: str
    source_system: str
    event_id: str
    event_type: str
    flow: str  # discloser -> recipient
    actor_id: str
    request_id: str
    legal_authority: str
    data_elements: str
    record_count: int | None
    taxpayer_ref: str
    channel: str
    description: str


@dataclass
class DecisionView:
    decided_at: str
    decision: str
    decided_by: str
    note: str
    target: str


@dataclass
class CaseView:
    case_id: str
    title: str
    status: str
    triage_state: str
    resolution: str | None
    severity: str
    risk_score: float
    risk_explained: str
    sensitivity: float
    recipient_agency: str
    request_id: str
    court_orders: list[CitationInfo]
    citations: list[CitationInfo]
    subjects_affected: int | None
    records_affected: int | None
    alert_count: int
    open_alert_count: int
    suppressed_alert_count: int
    retracted_alert_count: int
    data_elements: list[str]
    coverage_incomplete: bool
    window: str
    first_seen_at: str
    is_new: bool
    explanation: str
    alerts: list[AlertView] = field(default_factory=list)
    events: list[EventView] = field(default_factory=list)
    events_total: int = 0
    decisions: list[DecisionView] = field(default_factory=list)

    @property
    def needs_attention(self) -> bool:
        return self.status == "open" and self.triage_state != "resolved"


@dataclass
class CitationSection:
    info: CitationInfo
    case_ids: list[str]
    open_cases: int
    subjects: int
    highest_severity: str


@dataclass
class TimelineRow:
    recipient: str
    points: list[tuple[date, int, int]]  # day, events, records
    total_records: int
    total_events: int


@dataclass
class Timeline:
    rows: list[TimelineRow]
    start: date | None
    end: date | None
    order_marks: list[tuple[date, str, str]]  # day, order label, what happened (issued, stayed...)
    recipients_left_out: int


@dataclass
class CoverageGap:
    """Failed batch checks of one source and check, folded over their windows."""

    source_system: str
    window: str  # from the first failed window's start to the last one's end
    windows: int
    expectation: str
    message: str  # the earliest failure's message, as an example


@dataclass
class Coverage:
    sources_validated: list[tuple[str, int, int]]  # source, checks passed, checks failed
    gaps: list[CoverageGap]
    data_docs_href: str | None
    cases_affected: int


@dataclass
class SuppressedView:
    alert_id: str
    case_id: str
    detector_id: str
    severity: str
    entity: str
    explanation: str
    suppression_id: str


@dataclass
class SuppressionView:
    suppression_id: str
    criteria: str
    reason: str
    owner: str
    expires_on: str
    active: bool
    alerts_suppressed: int


@dataclass
class ReportData:
    generated_at: datetime
    title: str
    directory: CitationDirectory
    cases: list[CaseView]
    orders: list[CitationSection]
    authorities: list[CitationSection]
    other_citations: list[CitationSection]
    timeline: Timeline
    coverage: Coverage
    suppressed: list[SuppressedView]
    suppressions: list[SuppressionView]
    summary: dict[str, Any]

    @property
    def attention(self) -> list[CaseView]:
        return [c for c in self.cases if c.needs_attention]

    def by_severity(self) -> list[tuple[str, list[CaseView]]]:
        groups: dict[str, list[CaseView]] = defaultdict(list)
        for case in self.attention:
            groups[case.severity].append(case)
        return [(s, groups[s]) for s in reversed(SEVERITIES) if groups.get(s)]

    @property
    def closed(self) -> list[CaseView]:
        return [c for c in self.cases if not c.needs_attention]


def _fmt_ts(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if value else ""


def _fmt_window(start: datetime | None, end: datetime | None) -> str:
    if not start and not end:
        return ""
    if start and end and start.date() == end.date():
        return start.astimezone(UTC).strftime("%Y-%m-%d")
    left = start.astimezone(UTC).strftime("%Y-%m-%d") if start else "…"
    right = end.astimezone(UTC).strftime("%Y-%m-%d") if end else "…"
    return f"{left} to {right}"


def _rows(
    con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None
) -> list[dict[str, Any]]:
    cursor = con.execute(sql, params or [])
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]


def _risk_explained(case: dict[str, Any], weights: RiskWeights) -> str:
    affected = case["subjects_affected"] or case["records_affected"] or case["event_count"]
    what = (
        "subjects"
        if case["subjects_affected"]
        else ("records" if case["records_affected"] else ("events" if case["event_count"] else ""))
    )
    factor = weights.affected_factor(affected)
    size = f"{affected:,} {what}" if affected else "size unknown"
    return (
        f"{weights.severity.get(case['severity'], 1.0):g} ({case['severity']})"
        f" x {case['sensitivity']:.2f} (sensitivity)"
        f" x {factor:.2f} ({size}, 1 + log10(1 + n)) = {case['risk_score']:.2f}"
    )


def _alert_views(con: duckdb.DuckDBPyConnection, case_ids: list[str]) -> dict[str, list[AlertView]]:
    rows = _rows(
        con,
        """
        SELECT ca.case_id, a.alert_id, a.detector_id, a.detector_kind, a.detector_version,
               a.severity, a.score, a.status, a.entity_type, a.entity_id, a.actor_id,
               a.source_system, a.window_start, a.window_end, a.subjects_affected,
               a.records_affected, a.event_count, a.citations, a.explanation, a.evidence,
               a.coverage_incomplete, a.retracted_reason,
               t.triage_state, t.resolution, ca.suppression_id
        FROM case_alerts ca JOIN alerts a USING (alert_id) JOIN alert_triage_state t USING (alert_id)
        WHERE ca.case_id IN (SELECT unnest(?::VARCHAR[]))
        ORDER BY a.status, list_position(?::VARCHAR[], a.severity) DESC, a.window_start, a.alert_id
        """,
        [case_ids, list(SEVERITIES)],
    )
    views: dict[str, list[AlertView]] = defaultdict(list)
    for r in rows:
        status = "suppressed" if r["suppression_id"] and r["status"] == "open" else r["status"]
        views[r["case_id"]].append(
            AlertView(
                alert_id=r["alert_id"],
                detector_id=mask_text(r["detector_id"]),
                detector_kind=r["detector_kind"],
                detector_version=mask_text(r["detector_version"]),
                severity=r["severity"],
                score=r["score"],
                status=status,
                triage_state=r["triage_state"],
                resolution=r["resolution"],
                entity=mask_text(f"{r['entity_type']} {r['entity_id']}"),
                actor_id=mask_text(r["actor_id"]),
                source_system=mask_text(r["source_system"]),
                window=_fmt_window(r["window_start"], r["window_end"]),
                subjects_affected=r["subjects_affected"],
                records_affected=r["records_affected"],
                event_count=r["event_count"],
                citations=[mask_text(c) for c in r["citations"] or []],
                explanation=mask_free_text(r["explanation"]),
                evidence=evidence_pairs(r["evidence"]),
                coverage_incomplete=bool(r["coverage_incomplete"]),
                suppression_id=r["suppression_id"],
                retracted_reason=mask_free_text(r["retracted_reason"])
                if r["retracted_reason"]
                else None,
            )
        )
    return views


def _shown_rows(
    con: duckdb.DuckDBPyConnection, case_ids: list[str], table: str
) -> list[dict[str, Any]] | None:
    """The events shown per case, read back whole by the row ids ``table`` found; None when a
    row id no longer holds the event it was found for (DuckDB gives rows new row ids when a
    checkpoint compacts row groups emptied by deletes)."""
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE dw_report_shown AS
        WITH joined AS (
            -- the alerts' rows found once (cases.alert_rows: key columns and row ids);
            -- whole rows are fetched by row id for the few shown per case
            SELECT DISTINCT ON (ca.case_id, r.source_system, r.event_id) ca.case_id,
                   r.source_system, r.event_id, r.occurred_at, r.row_id
            FROM case_alerts ca JOIN {table} r USING (alert_id)
            WHERE ca.case_id IN (SELECT unnest(?::VARCHAR[]))
        )
        SELECT case_id, row_id, source_system, event_id,
               count(*) OVER (PARTITION BY case_id) AS total,
               row_number() OVER (PARTITION BY case_id ORDER BY occurred_at, event_id) AS n
        FROM joined QUALIFY n <= ?
        """,
        [case_ids, EVIDENCE_EVENTS_PER_CASE],
    )
    kept = table == ALERT_ROWS and table_present(con, SHOWN)
    # Row groups holding none of the shown rows are skipped (dwatch.rowfetch); rows the last
    # report showed are kept (valid while the kept evidence rows' row ids are) and not read.
    fetch_by_rowid(
        con,
        "disclosure_events",
        "SELECT DISTINCT row_id FROM dw_report_shown"
        + (f" WHERE row_id NOT IN (SELECT row_id FROM {SHOWN})" if kept else ""),
        "dw_report_fetched",
        columns=", ".join(SHOWN_EVENT_COLUMNS),
    )
    if kept:
        con.execute(
            f"INSERT INTO dw_report_fetched SELECT k.row_id, {', '.join(SHOWN_EVENT_COLUMNS)}"
            f" FROM {SHOWN} k SEMI JOIN dw_report_shown s ON s.row_id = k.row_id"
        )
    moved = con.execute(
        "SELECT count(*) FROM dw_report_shown s"
        " LEFT JOIN dw_report_fetched e ON e.dw_rowid = s.row_id"
        " WHERE e.dw_rowid IS NULL OR e.source_system IS DISTINCT FROM s.source_system"
        " OR e.event_id IS DISTINCT FROM s.event_id"
    ).fetchone()
    rows = (
        None
        if moved and moved[0]
        else _rows(
            con,
            """
            SELECT s.case_id, e.* EXCLUDE (dw_rowid), s.total, s.n
            FROM dw_report_shown s JOIN dw_report_fetched e ON e.dw_rowid = s.row_id
            ORDER BY s.case_id, e.occurred_at, e.event_id
            """,
        )
    )
    if kept and rows is not None:  # keep what this report showed, for the next
        with transaction(con):
            con.execute(f"DELETE FROM {SHOWN}")
            con.execute(
                f"INSERT INTO {SHOWN} SELECT dw_rowid, {', '.join(SHOWN_EVENT_COLUMNS)}"
                " FROM dw_report_fetched"
            )
    con.execute("DROP TABLE dw_report_shown")
    con.execute("DROP TABLE dw_report_fetched")
    return rows


def _event_views(
    con: duckdb.DuckDBPyConnection, case_ids: list[str], table: str
) -> tuple[dict[str, list[EventView]], dict[str, int]]:
    rows = _shown_rows(con, case_ids, table)
    if rows is None:  # row ids moved since ``table`` was found: find the rows again
        rows = _shown_rows(con, case_ids, alert_rows(con))
    if rows is None:
        raise StoreError(
            "the events shown in the report moved while it was built (DuckDB renumbered rows)",
            where="disclosure_events",
            fix="build the report again (dwatch report)",
        )
    views: dict[str, list[EventView]] = defaultdict(list)
    totals: dict[str, int] = {}
    for r in rows:
        totals[r["case_id"]] = int(r["total"])
        views[r["case_id"]].append(
            EventView(
                occurred_at=_fmt_ts(r["occurred_at"]),
                source_system=mask_text(r["source_system"]),
                event_id=mask_text(r["event_id"]),
                event_type=mask_text(r["event_type"]),
                flow=mask_text(f"{r['disclosing_agency']} → {r['recipient_agency']}"),
                actor_id=mask_text(r["actor_id"]),
                request_id=mask_text(r["request_id"]),
                legal_authority=mask_text(r["legal_authority"]),
                data_elements=mask_text(", ".join(r["data_elements"] or [])),
                record_count=r["record_count"],
                taxpayer_ref=mask_text(r["taxpayer_ref"]),
                channel=mask_text(r["channel"]),
                description=mask_free_text(r["description"]),
            )
        )
    return views, totals


def _decision_views(con: duckdb.DuckDBPyConnection) -> dict[str, list[DecisionView]]:
    rows = _rows(
        con,
        """
        SELECT coalesce(ca.case_id, d.target_id) AS case_id, d.*
        FROM triage_decisions d
        LEFT JOIN case_alerts ca ON d.target_type = 'alert' AND ca.alert_id = d.target_id
        ORDER BY d.decided_at, d.decision_no
        """,
    )
    views: dict[str, list[DecisionView]] = defaultdict(list)
    for r in rows:
        views[r["case_id"]].append(
            DecisionView(
                decided_at=_fmt_ts(r["decided_at"]),
                decision=r["decision"],
                decided_by=mask_text(r["decided_by"]),
                note=mask_free_text(r["note"]),
                target="case" if r["target_type"] == "case" else f"alert {r['target_id']}",
            )
        )
    return views


def _case_explanation(
    case: dict[str, Any], alerts: list[AlertView], directory: CitationDirectory
) -> str:
    active = [a for a in alerts if a.status == "open"] or alerts
    detectors = sorted({a.detector_id for a in active})
    parts = [
        f"{len(active)} {'active ' if case['status'] == 'open' else ''}alert(s) from"
        f" {', '.join(detectors)} grouped by "
        + (
            "recipient, request and court order."
            if case["recipient_agency"] or case["request_id"]
            else f"{case['entity_type']} {mask_text(case['entity_id'])}."
        )
    ]
    if case["court_order_ids"]:
        labels = [directory.lookup(o).label for o in case["court_order_ids"]]
        parts.append("Court order(s): " + "; ".join(labels) + ".")
    if case["status"] == "retracted":
        parts.append(
            "Every alert in this case was retracted: the findings no longer hold on the current logs."
        )
    elif case["status"] == "suppressed":
        parts.append(
            "Every active alert in this case is suppressed by an allowlist entry (see Suppressed)."
        )
    if case["coverage_incomplete"]:
        parts.append(
            "Coverage incomplete: some logs behind this case failed validation, so the true count may be higher."
        )
    return " ".join(parts)


def _subjects_across(
    con: duckdb.DuckDBPyConnection, cases: list[CaseView], citation: str | None = None
) -> int:
    """Taxpayers across cases, each counted once (cases overlap: one taxpayer can be in a
    request's case and in its court order's); cases whose alerts list nobody give a floor."""
    if not cases:
        return 0
    named = distinct_subjects(con, [c.case_id for c in cases], citation)
    return max(named, max((c.subjects_affected or 0 for c in cases), default=0))


def _citation_sections(
    con: duckdb.DuckDBPyConnection, cases: list[CaseView], directory: CitationDirectory
) -> tuple[list[CitationSection], ...]:
    by_id: dict[str, list[CaseView]] = defaultdict(list)
    for case in cases:
        for info in case.citations:
            by_id[info.citation_id].append(case)
    orders: list[CitationSection] = []
    authorities: list[CitationSection] = []
    other: list[CitationSection] = []
    for cid, members in sorted(by_id.items()):
        info = directory.lookup(cid)
        section = CitationSection(
            info=info,
            case_ids=[c.case_id for c in members],
            open_cases=sum(1 for c in members if c.needs_attention),
            subjects=_subjects_across(con, [c for c in members if c.status == "open"], cid),
            highest_severity=max(
                (c.severity for c in members), key=lambda s: SEVERITY_RANK.get(s, 0)
            ),
        )
        {"court_order": orders, "authority": authorities}.get(info.kind, other).append(section)
    return orders, authorities, other


def _timeline(con: duckdb.DuckDBPyConnection, directory: CitationDirectory) -> Timeline:
    # per recipient and day, kept between reports: only rows appended since are read
    rows = _rows(con, *kept_timeline_sums(con, CHARTED_EVENT_TYPES))
    per: dict[str, list[tuple[date, int, int]]] = defaultdict(list)
    for r in rows:
        per[mask_text(r["recipient_agency"])].append(
            (r["day"], int(r["events"]), int(r["records"] or 0))
        )
    ranked = sorted(per.items(), key=lambda kv: -sum(p[2] for p in kv[1]))
    # Recipients named in open cases always get a row, whatever their volume.
    flagged = {
        mask_text(r[0])
        for r in con.execute(
            "SELECT DISTINCT recipient_agency FROM cases WHERE status = 'open' AND recipient_agency IS NOT NULL"
        ).fetchall()
    }
    chosen = [kv for kv in ranked if kv[0] in flagged]
    # ... and the largest other flows stay in view for scale, however many are flagged.
    chosen += [kv for kv in ranked if kv[0] not in flagged][
        : max(TIMELINE_RECIPIENTS - len(chosen), CONTEXT_RECIPIENTS)
    ]
    chosen.sort(key=lambda kv: kv[0])
    timeline_rows = [
        TimelineRow(name, points, sum(p[2] for p in points), sum(p[1] for p in points))
        for name, points in chosen
    ]
    days = [p[0] for row in timeline_rows for p in row.points]
    start, end = (min(days), max(days)) if days else (None, None)
    marks: list[tuple[date, str, str]] = []
    for order in directory.of_kind("court_order"):
        for what, day in order.dates:
            marks.append((day, order.name or order.citation_id, what))
    if start and end and marks:
        start = min(start, min(m[0] for m in marks))
        end = max(end, max(m[0] for m in marks))
    return Timeline(timeline_rows, start, end, sorted(set(marks)), len(ranked) - len(chosen))


def _coverage(con: duckdb.DuckDBPyConnection, out_dir: Path, data_docs: Path | None) -> Coverage:
    validated = [
        (mask_text(r[0] or "(store-wide)"), int(r[1]), int(r[2]))
        for r in con.execute(
            "SELECT source_system, count(*) FILTER (WHERE success), count(*) FILTER (WHERE NOT success)"
            " FROM validation_results GROUP BY ALL ORDER BY 1 NULLS FIRST"
        ).fetchall()
    ]
    # One row per source and failed check: hundreds of daily windows failing the same way
    # read as one problem with a span, not as hundreds of rows.
    gaps = [
        CoverageGap(
            source_system=mask_text(r["source_system"] or "all sources"),
            window=_fmt_window(r["first_start"], r["last_end"]) or "all time",
            windows=int(r["windows"]),
            expectation=mask_text(r["expectation"]),
            message=mask_free_text(r["message"]),
        )
        for r in _rows(
            con,
            "SELECT source_system, expectation, count(*) AS windows, min(window_start) AS first_start,"
            " max(window_end) AS last_end,"
            " arg_min(message, coalesce(window_start, TIMESTAMPTZ '1970-01-01 00:00:00+00')) AS message"
            " FROM coverage_gaps GROUP BY ALL ORDER BY source_system NULLS FIRST, expectation",
        )
    ]
    index = data_docs or out_dir / "validation" / "index.html"
    href = None
    if index.is_file():
        href = Path(os.path.relpath(index.resolve(), out_dir.resolve())).as_posix()
    affected = con.execute(
        "SELECT count(*) FROM cases WHERE coverage_incomplete AND status = 'open'"
    ).fetchall()
    return Coverage(validated, gaps, href, int(affected[0][0]))


def gather(
    con: duckdb.DuckDBPyConnection,
    directory: CitationDirectory,
    *,
    out_dir: Path,
    new_since: datetime | None = None,
    data_docs: Path | None = None,
    as_of: date | None = None,
    title: str = "Disclosure Watch report",
    weights: RiskWeights | None = None,
    event_rows: str | None = None,
) -> ReportData:
    """Read cases (already built), alerts, events, validation and suppressions into a report.

    ``new_since``: when the previous report was made; cases first seen later are marked new.
    ``event_rows``: the alerts' rows as :func:`dwatch.report.cases.alert_rows` found them for the
    cases just built (found again when None).
    """
    weights = weights or load_risk_weights()
    rows = _rows(
        con,
        "SELECT c.*, t.triage_state, t.resolution FROM cases c JOIN case_triage_state t USING (case_id)"
        " ORDER BY list_position(?::VARCHAR[], c.severity) DESC, c.risk_score DESC, c.case_id",
        [list(SEVERITIES)],
    )
    ids = [r["case_id"] for r in rows]
    alerts = _alert_views(con, ids)
    events, totals = _event_views(con, ids, event_rows or alert_rows(con))
    decisions = _decision_views(con)
    cases = [
        CaseView(
            case_id=r["case_id"],
            title=mask_text(r["title"]),
            status=r["status"],
            triage_state=r["triage_state"],
            resolution=r["resolution"],
            severity=r["severity"],
            risk_score=r["risk_score"],
            risk_explained=_risk_explained(r, weights),
            sensitivity=r["sensitivity"],
            recipient_agency=mask_text(r["recipient_agency"]),
            request_id=mask_text(r["request_id"]),
            court_orders=[directory.lookup(o) for o in r["court_order_ids"] or []],
            citations=[directory.lookup(c) for c in r["citations"] or []],
            subjects_affected=r["subjects_affected"],
            records_affected=r["records_affected"],
            alert_count=r["alert_count"],
            open_alert_count=r["open_alert_count"],
            suppressed_alert_count=r["suppressed_alert_count"],
            retracted_alert_count=r["retracted_alert_count"],
            data_elements=[mask_text(e) for e in r["data_elements"] or []],
            coverage_incomplete=bool(r["coverage_incomplete"]),
            window=_fmt_window(r["window_start"], r["window_end"]),
            first_seen_at=_fmt_ts(r["first_seen_at"]),
            # New = first detected after the previous report (all are new in the first one).
            is_new=new_since is None or r["first_seen_at"] > new_since,
            explanation=_case_explanation(r, alerts.get(r["case_id"], []), directory),
            alerts=alerts.get(r["case_id"], []),
            events=events.get(r["case_id"], []),
            events_total=totals.get(r["case_id"], 0),
            decisions=decisions.get(r["case_id"], []),
        )
        for r in rows
    ]
    orders, authorities, other = _citation_sections(con, cases, directory)
    suppressed = [
        SuppressedView(
            alert_id=a.alert_id,
            case_id=c.case_id,
            detector_id=a.detector_id,
            severity=a.severity,
            entity=a.entity,
            explanation=a.explanation,
            suppression_id=a.suppression_id or "",
        )
        for c in cases
        for a in c.alerts
        if a.status == "suppressed"
    ]
    suppressions = [
        SuppressionView(
            suppression_id=s["suppression_id"],
            criteria=mask_text(describe_criteria(s)),
            reason=mask_free_text(s["reason"]),
            owner=mask_text(s["owner"]),
            expires_on=s["expires_on"].isoformat(),
            active=bool(s["active"]),
            alerts_suppressed=int(s["alerts_suppressed"]),
        )
        for s in list_suppressions(con, as_of=as_of)
    ]
    attention = [c for c in cases if c.needs_attention]
    summary: dict[str, Any] = {
        "cases_total": len(cases),
        "cases_needing_attention": len(attention),
        "cases_new": sum(1 for c in cases if c.is_new),
        "cases_by_severity": {
            s: sum(1 for c in attention if c.severity == s) for s in reversed(SEVERITIES)
        },
        "cases_acknowledged": sum(1 for c in attention if c.triage_state == "acknowledged"),
        "cases_resolved": sum(1 for c in cases if c.triage_state == "resolved"),
        "cases_retracted": sum(1 for c in cases if c.status == "retracted"),
        "cases_suppressed": sum(1 for c in cases if c.status == "suppressed"),
        "subjects_in_open_cases": _subjects_across(con, attention),
        "alerts_total": sum(c.alert_count for c in cases),
        "alerts_active": sum(c.open_alert_count for c in cases),
        "alerts_suppressed": len(suppressed),
        "alerts_retracted": sum(c.retracted_alert_count for c in cases),
        "coverage_gaps": len(_rows(con, "SELECT 1 FROM coverage_gaps")),
        "registry": directory.source
        + (f" (version {directory.version})" if directory.version else ""),
    }
    coverage = _coverage(con, out_dir, data_docs)
    return ReportData(
        generated_at=datetime.now(UTC),
        title=title,
        directory=directory,
        cases=cases,
        orders=orders,
        authorities=authorities,
        other_citations=other,
        timeline=_timeline(con, directory),
        coverage=coverage,
        suppressed=suppressed,
        suppressions=suppressions,
        summary=summary,
    )


def log_scale(value: int, top: int) -> float:
    """0..1 position of ``value`` on a log scale up to ``top`` (for chart marker sizes)."""
    if value <= 0 or top <= 0:
        return 0.0
    return math.log10(1 + value) / math.log10(1 + top)
