"""Which stored batches the duplicate checks read: those whose key range overlaps a new one's.

The row checks "(source_system, event_id) identifies one row" and "sequence_no is used
once per source_system" look up the new batches' keys among the stored rows. Every batch's
keys are kept as one range per source: event ids by ingest (``ingest_key_ranges``,
migration 0027), sequence numbers by validation (``validation_sequence_ranges``, migration
0033, recorded here when a batch is validated). A stored row can share a key with a new
row only if its batch's range for the same source overlaps the new batch's, so the checks
read the new batches, those overlapping batches, and any loaded batch whose range is not
known (rows with no ingest run too); usually that is the new batches alone. When a new
batch's own range is not known, or every stored batch is to be read anyway, the check
reads the whole table.

Ranges may be wider than the rows (rows moved to quarantine after they were recorded):
the check then reads a little more, never less.
"""

from __future__ import annotations

import duckdb

SEQ_RANGES = "validation_sequence_ranges"
EVENT_RANGES = "ingest_key_ranges"
EVENTS = "disclosure_events"
# check id -> (ranges table, its low and high columns)
RANGES = {
    "unique_key": (EVENT_RANGES, "first_event_id", "last_event_id"),
    "sequence_unique": (SEQ_RANGES, "first_seq", "last_seq"),
}
# (ingest run, source_system, lowest, highest) of sequence_no
SeqRange = tuple[str, str, int, int]
# check id -> the runs whose rows the check reads (a check absent: the whole table)
KeyRuns = dict[str, tuple[str, ...]]


# Ranges as four parallel lists: one statement, not one per batch and source.
_UNNEST = (
    "SELECT unnest(?::VARCHAR[]) AS r, unnest(?::VARCHAR[]) AS s, unnest(?::BIGINT[]) AS lo,"
    " unnest(?::BIGINT[]) AS hi"
)


def _columns(seq: list[SeqRange]) -> list[list[str] | list[int]]:
    return [[r[0] for r in seq], [r[1] for r in seq], [r[2] for r in seq], [r[3] for r in seq]]


def runs_to_read(
    con: duckdb.DuckDBPyConnection, table: str, new: list[str], seq: list[SeqRange]
) -> KeyRuns:
    """For each duplicate check of ``table``, the runs its stored rows may come from.

    ``new``: the runs being checked that hold rows; ``seq``: their sequence number ranges
    (from the rows themselves: validation records them only after its verdicts)."""
    if table != EVENTS or not new:
        return {}
    _load_new_ranges(con, new, seq)
    loaded = {
        r[0]
        for r in con.execute(
            "SELECT run_id FROM ingest_runs WHERE kind = 'events' AND status = 'loaded'"
        ).fetchall()
    }
    out: KeyRuns = {}
    for check_id, (ranges, lo, hi) in RANGES.items():
        runs = _overlapping(con, new, ranges, lo, hi, loaded)
        if runs is not None and not loaded <= runs:
            out[check_id] = tuple(sorted(runs))
    con.execute("DROP TABLE IF EXISTS _dw_val_new_ranges")
    return out


def _load_new_ranges(con: duckdb.DuckDBPyConnection, new: list[str], seq: list[SeqRange]) -> None:
    """``_dw_val_new_ranges``: the new runs' event id ranges (as ingest recorded them)
    and sequence number ranges, per source (``kind`` names the ranges table)."""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _dw_val_new_ranges (kind VARCHAR, ingest_run_id VARCHAR,"
        " source_system VARCHAR, lo_text VARCHAR, hi_text VARCHAR, lo_num BIGINT, hi_num BIGINT)"
    )
    con.execute(
        f"INSERT INTO _dw_val_new_ranges SELECT '{EVENT_RANGES}', ingest_run_id, source_system,"
        f" first_event_id, last_event_id, NULL, NULL FROM {EVENT_RANGES}"
        " WHERE ingest_run_id IN (SELECT unnest(?::VARCHAR[]))",
        [new],
    )
    if seq:
        con.execute(
            f"INSERT INTO _dw_val_new_ranges SELECT '{SEQ_RANGES}', r, s, NULL, NULL, lo, hi"
            f" FROM ({_UNNEST})",
            _columns(seq),
        )


def _overlapping(
    con: duckdb.DuckDBPyConnection,
    new: list[str],
    ranges: str,
    lo: str,
    hi: str,
    loaded: set[str],
) -> set[str] | None:
    """The new runs, stored runs whose range in ``ranges`` overlaps one of theirs for the
    same source, and loaded runs with no range there; None: a new run's range is unknown."""
    kind = "lo_text, hi_text" if ranges == EVENT_RANGES else "lo_num, hi_num"
    lo_new, hi_new = kind.split(", ")
    known = {
        r[0]
        for r in con.execute(
            "SELECT DISTINCT ingest_run_id FROM _dw_val_new_ranges WHERE kind = ?", [ranges]
        ).fetchall()
    }
    if not set(new) <= known:
        return None
    found = set(new)
    found.update(
        r[0]
        for r in con.execute(
            f"SELECT DISTINCT o.ingest_run_id FROM {ranges} o JOIN _dw_val_new_ranges n"
            f" ON n.kind = ? AND n.source_system = o.source_system AND o.{lo} <= n.{hi_new}"
            f" AND o.{hi} >= n.{lo_new}",
            [ranges],
        ).fetchall()
    )
    ranged = {r[0] for r in con.execute(f"SELECT DISTINCT ingest_run_id FROM {ranges}").fetchall()}
    found.update(loaded - ranged)
    return found


def record_sequence_ranges(con: duckdb.DuckDBPyConnection, seq: list[SeqRange]) -> None:
    """Record validated batches' sequence number ranges (replacing any recorded before)."""
    if not seq:
        return
    runs = sorted({r[0] for r in seq})
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(
            f"DELETE FROM {SEQ_RANGES} WHERE ingest_run_id IN (SELECT unnest(?::VARCHAR[]))",
            [runs],
        )
        con.execute(f"INSERT INTO {SEQ_RANGES} SELECT * FROM ({_UNNEST})", _columns(seq))
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
