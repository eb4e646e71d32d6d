"""Each log's entries behind an earlier one, kept with the log-order state (issue 18).

``out_of_order_timestamps`` pairs the entries of a log with the starts of its late runs; it
read every entry of every log with a start each run (100M events, a 1% run: about 6.5
CPU-s). The log-order state (migration 0022, :mod:`detectors.rule_state`) now also keeps
every entry timed before the latest entry earlier in its log's order (``rule_log_behind``,
few) and each tail's latest time (``rule_log_tail.latest_at``), and the rule reads those.

A store whose log-order state was kept by the code before this one (its code version) gets
them here from the batches that state covers, and the state is marked as this code's: the
next run continues from it instead of reading every log again. Any other state (none, or
derived by other code) is rebuilt by the next run, as before.
"""

from __future__ import annotations

import duckdb

# The log-order code version before this migration, and the one it backfills for.
_BEFORE = "370285b8446f"
_FOR = "1f07a72927b6"

_TABLE = """
CREATE TABLE IF NOT EXISTS rule_log_behind (
    source_system VARCHAR,
    sequence_no BIGINT,
    event_id VARCHAR,
    occurred_at TIMESTAMPTZ,
    ingest_run_id VARCHAR,
    source_row BIGINT,
    latest_before TIMESTAMPTZ,           -- the latest time of the entries before it in its log's order
    updated_by_run_id VARCHAR
)
"""


def apply(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(_TABLE)
    con.execute(
        "COMMENT ON TABLE rule_log_behind IS 'Every log entry timed before an entry earlier in"
        " its log''s order (sequence number, then time), with the latest such time; appended"
        " from new batches, replaced for a log a late entry reopens, rebuilt with the rest of"
        " the log-order state (rule_log_*).'"
    )
    con.execute("ALTER TABLE rule_log_tail ADD COLUMN IF NOT EXISTS latest_at TIMESTAMPTZ")
    con.execute(
        "COMMENT ON COLUMN rule_log_tail.latest_at IS 'The latest time of the log''s entries up"
        " to its tail: an entry of a later batch is behind an earlier one when timed before it.'"
    )
    from detectors import rule_state

    kept = con.execute(
        "SELECT count(*) FROM rule_state WHERE family = $f AND code_version = $v",
        {"f": rule_state.LOG_ORDER, "v": _BEFORE},
    ).fetchone()
    if not kept or not kept[0] or rule_state.LOG_CODE_VERSION != _FOR:
        return  # nothing kept by the code before, or later code: the next run rebuilds
    rule_state.backfill_behind(con)
    con.execute(
        "UPDATE rule_state SET code_version = $v WHERE family = $f",
        {"f": rule_state.LOG_ORDER, "v": _FOR},
    )
