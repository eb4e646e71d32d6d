"""The alerts' evidence rows, kept between reports: each alert's events are found once.

Every report needs each alert's listed events (the cases' data elements, the evidence shown
per case). Finding them by event id reads the event ids of all history, whatever the day
added: 6.4 CPU-s at 100M events. An alert's events are fixed while its event list is, so its
rows are kept (``report_alert_rows``, migration 0046) with the key of the list they were
found for, and each report searches only

- the alerts that are new or whose source or event list changed, over the rows the last
  search saw (restricted to those alerts' logs when each names one), and
- every alert, over the rows appended since (a row-id range: the scan skips the rest).

Rows the last search saw can only change by being deleted (validation quarantine) or moved
(a checkpoint compacting row groups that deletes emptied: rows after the gap take lower row
ids, in order). Either changes how many rows lie at or below the last row id seen, or which
event lies at it (``still_holds``); then every alert is searched again over all rows.
Nothing updates an event in place but the rule engine's ``authority_id``, which no kept
column holds; DuckDB updates a list column (``data_elements``) by deleting the row and
inserting it anew, which the check sees as a deletion. The result is the table
:func:`dwatch.report.cases.alert_rows` always made, row for row
(tests/report/test_evidence_rows.py).
"""

from __future__ import annotations

import duckdb

from dwatch.store import transaction

KEPT = "report_alert_rows"
STATE = "report_alert_rows_state"
# The evidence rows the last report showed, read back by row id (dwatch.report.data,
# migration 0051): valid while the state here holds, emptied when it does not.
SHOWN = "report_shown_events"
ALERT_ROWS = "dw_report_alert_rows"

# What an alert's rows depend on: the log it names (or none) and the event ids it lists.
_EVIDENCE_KEY = (
    "md5(coalesce(to_json(a.source_system)::VARCHAR, 'null') || '|'"
    " || coalesce(to_json(a.event_ids)::VARCHAR, 'null'))"
)
_FOUND = (
    "SELECT a.alert_id, a.evidence_key, e.source_system, e.event_id, e.occurred_at, e.row_id,"
    " e.data_elements FROM {alerts} a, unnest(a.event_ids) AS u(event_id)"
    " JOIN ({events}) e ON e.event_id = u.event_id"
    " AND (a.source_system IS NULL OR e.source_system = a.source_system)"
)
_ALL_ROWS = (1 << 63) - 1
_EVENTS = (
    "SELECT rowid AS row_id, source_system, event_id, occurred_at, data_elements"
    " FROM disclosure_events WHERE rowid BETWEEN {lo} AND {hi}"
)


def last_row(con: duckdb.DuckDBPyConnection) -> tuple[int, str | None, str | None, int]:
    """disclosure_events' last row id now (-1 when empty), the event there, and the row count."""
    row = con.execute("SELECT coalesce(max(rowid), -1), count(*) FROM disclosure_events").fetchone()
    last, count = (int(row[0]), int(row[1])) if row else (-1, 0)
    at = con.execute(
        "SELECT source_system, event_id FROM disclosure_events WHERE rowid = ?", [last]
    ).fetchone()
    return last, at[0] if at else None, at[1] if at else None, count


def still_holds(con: duckdb.DuckDBPyConnection, state: str = STATE) -> int | None:
    """The last row id the kept rows were searched up to (as ``state`` says), if no row at or
    below it has been deleted or moved since; None when they must all be searched again."""
    kept = con.execute(
        f"SELECT last_rowid, source_system, event_id, rows_at_or_below FROM {state}"
    ).fetchall()
    if len(kept) != 1:
        return None
    last, source_system, event_id, count = kept[0]
    below = con.execute(
        f"SELECT count(*) FROM disclosure_events WHERE rowid <= {int(last)}"
    ).fetchone()
    if not below or below[0] != count:
        return None  # rows deleted at or below the bound (or moved up into it)
    if last >= 0:
        at = con.execute(
            "SELECT source_system, event_id FROM disclosure_events WHERE rowid = ?", [int(last)]
        ).fetchall()
        if at != [(source_system, event_id)]:
            return None  # rows before it were deleted and the rest moved down
    return int(last)


