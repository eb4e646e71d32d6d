"""The timeline's sums per recipient and day, kept between reports: each event is summed once.

The report charts disclosures of all history per recipient and day. Summing them read every
event of the charted types, whatever the day added (0.9 CPU-s at 100M events). The sums are
a function of the rows alone, so they are kept (``report_timeline_days``, migration 0051)
with the row they reach (``report_timeline_state``), and each report adds only the rows
appended since (a row-id range: the scan skips the rest).

Rows already summed can change only by being deleted (validation quarantine) or moved (a
checkpoint compacting row groups that deletes emptied): either changes how many rows lie at
or below the last row id summed, or which event lies at it
(:func:`dwatch.report.evidence_rows.still_holds`); then every event is summed again. Nothing
updates an event's type, recipient, time or record count in place (DuckDB updates a list
column by deleting and inserting the row, which the check sees). The result is the grouping
``FROM_SCRATCH`` reads, row for row (tests/report/test_timeline_days.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb

from dwatch.report.evidence_rows import last_row, still_holds, table_present
from dwatch.store import transaction

KEPT = "report_timeline_days"
STATE = "report_timeline_state"

_SUMS = (
    "SELECT recipient_agency, CAST(occurred_at AS DATE) AS day, count(*) AS events,"
    " sum(record_count) AS records FROM disclosure_events"
    " WHERE event_type IN (SELECT unnest(?::VARCHAR[])) {where} GROUP BY ALL"
)
_ORDER = " ORDER BY recipient_agency, day"


# The sums from scratch (one parameter: the event types), ordered as the kept ones are read.
FROM_SCRATCH = _SUMS.format(where="") + _ORDER


def _add(con: duckdb.DuckDBPyConnection, types: list[str], lo: int, hi: int) -> None:
    """Add the rows with row ids in [lo, hi] to the kept sums."""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE dw_timeline_new AS "
        + _SUMS.format(where=f"AND rowid BETWEEN {int(lo)} AND {int(hi)}"),
        [types],
    )
    if con.execute("SELECT count(*) FROM dw_timeline_new").fetchone() == (0,):
        con.execute("DROP TABLE dw_timeline_new")
        return
    same = (
        "k.recipient_agency IS NOT DISTINCT FROM n.recipient_agency"
        " AND k.day IS NOT DISTINCT FROM n.day"
    )
    # sum() over the kept and the new: NULL only when both are (every record count NULL)
    con.execute(
        "CREATE OR REPLACE TEMP TABLE dw_timeline_merged AS"
        " SELECT n.recipient_agency, n.day, n.events + coalesce(k.events, 0) AS events,"
        " CASE WHEN n.records IS NULL AND k.records IS NULL THEN NULL"
        " ELSE coalesce(n.records, 0) + coalesce(k.records, 0) END AS records"
        f" FROM dw_timeline_new n LEFT JOIN {KEPT} k ON {same}"
    )
    con.execute(f"DELETE FROM {KEPT} k WHERE EXISTS (SELECT 1 FROM dw_timeline_new n WHERE {same})")
    con.execute(
        f"INSERT INTO {KEPT} SELECT recipient_agency, day, events, records FROM dw_timeline_merged"
    )
    con.execute("DROP TABLE dw_timeline_merged")
    con.execute("DROP TABLE dw_timeline_new")


def kept_timeline_sums(
    con: duckdb.DuckDBPyConnection, event_types: Sequence[str]
) -> tuple[str, list[object]]:
    """Bring the kept sums up to date; returns the statement that reads them (and its
    parameters): recipient_agency, day, events, records, ordered by recipient and day."""
    types = list(event_types)
    if not table_present(con, STATE):  # a store not yet migrated to 0051: sum every event
        return FROM_SCRATCH, [types]
    with transaction(con):
        kept_types = con.execute(f"SELECT event_types FROM {STATE}").fetchall()
        bound = still_holds(con, STATE) if kept_types == [(types,)] else None
        last, source_system, event_id, count = last_row(con)
        if bound is None:
            con.execute(f"DELETE FROM {KEPT}")
            bound = -1
        if last > bound:
            _add(con, types, bound + 1, last)
        con.execute(f"DELETE FROM {STATE}")
        con.execute(
            f"INSERT INTO {STATE} VALUES (?, ?, ?, ?, ?)",
            [last, source_system, event_id, count, types],
        )
    return f"SELECT recipient_agency, day, events, records FROM {KEPT}" + _ORDER, []
