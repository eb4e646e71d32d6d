"""The one alert record, and how a detector run's findings are merged into ``alerts``.

Every detector (rule or model) produces rows with the columns of ``ALERT_COLUMNS``; the
merge keeps alert ids stable across re-runs, refreshes what changed, and retracts (never
deletes) findings from the same detectors that no longer hold.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

import duckdb
import pyarrow as pa

SEVERITIES: tuple[str, ...] = ("info", "low", "medium", "high", "critical")

# Columns a detector supplies; the merge adds status, run ids and timestamps.
ALERT_COLUMNS: tuple[str, ...] = (
    "alert_id",
    "detector_id",
    "detector_kind",
    "detector_version",
    "severity",
    "score",
    "entity_type",
    "entity_id",
    "disclosing_agency",
    "recipient_agency",
    "request_id",
    "actor_id",
    "source_system",
    "window_start",
    "window_end",
    "event_ids",
    "event_count",
    "subjects_affected",
    "records_affected",
    "evidence",
    "citations",
    "explanation",
    "coverage_incomplete",
    "registry_version",
)


def make_alert_id(detector_id: str, *dedup_key: object) -> str:
    """Stable id: the same detector and dedup key give the same id on every run."""
    text = "|".join([detector_id, *("" if k is None else str(k) for k in dedup_key)])
    return "al_" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


# The same function in SQL, for detectors that build alerts set-wise in DuckDB:
# ALERT_ID_SQL.format(parts="detector_id_expr, key1, key2") -> 'al_' || 24 hex chars.
ALERT_ID_SQL = "'al_' || substr(sha256(concat_ws('|', {parts})), 1, 24)"


@dataclass(frozen=True)
class MergeResult:
    new: int
    updated: int
    reopened: int
    retracted: int


def merge_alerts(
    con: duckdb.DuckDBPyConnection,
    candidates: pa.Table | str,
    *,
    detector_ids: list[str],
    run_id: str,
    retract_reason: str,
    window_from: datetime | None = None,
    window_to: datetime | None = None,
    subjects: str | None = None,
    events: str | None = None,
    retract_within: str | None = None,
) -> MergeResult:
    """Merge one detection run's findings for ``detector_ids`` into ``alerts``.

    ``candidates`` is an Arrow table, or the name of a table/view already in the
    connection, with ``ALERT_COLUMNS`` (null where unknown). Open alerts of those
    detectors whose window overlaps [window_from, window_to] and that were not found
    again are retracted with ``retract_reason``. ``subjects`` and ``events`` name tables
    with the columns of ``alert_subjects`` and ``alert_events``: the taxpayers and evidence
    keys of the candidates, which replace the rows a found alert had (a retracted alert
    keeps its last). ``retract_within`` names a table of ``alert_id``: when given, only
    those alerts can be retracted (a run that judged part of the store leaves the rest).
    Caller owns the transaction.
    """
    if isinstance(candidates, pa.Table):
        con.register("_alert_candidates_arrow", candidates)
        source = "_alert_candidates_arrow"
    else:
        source = candidates
    cols = ", ".join(ALERT_COLUMNS)
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE _alert_candidates AS SELECT DISTINCT ON (alert_id) {cols} FROM {source}"
    )
    if isinstance(candidates, pa.Table):
        con.unregister("_alert_candidates_arrow")

    def scalar(sql: str, params: list[object]) -> int:
        row = con.execute(sql, params).fetchone()
        return int(row[0]) if row else 0

    in_scope = (
        "a.detector_id IN (SELECT unnest(?::VARCHAR[]))"
        " AND (?::TIMESTAMPTZ IS NULL OR a.window_end IS NULL OR a.window_end >= ?::TIMESTAMPTZ)"
        " AND (?::TIMESTAMPTZ IS NULL OR a.window_start IS NULL OR a.window_start <= ?::TIMESTAMPTZ)"
    )
    scope_params = [detector_ids, window_from, window_from, window_to, window_to]
    if retract_within is not None:
        in_scope += f" AND a.alert_id IN (SELECT alert_id FROM {retract_within})"

    retracted = scalar(
        f"SELECT count(*) FROM alerts a WHERE a.status = 'open' AND {in_scope}"
        " AND a.alert_id NOT IN (SELECT alert_id FROM _alert_candidates)",
        scope_params,
    )
    con.execute(
        f"UPDATE alerts a SET status = 'retracted', retracted_reason = ?, retracted_at = now(),"
        f" last_run_id = ? WHERE a.status = 'open' AND {in_scope}"
        " AND a.alert_id NOT IN (SELECT alert_id FROM _alert_candidates)",
        [retract_reason, run_id, *scope_params],
    )
    reopened = scalar(
        "SELECT count(*) FROM alerts a JOIN _alert_candidates c USING (alert_id) WHERE a.status = 'retracted'",
        [],
    )
    updated = scalar("SELECT count(*) FROM alerts a JOIN _alert_candidates c USING (alert_id)", [])
    sets = ", ".join(f"{c} = c.{c}" for c in ALERT_COLUMNS if c != "alert_id")
    con.execute(
        f"UPDATE alerts a SET {sets}, status = 'open', retracted_reason = NULL, retracted_at = NULL,"
        " last_run_id = ?, last_detected_at = now() FROM _alert_candidates c WHERE a.alert_id = c.alert_id",
        [run_id],
    )
    new = scalar(
        "SELECT count(*) FROM _alert_candidates WHERE alert_id NOT IN (SELECT alert_id FROM alerts)",
        [],
    )
    con.execute(
        f"INSERT INTO alerts ({cols}, status, first_run_id, last_run_id, first_detected_at, last_detected_at)"
        f" SELECT {cols}, 'open', ?, ?, now(), now() FROM _alert_candidates"
        " WHERE alert_id NOT IN (SELECT alert_id FROM alerts)",
        [run_id, run_id],
    )
    for target, rows in (("alert_subjects", subjects), ("alert_events", events)):
        if rows is not None:
            _replace_rows(con, target, rows)
    con.execute("DROP TABLE _alert_candidates")
    return MergeResult(new=new, updated=updated - reopened, reopened=reopened, retracted=retracted)


def _replace_rows(con: duckdb.DuckDBPyConnection, target: str, rows: str) -> None:
    """Replace the found alerts' rows of ``target`` (alert_subjects, alert_events) by ``rows``."""
    cols = ", ".join(r[0] for r in con.execute(f"DESCRIBE {target}").fetchall())
    con.execute(f"DELETE FROM {target} WHERE alert_id IN (SELECT alert_id FROM _alert_candidates)")
    con.execute(
        f"INSERT INTO {target} ({cols}) SELECT {cols} FROM {rows}"
        " WHERE alert_id IN (SELECT alert_id FROM _alert_candidates)"
    )