def _search(con: duckdb.DuckDBPyConnection, bound: int | None, last: int) -> None:
    """Add to the kept rows what alerts new or changed since ``bound`` list at or below it,
    and what every alert lists above it (up to ``last``); ``bound`` None: search all again."""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE dw_report_alerts AS"
        f" SELECT a.alert_id, a.source_system, a.event_ids, {_EVIDENCE_KEY} AS evidence_key"
        " FROM alerts a"
    )
    if bound is None:
        con.execute(f"DELETE FROM {KEPT}")
        if table_present(con, SHOWN):  # their row ids may name other rows now
            con.execute(f"DELETE FROM {SHOWN}")
        bound = -1
    else:  # rows of alerts gone, or found for another event list, go
        con.execute(
            f"DELETE FROM {KEPT} k WHERE NOT EXISTS (SELECT 1 FROM dw_report_alerts a"
            " WHERE a.alert_id = k.alert_id AND a.evidence_key = k.evidence_key)"
        )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE dw_report_stale AS SELECT a.* FROM dw_report_alerts a"
        f" WHERE NOT EXISTS (SELECT 1 FROM {KEPT} k WHERE k.alert_id = a.alert_id)"
    )
    if bound >= 0:
        # One search per log the stale alerts name (a NULL log: every log), bounded by the
        # smallest and largest event id they list there: constants reach the scan, which
        # skips the row groups of other logs and, by their event ids' ranges, most of the
        # log's own (100M 1%: 155 alerts changed, 0.43 -> 0.03 CPU-s). A row that matches a
        # listed id lies within the bounds, so the rows found are the same.
        groups = con.execute(
            "SELECT a.source_system, min(u.event_id), max(u.event_id)"
            " FROM dw_report_stale a, unnest(a.event_ids) AS u(event_id) GROUP BY ALL"
        ).fetchall()
        for source, lo, hi in groups:
            if lo is None:
                continue  # no event id listed: nothing to find
            events = _EVENTS.format(lo=0, hi=bound) + " AND event_id BETWEEN ? AND ?"
            if source is None:
                alerts = "(SELECT * FROM dw_report_stale WHERE source_system IS NULL)"
                params: list[object] = [lo, hi]
            else:
                alerts = "(SELECT * FROM dw_report_stale WHERE source_system = ?)"
                events += " AND source_system = ?"
                params = [source, lo, hi, source]
            con.execute(f"INSERT INTO {KEPT} {_FOUND.format(alerts=alerts, events=events)}", params)
    if last > bound:
        events = _EVENTS.format(lo=bound + 1, hi=last)
        con.execute(f"INSERT INTO {KEPT} {_FOUND.format(alerts='dw_report_alerts', events=events)}")
    # Each alert searched says so, with or without rows found.
    con.execute(
        f"INSERT INTO {KEPT} (alert_id, evidence_key) SELECT alert_id, evidence_key"
        " FROM dw_report_stale"
    )
    con.execute("DROP TABLE dw_report_stale")
    con.execute("DROP TABLE dw_report_alerts")


def table_present(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    row = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = ? AND NOT temporary", [table]
    ).fetchone()
    return bool(row and row[0])


def kept_alert_rows(con: duckdb.DuckDBPyConnection) -> str:
    """Bring the kept rows up to date and copy them to temp table ``dw_report_alert_rows``
    (alert_id, source_system, event_id, occurred_at, row_id, data_elements); returns its name."""
    if not table_present(con, STATE):  # a store not yet migrated to 0046: search every event
        found = _FOUND.format(
            alerts="(SELECT *, NULL AS evidence_key FROM alerts)",
            events=_EVENTS.format(lo=0, hi=_ALL_ROWS),
        )
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {ALERT_ROWS} AS SELECT alert_id, source_system,"
            f" event_id, occurred_at, row_id, data_elements FROM ({found})"
        )
        return ALERT_ROWS
    with transaction(con):
        bound = still_holds(con)
        last, source_system, event_id, count = last_row(con)
        _search(con, bound, last)
        con.execute(f"DELETE FROM {STATE}")
        con.execute(
            f"INSERT INTO {STATE} VALUES (?, ?, ?, ?)", [last, source_system, event_id, count]
        )
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {ALERT_ROWS} AS"
        " SELECT alert_id, source_system, event_id, occurred_at, row_id, data_elements"
        f" FROM {KEPT} WHERE event_id IS NOT NULL"
    )
    return ALERT_ROWS
