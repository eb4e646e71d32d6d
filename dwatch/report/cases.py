"""Group alerts into cases, and score each case's risk.

Compliance staff work one case per real problem: every alert about the same recipient,
request and court order(s) lands in one case, so one bulk transfer of 47,000 subjects is one
case with a subject count, not 47,000 rows. The case id is a hash of that grouping key, so
it (and every triage decision recorded against it) is stable across re-runs. Alerts with no
recipient, request or order (a log source with a sequence gap, say) are grouped by their
entity instead.

Which citations are court orders comes from the policy registry (``CitationDirectory``);
without a registry no citation is known to be an order and cases group by recipient and
request only.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import yaml

from detectors.alerts import SEVERITIES
from dwatch import yamlfile
from dwatch.errors import ConfigError
from dwatch.report.citations import CitationDirectory, load_directory
from dwatch.report.evidence_rows import kept_alert_rows
from dwatch.store import transaction

RISK_CONFIG_PATH = Path(__file__).resolve().parent / "risk.yaml"
RISK_CONFIG_ENV = "DWATCH_RISK_CONFIG"
SEVERITY_RANK: dict[str, int] = {s: i for i, s in enumerate(SEVERITIES)}


@dataclass(frozen=True)
class RiskWeights:
    severity: dict[str, float]
    data_elements: dict[str, float]
    categories: dict[str, float]

    def sensitivity(self, elements: list[str], categories: list[str]) -> float:
        default_e = self.data_elements.get("default", 1.0)
        default_c = self.categories.get("default", 1.0)
        element = max((self.data_elements.get(e, default_e) for e in elements), default=default_e)
        category = max((self.categories.get(c, default_c) for c in categories), default=default_c)
        return element * category

    @staticmethod
    def affected_factor(affected: int | None) -> float:
        """1 + log10(1 + n): 1 subject -> 1.30, 1,000 -> 4.00, 42,695 -> 5.63."""
        return 1.0 + math.log10(1 + max(affected or 1, 1))

    def score(self, severity: str, sensitivity: float, affected: int | None) -> float:
        return round(
            self.severity.get(severity, 1.0) * sensitivity * self.affected_factor(affected), 2
        )


def load_risk_weights(path: Path | None = None) -> RiskWeights:
    """Weights from ``path``, $DWATCH_RISK_CONFIG, or the packaged risk.yaml."""
    chosen = path or Path(os.environ.get(RISK_CONFIG_ENV) or RISK_CONFIG_PATH)
    try:
        raw = yamlfile.safe_load(chosen.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(
            f"cannot read risk weights: {exc}",
            where=str(chosen),
            fix=f"point {RISK_CONFIG_ENV} at a YAML file shaped like {RISK_CONFIG_PATH}",
        ) from exc
    sections = ("severity_weights", "data_element_weights", "category_weights")
    parsed: list[dict[str, float]] = []
    for section in sections:
        values = raw.get(section) or {}
        try:
            parsed.append({str(k): float(v) for k, v in values.items()})
        except (AttributeError, TypeError, ValueError) as exc:
            raise ConfigError(
                f"{section} must map names to numbers ({exc})",
                where=f"{chosen}: {section}",
                fix="write e.g. `high: 7`",
            ) from exc
    missing = [s for s in SEVERITIES if s not in parsed[0]]
    if missing:
        raise ConfigError(
            f"severity_weights has no weight for {', '.join(missing)}",
            where=f"{chosen}: severity_weights",
            fix=f"give every severity a weight: {', '.join(SEVERITIES)}",
        )
    return RiskWeights(*parsed)


def case_id_for(grouping_key: str) -> str:
    return "cs_" + hashlib.sha256(grouping_key.encode("utf-8")).hexdigest()[:24]


def grouping_key(alert: dict[str, Any], directory: CitationDirectory) -> tuple[str, dict[str, Any]]:
    """The key an alert is grouped by, and the case attributes it implies."""
    orders = directory.court_orders(alert.get("citations"))
    recipient, request = alert.get("recipient_agency"), alert.get("request_id")
    if recipient or request or orders:
        key = "|".join(
            [
                "recipient=" + (recipient or ""),
                "request=" + (request or ""),
                "orders=" + ",".join(orders),
            ]
        )
        attrs = {"recipient_agency": recipient, "request_id": request, "court_order_ids": orders}
        return key, {**attrs, "entity_type": None, "entity_id": None}
    key = f"entity={alert['entity_type']}:{alert['entity_id']}"
    attrs = {"recipient_agency": None, "request_id": None, "court_order_ids": []}
    return key, {**attrs, "entity_type": alert["entity_type"], "entity_id": alert["entity_id"]}


_LIST = pa.list_(pa.string())
_TS = pa.timestamp("us", tz="UTC")
_CASE_SCHEMA = pa.schema(
    [
        ("case_id", pa.string()),
        ("grouping_key", pa.string()),
        ("recipient_agency", pa.string()),
        ("request_id", pa.string()),
        ("court_order_ids", _LIST),
        ("entity_type", pa.string()),
        ("entity_id", pa.string()),
        ("status", pa.string()),
        ("severity", pa.string()),
        ("risk_score", pa.float64()),
        ("sensitivity", pa.float64()),
        ("subjects_affected", pa.int64()),
        ("records_affected", pa.int64()),
        ("event_count", pa.int64()),
        ("alert_count", pa.int32()),
        ("open_alert_count", pa.int32()),
        ("suppressed_alert_count", pa.int32()),
        ("retracted_alert_count", pa.int32()),
        ("detector_ids", _LIST),
        ("citations", _LIST),
        ("data_elements", _LIST),
        ("coverage_incomplete", pa.bool_()),
        ("window_start", _TS),
        ("window_end", _TS),
        ("title", pa.string()),
        ("first_seen_at", _TS),
        ("refreshed_at", _TS),
    ]
)


@dataclass
class CaseBuildResult:
    cases: int = 0
    open: int = 0
    suppressed: int = 0
    retracted: int = 0
    alerts: int = 0
    new_case_ids: list[str] = field(default_factory=list)


def alert_rows(con: duckdb.DuckDBPyConnection) -> str:
    """``dw_report_alert_rows``: the store's rows of each alert's listed events (its event
    ids, in its log when it names one) with what the report reads of them, for both the
    cases' data elements and the evidence shown. Kept between reports and searched only for
    what changed (:mod:`dwatch.report.evidence_rows`)."""
    return kept_alert_rows(con)


_ALERT_SQL = """
WITH elements AS (
    SELECT alert_id, list_sort(list_distinct(flatten(list(data_elements)))) AS data_elements
    FROM {rows}
    GROUP BY alert_id
), matched AS (
    SELECT a.alert_id, arg_min(s.suppression_id, s.created_at) AS suppression_id
    FROM alerts a JOIN suppressions s
      ON s.expires_on >= ?::DATE
     AND (s.detector_id IS NULL OR s.detector_id = a.detector_id)
     AND (s.recipient_agency IS NULL OR s.recipient_agency = a.recipient_agency)
     AND (s.disclosing_agency IS NULL OR s.disclosing_agency = a.disclosing_agency)
     AND (s.actor_id IS NULL OR s.actor_id = a.actor_id)
     AND (s.source_system IS NULL OR s.source_system = a.source_system)
     AND (s.request_id IS NULL OR s.request_id = a.request_id)
     AND (s.entity_type IS NULL OR s.entity_type = a.entity_type)
     AND (s.entity_id IS NULL OR s.entity_id = a.entity_id)
    GROUP BY a.alert_id
)
SELECT a.alert_id, a.detector_id, a.severity, a.status, a.entity_type, a.entity_id,
       a.recipient_agency, a.request_id, a.citations, a.subjects_affected, a.records_affected,
       a.event_count, a.coverage_incomplete, a.window_start, a.window_end, a.evidence,
       el.data_elements, m.suppression_id, a.first_detected_at