def mark_coverage(con: duckdb.DuckDBPyConnection) -> int:
    """Flag open alerts whose sources (its own, or any log of its evidence) and window
    overlap a known coverage gap.

    Returns the number of alerts flagged. A gap with no source flags every source; a gap
    with no window flags every window of its source.
    """
    overlap = """
        EXISTS (SELECT 1 FROM coverage_gaps g
                WHERE (g.source_system IS NULL OR a.source_system IS NULL OR g.source_system = a.source_system
                       -- an alert spanning several logs is as incomplete as the least complete
                       OR g.source_system IN (SELECT ae.source_system FROM alert_events ae
                                              WHERE ae.alert_id = a.alert_id))
                  AND (g.window_start IS NULL OR a.window_end IS NULL OR a.window_end >= g.window_start)
                  AND (g.window_end IS NULL OR a.window_start IS NULL OR a.window_start <= g.window_end))
    """
    con.execute(f"UPDATE alerts a SET coverage_incomplete = {overlap} WHERE a.status = 'open'")
    # fetchall, not fetchone: DuckDB 2 keeps a half-read result open, and the caller's next
    # con.register() (e.g. merge_alerts with an Arrow table) then fails.
    rows = con.execute(
        "SELECT count(*) FROM alerts WHERE status = 'open' AND coverage_incomplete"
    ).fetchall()
    return int(rows[0][0]) if rows else 0
