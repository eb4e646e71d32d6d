"""Whether the row ids the custody state keeps still point at the rows they were read from.

The custody state keeps each use narrow, by its row id in ``disclosure_events``
(:mod:`detectors.custody_state`). DuckDB does not keep row ids fixed: when a checkpoint
compacts row groups that deletes emptied (validation quarantines rows), the rows after them
move down and take new row ids. Compaction keeps the rows' order, so if any row at or before
the table's last row moved, the last row moved as well.

So each time the state reads row ids, it records the last row (its row id, source and event
id: :func:`capture`), and before the kept row ids are trusted again the row at that id must
still be that event (:func:`holds`). Both are point reads (a constant row id skips every
other row group). A check that fails makes the run rebuild the state from all history.
"""

from __future__ import annotations

import duckdb

from dwatch.errors import RuleError

TABLE = "rule_state_rowids"


def capture(con: duckdb.DuckDBPyConnection, run_id: str | None = None) -> None:
    """Record where ``disclosure_events``' last row lies now (call when row ids are read)."""
    con.execute(f"DELETE FROM {TABLE}")
    last = con.execute("SELECT max(rowid) FROM disclosure_events").fetchone()
    last_rowid = last[0] if last else None
    row = (
        con.execute(
            "SELECT source_system, event_id FROM disclosure_events WHERE rowid = ?", [last_rowid]
        ).fetchone()
        if last_rowid is not None
        else None
    )
    con.execute(
        f"INSERT INTO {TABLE} VALUES (?, ?, ?, ?)",
        [last_rowid, row[0] if row else None, row[1] if row else None, run_id],
    )


def holds(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the last row recorded by :func:`capture` is still at its row id (False when
    nothing was recorded: row ids kept by older code are not trusted)."""
    kept = con.execute(f"SELECT last_rowid, source_system, event_id FROM {TABLE}").fetchall()
    if len(kept) != 1:
        return False
    last_rowid, source_system, event_id = kept[0]
    if last_rowid is None:  # the table was empty: no row id was kept
        return True
    now = con.execute(
        "SELECT source_system, event_id FROM disclosure_events WHERE rowid = ?", [last_rowid]
    ).fetchall()
    return now == [(source_system, event_id)]


def require(con: duckdb.DuckDBPyConnection, when: str) -> None:
    """Raise when the kept row ids moved since they were read (``when``: what was about to
    read them). The state's check fails at the next run too, which then rebuilds it."""
    if not holds(con):
        raise RuleError(
            f"the custody state's row ids moved {when}: DuckDB compacted row groups emptied"
            " by deleted rows at a checkpoint",
            where="detectors.custody_state (table rule_custody_events, column event_row)",
            fix="run again: the next run rebuilds the custody state from all history",
        )
