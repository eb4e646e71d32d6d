"""Where the rows of some ingest batches lie in their table, by rowid.

Batch ids skip no row groups (ids of one day share the first bytes DuckDB keeps of each
string's min and max); row ids do. The accounting index's refresh and the direct read of
unindexed batches bound their reads with these.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

ROW_GROUP = 122_880  # DuckDB's row group: the unit its min/max statistics skip


@dataclass(frozen=True)
class RowBounds:
    """Per table, a rowid no row of the batches being read lies below (0: read all)."""

    events: int = 0
    items: int = 0


# The ledger's kind of batch -> the table its rows are in.
_KIND_TABLE = {"events": "disclosure_events", "request_items": "request_items"}


def _first_rowid(con: duckdb.DuckDBPyConnection, table: str, ids: list[str]) -> int:
    """A rowid no row of batches ``ids`` in ``table`` lies below (0: not known).

    Batch ids skip no row groups, row ids do. Ingest appends, so new rows are the table's
    last: the tail is read, widened until it holds as many of the batches' rows as their
    ledger counts say (validation's quarantine takes its rows off ``rows_loaded``), as
    ``validate.selecting.first_rows`` does; batches re-read after validation lie anywhere."""
    total, expected, uncounted = (
        int(v)
        for v in con.execute(
            f"SELECT (SELECT count(*) FROM {table}), (SELECT coalesce(sum(rows_loaded), 0)"
            " FROM ingest_runs WHERE run_id IN (SELECT unnest($ids::VARCHAR[]))),"
            " (SELECT count(*) - count(rows_loaded) FROM ingest_runs"
            "  WHERE run_id IN (SELECT unnest($ids::VARCHAR[])))",
            {"ids": ids},
        ).fetchall()[0]
    )
    if uncounted:  # a batch the ledger has no count for: read the whole table
        return 0
    tail = max(2 * expected, ROW_GROUP)
    while tail < total:
        found, low = con.execute(
            f"SELECT count(*), min(rowid) FROM {table} WHERE rowid >= $from"
            " AND ingest_run_id IN (SELECT unnest($ids::VARCHAR[]))",
            {"ids": ids, "from": total - tail},
        ).fetchall()[0]
        if int(found) == expected:
            return int(low) if found else total
        tail *= 4
    return 0


def first_rowids(con: duckdb.DuckDBPyConnection, batches: list[str]) -> RowBounds:
    """``RowBounds`` for reading the rows of ``batches`` (their ledger kinds name the table)."""
    kinds: dict[str, list[str]] = {}
    for run_id, kind in con.execute(
        "SELECT run_id, kind FROM ingest_runs WHERE run_id IN (SELECT unnest(?::VARCHAR[]))",
        [batches],
    ).fetchall():
        kinds.setdefault(kind, []).append(run_id)
    if set(kinds) - set(_KIND_TABLE):  # a batch of another kind: do not bound the reads
        return RowBounds()
    bounds = {k: _first_rowid(con, _KIND_TABLE[k], ids) for k, ids in kinds.items()}
    return RowBounds(bounds.get("events", 0), bounds.get("request_items", 0))
