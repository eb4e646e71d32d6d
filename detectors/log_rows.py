"""Every log's order read whole, sorted narrow: the log-order rows of a full judgement.

A log's breaks are where neighbours in its order (sequence number, then time) disagree
(:mod:`detectors.rule_state`). One window over every entry of every log finds them; sorting
each entry whole (its id, batch and row beside its number and time) made that window the
largest sort of a full judgement (956 MiB of spill at 10M events under a 244 MiB DuckDB
share). Here the window sorts only what orders and judges an entry: its log, number, time
and where it lies (its row id in ``disclosure_events``; a quarantined entry, which holds its
number, a negative number of its own). The few rows it keeps (breaks, each log's last
entry) then fetch their id, batch and row, and their next neighbour's, by row id.

The rows are :func:`detectors.rule_state.log_rows_sql`'s over the same entries, column for
column; entries equal in log, number and time are ordered by where they lie (the wide
window left their order open).
"""

from __future__ import annotations

import duckdb

from detectors.rule_state import BREAK, COLUMNS, QUARANTINED_ENTRIES

# The quarantined entries (few), each with its own negative place.
_QUARANTINED = (
    "CREATE OR REPLACE TEMP TABLE dw_log_quarantined AS"
    " SELECT -1 - row_number() OVER () AS entry_row, * FROM ({entries})"
    " q(source_system, sequence_no, event_id, occurred_at, ingest_run_id, source_row)"
)

# Each entry's neighbours in its log, by number, time and place; kept where the order
# breaks or the log ends.
_NARROW = f"""
CREATE OR REPLACE TEMP TABLE dw_log_narrow AS
SELECT * FROM (
    SELECT source_system, sequence_no, occurred_at, entry_row,
           lag(sequence_no) OVER w AS prev_no, lag(occurred_at) OVER w AS prev_at,
           lead(sequence_no) OVER w AS next_no, lead(occurred_at) OVER w AS next_at,
           lead(entry_row) OVER w AS next_entry
    FROM (SELECT source_system, sequence_no, occurred_at, rowid AS entry_row
          FROM disclosure_events WHERE sequence_no IS NOT NULL AND ({{events}})
          UNION ALL
          SELECT source_system, sequence_no, occurred_at, entry_row FROM dw_log_quarantined)
    WINDOW w AS (PARTITION BY source_system ORDER BY sequence_no, occurred_at, entry_row)
)
WHERE {BREAK} OR next_no IS NULL
"""

# The id, batch and row of every kept entry and of its next neighbour.
_DETAILS = """
CREATE OR REPLACE TEMP TABLE dw_log_details AS
SELECT rowid AS entry_row, event_id, ingest_run_id, source_row FROM disclosure_events
WHERE rowid IN (SELECT entry_row FROM dw_log_narrow WHERE entry_row >= 0
                UNION ALL SELECT next_entry FROM dw_log_narrow WHERE next_entry >= 0)
UNION ALL
SELECT entry_row, event_id, ingest_run_id, source_row FROM dw_log_quarantined
"""

_ROWS = f"""
CREATE OR REPLACE TEMP TABLE {{table}} AS
SELECT {COLUMNS}, {BREAK} AS is_break FROM (
    SELECT n.source_system, n.sequence_no, d.event_id, n.occurred_at, d.ingest_run_id,
           d.source_row, n.prev_no, n.prev_at, n.next_no, x.event_id AS next_event,
           n.next_at, x.ingest_run_id AS next_run, x.source_row AS next_row
    FROM dw_log_narrow n
    JOIN dw_log_details d ON d.entry_row = n.entry_row
    LEFT JOIN dw_log_details x ON x.entry_row = n.next_entry
)
"""


def build(
    con: duckdb.DuckDBPyConnection,
    table: str = "dw_log_rows",
    *,
    events: str = "true",
    quarantined: str = "true",
    logs: str = "true",
) -> None:
    """``table``: the break rows and each log's last row of every entry the filters select
    (SQL on ``disclosure_events``, on ``quarantine`` and on a quarantined entry's log,
    as :func:`detectors.rule_state.entries_sql` takes them), as ``log_rows_sql`` gives them."""
    entries = QUARANTINED_ENTRIES.format(quarantined=quarantined, logs=logs)
    con.execute(_QUARANTINED.format(entries=entries))
    con.execute(_NARROW.format(events=events))
    con.execute(_DETAILS)
    con.execute(_ROWS.format(table=table))
    for name in ("dw_log_narrow", "dw_log_details", "dw_log_quarantined"):
        con.execute(f"DROP TABLE {name}")
