"""Every log's order read whole, sorted narrow: the log-order rows of a full judgement.

A log's breaks are where neighbours in its order (sequence number, then time) disagree
(:mod:`detectors.rule_state`). One window over every entry of every log finds them; sorting
each entry whole (its id, batch and row beside its number and time) made that window the
largest sort of a full judgement (956 MiB of spill at 10M events under a 244 MiB DuckDB
share). Here the window sorts only what orders and judges an entry: its log, number, time
and where it lies (its row id in ``disclosure_events``; a quarantined entry, which holds its
number, a negative number of its own). The few rows it keeps (breaks, dips, each log's
last entry) then fetch their id, batch and row, and their next neighbour's, by row id.

The rows are :func:`detectors.rule_state.log_rows_sql`'s over the same entries, column for
column; entries equal in log, number and time are ordered by where they lie (the wide
window left their order open).

The window runs over a few logs at a time (whole logs in name order, as many as make
about :data:`BYTES_PER_ENTRY`-sized entries to half DuckDB's memory limit), each piece
read through a range of log names that zone maps compare: what it holds or spills is
bounded by the memory setting, or by the largest log, not by the store.
"""

from __future__ import annotations

import duckdb

from detectors.rule_state import BREAK, COLUMNS, DIP, QUARANTINED_ENTRIES

# The quarantined entries (few), each with its own negative place.
_QUARANTINED = (
    "CREATE OR REPLACE TEMP TABLE dw_log_quarantined AS"
    " SELECT -1 - row_number() OVER () AS entry_row, * FROM ({entries})"
    " q(source_system, sequence_no, event_id, occurred_at, ingest_run_id, source_row)"
)

# What one entry costs the window, sorted with its neighbours (measured: 10M entries
# spilled about 260 MiB under a 476 MiB limit), with a margin.
BYTES_PER_ENTRY = 100

# Each entry's neighbours in its log, by number, time and place, and the last and next
# times either side; kept where the order breaks, the log ends or the time dips.
# {piece}: the logs of one piece.
_NARROW = f"""
SELECT * FROM (
    SELECT source_system, sequence_no, occurred_at, entry_row,
           lag(sequence_no) OVER w AS prev_no, lag(occurred_at) OVER w AS prev_at,
           lead(sequence_no) OVER w AS next_no, lead(occurred_at) OVER w AS next_at,
           lead(entry_row) OVER w AS next_entry,
           lag(occurred_at IGNORE NULLS) OVER w AS last_at,
           lead(occurred_at IGNORE NULLS) OVER w AS coming_at
    FROM (SELECT source_system, sequence_no, occurred_at, rowid AS entry_row
          FROM disclosure_events
          WHERE sequence_no IS NOT NULL AND ({{events}}) AND ({{piece}})
          UNION ALL
          SELECT source_system, sequence_no, occurred_at, entry_row FROM dw_log_quarantined
          WHERE {{piece}})
    WINDOW w AS (PARTITION BY source_system ORDER BY sequence_no, occurred_at, entry_row)
)
WHERE {BREAK} OR next_no IS NULL OR {DIP}
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
SELECT {COLUMNS}, last_at, coming_at, {BREAK} AS is_break FROM (
    SELECT n.source_system, n.sequence_no, d.event_id, n.occurred_at, d.ingest_run_id,
           d.source_row, n.prev_no, n.prev_at, n.next_no, x.event_id AS next_event,
           n.next_at, x.ingest_run_id AS next_run, x.source_row AS next_row, n.last_at,
           n.coming_at
    FROM dw_log_narrow n
    JOIN dw_log_details d ON d.entry_row = n.entry_row
    LEFT JOIN dw_log_details x ON x.entry_row = n.next_entry
)
"""


def _limit_bytes(con: duckdb.DuckDBPyConnection) -> float:
    """DuckDB's memory limit as it prints it ('476.0 MiB', '1.0 GiB'), in bytes."""
    row = con.execute("SELECT current_setting('memory_limit')").fetchone()
    number, _, unit = str(row[0] if row else "").strip().partition(" ")
    scale = {"bytes": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40, "PiB": 2**50}
    try:
        return float(number) * scale.get(unit.strip(), 1)
    except ValueError:
        return float("inf")


def pieces(con: duckdb.DuckDBPyConnection, events: str, entries: float) -> list[str]:
    """Filters on ``source_system`` cutting the entries ``events`` selects (and the
    quarantined ones) into ranges of whole logs, each of at most ``entries`` entries
    unless one log alone holds more."""
    counts = con.execute(
        "SELECT source_system, count(*) FROM (SELECT source_system FROM disclosure_events"
        f" WHERE sequence_no IS NOT NULL AND ({events})"
        " UNION ALL SELECT source_system FROM dw_log_quarantined)"
        " GROUP BY ALL ORDER BY source_system NULLS FIRST"
    ).fetchall()
    if sum(n for _, n in counts) <= entries:
        return ["true"]
    ranges: list[list[str]] = []
    held = 0.0
    out = ["source_system IS NULL"] if counts and counts[0][0] is None else []
    for log, n in counts:
        if log is None:
            continue
        if not ranges or held + n > entries:
            ranges.append([log, log])
            held = 0.0
        ranges[-1][1] = log
        held += n
    return out + [f"source_system BETWEEN {_quoted(lo)} AND {_quoted(hi)}" for lo, hi in ranges]


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def build(
    con: duckdb.DuckDBPyConnection,
    table: str = "dw_log_rows",
    *,
    events: str = "true",
    quarantined: str = "true",
    logs: str = "true",
    piece_entries: float | None = None,
) -> None:
    """``table``: the break rows, the dips and each log's last row of every entry the filters select
    (SQL on ``disclosure_events``, on ``quarantine`` and on a quarantined entry's log,
    as :func:`detectors.rule_state.entries_sql` takes them), as ``log_rows_sql`` gives them;
    sorted in pieces of about ``piece_entries`` entries (default: from the memory limit)."""
    entries = QUARANTINED_ENTRIES.format(quarantined=quarantined, logs=logs)
    con.execute(_QUARANTINED.format(entries=entries))
    con.execute(
        "CREATE OR REPLACE TEMP TABLE dw_log_narrow AS "
        + _NARROW.format(events=events, piece="false")
    )
    size = piece_entries or _limit_bytes(con) / 2 / BYTES_PER_ENTRY
    for piece in pieces(con, events, size):
        con.execute("INSERT INTO dw_log_narrow " + _NARROW.format(events=events, piece=piece))
    con.execute(_DETAILS)
    con.execute(_ROWS.format(table=table))
    for name in ("dw_log_narrow", "dw_log_details", "dw_log_quarantined"):
        con.execute(f"DROP TABLE {name}")
