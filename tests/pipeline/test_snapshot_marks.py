"""A publish reads no old row when the previous publish's marks hold (the count of rows at
or below its last row id, the row at it, the in-place columns' hash sum, the rewrites the
store counts): the scan it then makes equals the full scan in every case, and every kind
of change makes it read the old rows."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from pipeline_helpers import ledger_rows, write_events

import dwatch.accounting.index as index_module
import dwatch.snapshot_parts as snapshot_parts
from dwatch.accounting.index import refresh_index
from dwatch.ingest import ingest_paths
from dwatch.snapshot import publish_snapshot
from dwatch.snapshot_parts import (
    TableState,
    note_rewrite,
    read_manifest,
    rewrites_of,
    scan_blocks,
    tail_hash,
)
from dwatch.store import connect

TABLES = ("disclosure_events", "accounting_keys")


@pytest.fixture
def store(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[duckdb.DuckDBPyConnection]:
    monkeypatch.setattr(snapshot_parts, "BLOCK_ROWS", 4)
    con = connect(db_path)
    yield con
    con.close()


def _load(con: duckdb.DuckDBPyConnection, path: Path, start: int, days: int = 7) -> None:
    rows = ledger_rows("ca-ftb-fti-log", [(f"2026-01-{d:02d}", 9) for d in range(2, 2 + days)],
                       start_seq=start)  # fmt: skip
    for n, row in enumerate(rows):  # a taxpayer each: the accounting index lists them
        row["taxpayer_tin"] = f"{123450000 + start + n}"
    write_events(path, rows)
    ingest_paths(con, [path])


def _keys(con: duckdb.DuckDBPyConnection, first: int, n: int) -> None:
    con.execute(
        "INSERT INTO accounting_keys (lookup_key, via, source_row, ingest_run_id)"
        " SELECT (i * 7) % 13, 'event', i, 'ing_' || (i % 3) FROM range(?, ?) t(i)",
        [first, first + n],
    )


def _marks(con: duckdb.DuckDBPyConnection, table: str) -> TableState:
    """What a publish records of ``table`` now (as snapshot_parts._write_table does)."""
    scan = scan_blocks(con, table, -1)
    return TableState(
        "spec",
        scan.last_rowid,
        scan.now,
        tail_hash(con, table, scan.last_rowid),
        scan.in_place,
        rewrites_of(con, table),
    )


def _rewritten(con: duckdb.DuckDBPyConnection, order: str) -> None:
    """The index's rows deleted and added again in ``order``, noted, checkpointed."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE k AS SELECT * FROM accounting_keys ORDER BY {order}")
    con.execute("DELETE FROM accounting_keys")
    note_rewrite(con, "accounting_keys")
    con.execute("INSERT INTO accounting_keys SELECT * FROM k")
    con.execute("CHECKPOINT")


