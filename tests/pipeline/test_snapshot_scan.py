"""A publish groups the old rows block by block only when they changed: their count and hash
sum in total stand for the blocks the previous publish recorded. The scan with the recorded
blocks must equal the full scan in every case (appends only, and each kind of change)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import pytest
from pipeline_helpers import ledger_rows, write_events

import dwatch.snapshot_parts as snapshot_parts
from dwatch.ingest import ingest_paths
from dwatch.snapshot_parts import scan_blocks
from dwatch.store import connect


@pytest.fixture
def store(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[duckdb.DuckDBPyConnection]:
    monkeypatch.setattr(snapshot_parts, "BLOCK_ROWS", 4)
    con = connect(db_path)
    yield con
    con.close()


def _load(con: duckdb.DuckDBPyConnection, path: Path, start: int, days: int = 7) -> None:
    rows = ledger_rows("ca-ftb-fti-log", [(f"2026-01-{d:02d}", 9) for d in range(2, 2 + days)],
                       start_seq=start)  # fmt: skip
    write_events(path, rows)
    ingest_paths(con, [path])


def _keys(con: duckdb.DuckDBPyConnection, first: int, n: int) -> None:
    con.execute(
        "INSERT INTO accounting_keys (lookup_key, via, source_row, ingest_run_id)"
        " SELECT (i * 7) % 13, 'event', i, 'ing_' || (i % 3) FROM range(?, ?) t(i)",
        [first, first + n],
    )


Change = Callable[[duckdb.DuckDBPyConnection], None]
CHANGES: dict[str, Change] = {
    "nothing": lambda con: None,
    "citation re-read": lambda con: con.execute(
        "UPDATE disclosure_events SET authority_id = 'reread' WHERE rowid = 5"
    ),
    "row quarantined": lambda con: con.execute("DELETE FROM disclosure_events WHERE rowid = 6"),
    "rows quarantined, checkpoint renumbers": lambda con: (
        con.execute("DELETE FROM disclosure_events WHERE rowid BETWEEN 2 AND 4"),
        con.execute("CHECKPOINT"),
    ),
    "index entries deleted and re-added": lambda con: (
        con.execute("CREATE TEMP TABLE k AS SELECT * FROM accounting_keys WHERE source_row < 3"),
        con.execute("DELETE FROM accounting_keys WHERE source_row < 3"),
        con.execute("INSERT INTO accounting_keys SELECT * FROM k"),
        con.execute("CHECKPOINT"),
    ),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_the_scan_with_recorded_blocks_equals_the_full_scan(
    store: duckdb.DuckDBPyConnection, tmp_path: Path, change: str
) -> None:
    _load(store, tmp_path / "a.csv", 1)
    _keys(store, 0, 10)
    recorded = {t: scan_blocks(store, t, -1) for t in ("disclosure_events", "accounting_keys")}
    CHANGES[change](store)
    _load(store, tmp_path / "b.csv", 8, days=3)  # then the run's new rows
    _keys(store, 10, 5)
    for table, before in recorded.items():
        full = scan_blocks(store, table, before.last_rowid)
        known = scan_blocks(store, table, before.last_rowid, before.now)
        assert (known.old, known.now, known.last_rowid) == (full.old, full.now, full.last_rowid)
        changed = change != "nothing" and (
            table == "accounting_keys") == change.startswith("index")  # fmt: skip
        assert known.grouped_old == changed, table