FROM alerts a
LEFT JOIN elements el USING (alert_id)
LEFT JOIN matched m USING (alert_id)
ORDER BY a.alert_id
"""


def _evidence_elements(evidence: Any) -> list[str]:
    if not evidence:
        return []
    try:
        parsed = json.loads(evidence) if isinstance(evidence, str) else evidence
    except ValueError:
        return []
    found = parsed.get("data_elements") if isinstance(parsed, dict) else None
    return [str(e) for e in found] if isinstance(found, list) else []


def _affected(alerts: list[dict[str, Any]], column: str) -> int | None:
    """Sum within each detector, max across detectors.

    One detector's alerts are distinct findings (different dedup keys: six uses of data by
    six people), so they add up; different detectors flagging the same transfer overlap,
    so adding them would count the same taxpayers twice.
    """
    per_detector: dict[str, int] = defaultdict(int)
    for alert in alerts:
        if alert[column] is not None:
            per_detector[alert["detector_id"]] += int(alert[column])
    return max(per_detector.values()) if per_detector else None


def _listed_subjects(con: duckdb.DuckDBPyConnection) -> dict[str, frozenset[str]]:
    """The taxpayers each alert lists (alert_subjects), by alert id."""
    present = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'alert_subjects'"
    ).fetchone()
    if not present or not present[0]:
        return {}  # a store not yet migrated to 0012 (built by older code) lists nobody
    rows = con.execute(
        "SELECT alert_id, list(DISTINCT taxpayer_ref) FROM alert_subjects GROUP BY alert_id"
    ).fetchall()
    return {alert_id: frozenset(refs) for alert_id, refs in rows}


def _subjects(alerts: list[dict[str, Any]], listed: dict[str, frozenset[str]]) -> int | None:
    """Distinct taxpayers over the alerts' subject lists: two findings on the same taxpayers
    (an injunction violation and a missing address) count each taxpayer once. Alerts that
    list nobody (models report a number only) are taken as in ``_affected``, never added."""
    named: set[str] = set()
    for alert in alerts:
        named |= listed.get(alert["alert_id"], frozenset())
    unlisted = _affected([a for a in alerts if a["alert_id"] not in listed], "subjects_affected")
    if not named:
        return unlisted
    return max(len(named), unlisted or 0)


def distinct_subjects(
    con: duckdb.DuckDBPyConnection, case_ids: list[str], citation: str | None = None
) -> int:
    """Distinct taxpayers listed by the active alerts of ``case_ids`` (citing ``citation``)."""
    row = con.execute(
        """
        SELECT count(DISTINCT s.taxpayer_ref)
        FROM case_alerts ca JOIN alerts a USING (alert_id) JOIN alert_subjects s USING (alert_id)
        WHERE a.status = 'open' AND ca.suppression_id IS NULL
          AND ca.case_id IN (SELECT unnest(?::VARCHAR[]))
          AND (?::VARCHAR IS NULL OR list_contains(a.citations, ?::VARCHAR))
        """,
        [case_ids, citation, citation],
    ).fetchone()
    return int(row[0]) if row else 0


def _title(
    attrs: dict[str, Any], subjects: int | None, alerts: int, directory: CitationDirectory
) -> str:
    if attrs["entity_type"]:
        who = f"{attrs['entity_type']} {attrs['entity_id']}"
    else:
        parts = [attrs["recipient_agency"] or "unknown recipient"]
        if attrs["request_id"]:
            parts.append(f"request {attrs['request_id']}")
        if attrs["court_order_ids"]:
            names = [directory.lookup(o).name or o for o in attrs["court_order_ids"]]
            parts.append("under " + ", ".join(names))
        who = ", ".join(parts)
    count = f"{subjects:,} subject{'s' if subjects != 1 else ''}" if subjects else None
    tail = f"{alerts} alert{'s' if alerts != 1 else ''}"
    return f"{who}: {count}, {tail}" if count else f"{who}: {tail}"


def build_cases(
    con: duckdb.DuckDBPyConnection,
    *,
    directory: CitationDirectory | None = None,
    weights: RiskWeights | None = None,
    as_of: date | None = None,
    now: datetime | None = None,
    event_rows: str | None = None,
) -> CaseBuildResult:
    """Rebuild ``cases`` and ``case_alerts`` from ``alerts`` (idempotent; ids stable).

    ``as_of`` is the day suppressions are judged on (default: today, UTC); ``event_rows`` the
    table :func:`alert_rows` made of the alerts as they are now (made here when None).
    """
    directory = directory or load_directory(con)
    weights = weights or load_risk_weights()
    today = as_of or con.execute("SELECT CAST(now() AS DATE)").fetchone()[0]  # type: ignore[index]
    stamp = now or con.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
    cursor = con.execute(_ALERT_SQL.format(rows=event_rows or alert_rows(con)), [today])
    columns = [d[0] for d in cursor.description]
    alerts = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]

    listed = _listed_subjects(con)
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    attrs_by_key: dict[str, dict[str, Any]] = {}
    for alert in alerts:
        key, attrs = grouping_key(alert, directory)
        groups[key].append(alert)
        attrs_by_key[key] = attrs

    rows: list[dict[str, Any]] = []
    memberships: list[tuple[str, str, str | None]] = []
    for key, members in groups.items():
        attrs = attrs_by_key[key]
        case_id = case_id_for(key)
        open_alerts = [a for a in members if a["status"] == "open"]
        active = [a for a in open_alerts if a["suppression_id"] is None]
        status = "open" if active else ("suppressed" if open_alerts else "retracted")
        # Severity and size speak for what still holds; a retracted case keeps its history's.
        basis = active or open_alerts or members
        severity = max((a["severity"] for a in basis), key=lambda s: SEVERITY_RANK.get(s, 0))
        elements = sorted(
            {
                e
                for a in basis
                for e in (a["data_elements"] or []) + _evidence_elements(a["evidence"])
            }
        )
        citations = sorted({c for a in basis for c in a["citations"] or []})
        categories = [directory.lookup(c).category or "" for c in citations]
        if attrs["recipient_agency"]:
            categories.append(directory.lookup(attrs["recipient_agency"]).category or "")
        subjects = _subjects(basis, listed)
        records = _affected(basis, "records_affected")
        events = _affected(basis, "event_count")
        sensitivity = round(weights.sensitivity(elements, categories), 3)
        risk = weights.score(severity, sensitivity, subjects or records or events)
        windows_start = [a["window_start"] for a in basis if a["window_start"] is not None]
        windows_end = [a["window_end"] for a in basis if a["window_end"] is not None]
        rows.append(
            {
                "case_id": case_id,
                "grouping_key": key,
                **attrs,
                "status": status,
                "severity": severity,
                "risk_score": risk,
                "sensitivity": sensitivity,
                "subjects_affected": subjects,
                "records_affected": records,
                "event_count": events,
                "alert_count": len(members),
                "open_alert_count": len(active),
                "suppressed_alert_count": len(open_alerts) - len(active),
                "retracted_alert_count": len(members) - len(open_alerts),
                "detector_ids": sorted({a["detector_id"] for a in members}),
                "citations": citations,
                "data_elements": elements,
                "coverage_incomplete": any(bool(a["coverage_incomplete"]) for a in basis),
                "window_start": min(windows_start) if windows_start else None,
                "window_end": max(windows_end) if windows_end else None,
                "title": _title(attrs, subjects, len(members), directory),
                "first_seen_at": min(
                    (a["first_detected_at"] for a in members if a["first_detected_at"]),
                    default=stamp,
                ),
                "refreshed_at": stamp,
            }
        )
        memberships.extend((a["alert_id"], case_id, a["suppression_id"]) for a in members)

    result = CaseBuildResult(cases=len(rows), alerts=len(alerts))
    for row in rows:
        setattr(result, row["status"], getattr(result, row["status"]) + 1)
    with transaction(con):
        known = {r[0] for r in con.execute("SELECT case_id FROM cases").fetchall()}
        result.new_case_ids = sorted(r["case_id"] for r in rows if r["case_id"] not in known)
        con.execute("DELETE FROM case_alerts")
        # Arrow in, set-wise insert out: executemany is row by row in DuckDB.
        if memberships:
            members = pa.table(
                {
                    "alert_id": [m[0] for m in memberships],
                    "case_id": [m[1] for m in memberships],
                    "suppression_id": pa.array([m[2] for m in memberships], pa.string()),
                }
            )
            con.register("_case_members", members)
            con.execute("INSERT INTO case_alerts BY NAME SELECT * FROM _case_members")
            con.unregister("_case_members")
        if rows:
            columns = list(rows[0])
            updates = ", ".join(
                f"{c} = excluded.{c}" for c in columns if c not in ("case_id", "first_seen_at")
            )
            fresh = pa.Table.from_pylist(rows, schema=_CASE_SCHEMA)
            con.register("_fresh_cases", fresh)
            con.execute(
                f"INSERT INTO cases ({', '.join(columns)}) SELECT {', '.join(columns)} FROM _fresh_cases"
                f" ON CONFLICT (case_id) DO UPDATE SET {updates}"
            )
            con.unregister("_fresh_cases")
        # A case left with no alerts (regrouped after a registry change) goes; its decisions
        # stay in the append-only log.
        con.execute("DELETE FROM cases WHERE case_id NOT IN (SELECT case_id FROM case_alerts)")
    return result