Change = Callable[[duckdb.DuckDBPyConnection], object]
CHANGES: dict[str, tuple[Change, set[str]]] = {
    "nothing": (lambda con: None, set()),
    "citation re-read": (
        lambda con: con.execute(
            "UPDATE disclosure_events SET authority_id = 'reread' WHERE rowid = 5"
        ),
        {"disclosure_events"},
    ),
    "citations swapped between two rows": (
        lambda con: (
            con.execute("UPDATE disclosure_events SET authority_id = 'one' WHERE rowid = 2"),
            con.execute("UPDATE disclosure_events SET authority_id = 'two' WHERE rowid = 3"),
        ),
        {"disclosure_events"},
    ),
    "the last old row re-read": (
        lambda con: con.execute(
            "UPDATE disclosure_events SET authority_id = 'reread'"
            " WHERE rowid = (SELECT max(rowid) FROM disclosure_events)"
        ),
        {"disclosure_events"},
    ),
    "row quarantined": (
        lambda con: con.execute("DELETE FROM disclosure_events WHERE rowid = 6"),
        {"disclosure_events"},
    ),
    "rows quarantined, checkpoint renumbers": (
        lambda con: (
            con.execute("DELETE FROM disclosure_events WHERE rowid BETWEEN 2 AND 4"),
            con.execute("CHECKPOINT"),
        ),
        {"disclosure_events"},
    ),
    "index entries deleted and re-added": (
        lambda con: (
            con.execute(
                "CREATE TEMP TABLE k AS SELECT * FROM accounting_keys WHERE source_row < 3"
            ),
            con.execute("DELETE FROM accounting_keys WHERE source_row < 3"),
            con.execute("INSERT INTO accounting_keys SELECT * FROM k"),
            con.execute("CHECKPOINT"),
        ),
        {"accounting_keys"},
    ),
    "index rewritten in another order": (
        lambda con: _rewritten(con, "lookup_key, source_row"),
        {"accounting_keys"},
    ),
    # Rows added again in another order and moved back onto the same row ids by a
    # checkpoint keep the count and may keep the last row: a step that does so notes it,
    # and the note alone makes the publish read the old rows.
    "a rewrite noted": (lambda con: note_rewrite(con, "accounting_keys"), {"accounting_keys"}),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_the_scan_by_marks_equals_the_full_scan_and_reads_old_rows_on_any_change(
    store: duckdb.DuckDBPyConnection, tmp_path: Path, change: str
) -> None:
    _load(store, tmp_path / "a.csv", 1)
    _keys(store, 0, 10)
    marks = {t: _marks(store, t) for t in TABLES}
    apply, touched = CHANGES[change]
    apply(store)
    _load(store, tmp_path / "b.csv", 8, days=3)  # then the run's new rows
    _keys(store, 10, 5)
    for table, before in marks.items():
        full = scan_blocks(store, table, before.last_rowid)
        marked = scan_blocks(store, table, before.last_rowid, before.blocks, before)
        assert (marked.old, marked.now, marked.last_rowid, marked.in_place) == (
            full.old,
            full.now,
            full.last_rowid,
            full.in_place,
        )
        assert marked.read_old == (table in touched), table


def test_rewrites_are_counted_by_the_index_steps_that_delete_and_add_again(
    store: duckdb.DuckDBPyConnection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The accounting index's rewrite in key order, its drop of batches validation moved
    rows out of, and its fresh start when hints no longer hold each count one rewrite."""
    monkeypatch.setattr(index_module, "COMPACT_MIN_TAIL", 1)
    for n, name in enumerate("abc"):
        rows = ledger_rows("ca-ftb-fti-log", [("2026-01-0" + str(2 + n), 4)], start_seq=1 + 4 * n)
        for k, row in enumerate(rows):
            row["taxpayer_tin"] = f"{123450000 + 10 * n + k}"
        write_events(tmp_path / f"{name}.csv", rows)
        ingest_paths(store, [tmp_path / f"{name}.csv"])
        before = rewrites_of(store, "accounting_keys")
        refresh_index(store)
    # the third refresh's tail outgrew half the sorted part: rewritten in key order
    assert rewrites_of(store, "accounting_keys") == (before or 0) + 1
    run = store.execute("SELECT max(ingest_run_id) FROM accounting_index_runs").fetchone()[0]
    store.execute(
        "INSERT INTO quarantine (ingest_run_id, source_file, kind, reason_code, message, stage,"
        " quarantined_at) VALUES (?, 'x.csv', 'events', 'test', 'moved', 'validate',"
        " now() + INTERVAL 1 HOUR)",
        [run],
    )
    counted = rewrites_of(store, "accounting_keys")
    refresh_index(store)  # the batch is stale: its rows are deleted and indexed again
    assert rewrites_of(store, "accounting_keys") == (counted or 0) + 1
    store.execute("UPDATE accounting_index_state SET hint_last_rowid = hint_last_rowid + 1000")
    counted = rewrites_of(store, "accounting_keys")
    refresh_index(store)  # the hints no longer hold: the index is emptied and built anew
    assert rewrites_of(store, "accounting_keys") == (counted or 0) + 1


def test_a_second_publish_reads_no_old_row_and_shows_the_store(
    store: duckdb.DuckDBPyConnection,
    db_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Publish, load a batch, publish: the marks hold, so the second publish reads no old
    row (only their count and the row at the last row id); the snapshot shows every row."""
    _load(store, tmp_path / "a.csv", 1)
    refresh_index(store)
    snaps = tmp_path / "snapshots"
    sent: list[str] = []
    real = snapshot_parts._fresh_blocks

    def spy(*args: Any, **kwargs: Any) -> snapshot_parts.Scan:
        scan = real(*args, **kwargs)
        sent.append(f"{args[1]}:{scan.read_old}")
        return scan

    monkeypatch.setattr(snapshot_parts, "_fresh_blocks", spy)
    for n, run_id in enumerate(["run_20260101T000000_a", "run_20260102T000000_b"]):
        if n:
            _load(store, tmp_path / "b.csv", 8, days=3)
            refresh_index(store)
        store.execute(
            "INSERT INTO runs (run_id, trigger, status, started_at)"
            " VALUES (?, 'test', 'succeeded', now())",
            [run_id],
        )
        sent.clear()
        published = publish_snapshot(store, db_path, snaps, run_id, keep=5)
    assert sorted(sent) == ["accounting_keys:False", "disclosure_events:False"]
    state = read_manifest(published.path)
    assert state["disclosure_events"][0].tail is not None
    assert state["accounting_keys"][0].rewrites == rewrites_of(store, "accounting_keys")
    snap = duckdb.connect(str(published.path), read_only=True)
    try:
        for query in (
            "SELECT * EXCLUDE (extra) FROM disclosure_events ORDER BY ALL",
            "SELECT * FROM accounting_keys ORDER BY ALL",
        ):
            assert snap.execute(query).fetchall() == store.execute(query).fetchall()
        assert "partition_rewrites" not in {
            r[0] for r in snap.execute("SELECT table_name FROM duckdb_tables()").fetchall()
        }
    finally:
        snap.close()


def test_a_manifest_without_marks_reads_the_old_rows(
    store: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    """A previous publish of an older version recorded blocks but no marks: the old rows
    are hashed as before (and the scan is the same)."""
    _load(store, tmp_path / "a.csv", 1)
    scan = scan_blocks(store, "disclosure_events", -1)
    old = TableState("spec", scan.last_rowid, scan.now)
    _load(store, tmp_path / "b.csv", 8, days=3)
    marked = scan_blocks(store, "disclosure_events", old.last_rowid, old.blocks, old)
    assert marked.read_old
    assert not marked.grouped_old
