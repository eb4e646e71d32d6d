"""Snapshot publishing in a few large COPYs (issue 18 item 4): the big tables are written as
segments of rowid ranges, a publish finds what changed from narrow columns (never whole
rows), and writes only new rows and the segments whose rows changed. Counted by the
statements the publisher sends, never by time."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from pipeline_helpers import ledger_rows, write_events

import dwatch.snapshot_parts as snapshot_parts
from dwatch.accounting.index import refresh_index
from dwatch.ingest import ingest_paths
from dwatch.snapshot import Published, publish_snapshot
from dwatch.snapshot_parts import IDENTITY, PARTITIONED, UPDATED_IN_PLACE, listed_files
from dwatch.store import connect


class Counting:
    """The store's connection, recording every statement the publisher sends it."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        self.sql: list[str] = []

    def execute(self, sql: str, *args: Any, **kwargs: Any) -> duckdb.DuckDBPyConnection:
        self.sql.append(" ".join(sql.split()))
        return self.con.execute(sql, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.con, name)

    def copies_of(self, table: str) -> list[str]:
        """COPY statements that read rows of ``table`` (not its zero-row schema file)."""
        return [
            s for s in self.sql if s.startswith("COPY") and f'"{table}"' in s and "LIMIT 0" not in s
        ]


@pytest.fixture
def store(db_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    con = connect(db_path)
    yield con
    con.close()


def _load(con: duckdb.DuckDBPyConnection, path: Path, days: list[str], start: int) -> None:
    rows = ledger_rows("ca-ftb-fti-log", [(d, 9) for d in days], start_seq=start)
    for n, row in enumerate(rows):  # a taxpayer each: the accounting index lists them
        row["taxpayer_tin"] = f"{123450000 + start + n}"
    write_events(path, rows)
    ingest_paths(con, [path])


def _publish(con: Any, db: Path, snaps: Path, run_id: str) -> Published:
    con.execute(
        "INSERT INTO runs (run_id, trigger, status, started_at) VALUES (?, 'test', 'succeeded',"
        " now())",
        [run_id],
    )
    return publish_snapshot(con, db, snaps, run_id, keep=5)


def _read(snapshot: Path, sql: str) -> list[tuple[object, ...]]:
    con = duckdb.connect(str(snapshot), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _scanned_columns(con: duckdb.DuckDBPyConnection, sql: str) -> dict[str, set[str]]:
    """Per partitioned table, the columns the plan of ``sql`` reads from it."""
    [(_, plan)] = con.execute(f"EXPLAIN (FORMAT json) {sql}").fetchall()
    found: dict[str, set[str]] = {}

    def walk(node: dict[str, Any]) -> None:
        info = node.get("extra_info", {})
        table = str(info.get("Table", "")).rsplit(".", 1)[-1]
        if node["name"].endswith("SCAN") and table in PARTITIONED:
            projected = info.get("Projections", [])
            names = [projected] if isinstance(projected, str) else projected
            found.setdefault(table, set()).update(n for n in names if n)
        for child in node.get("children", []):
            walk(child)

    for root in json.loads(plan):
        walk(root)
    return found


def _three_batches(store: duckdb.DuckDBPyConnection, folder: Path) -> None:
    days = [f"2026-01-{d:02d}" for d in range(2, 9)]
    for n, name in enumerate("abc"):
        _load(store, folder / f"{name}.csv", days, 1 + 7 * n)
    refresh_index(store)


def test_the_first_publish_writes_each_table_in_one_copy_not_one_per_batch(
    store: duckdb.DuckDBPyConnection, db_path: Path, tmp_path: Path
) -> None:
    _three_batches(store, tmp_path / "in")
    counting = Counting(store)
    published = _publish(counting, db_path, tmp_path / "snapshots", "run_20260101T000000_a")
    for table in ("disclosure_events", "accounting_keys"):
        assert len(counting.copies_of(table)) == 1, table  # three batches, one COPY
        query = f"SELECT * FROM {table} ORDER BY ALL"
        assert _read(published.path, query) == store.execute(query).fetchall()


def test_a_publish_with_nothing_new_copies_nothing_and_reads_only_narrow_columns(
    store: duckdb.DuckDBPyConnection, db_path: Path, tmp_path: Path
) -> None:
    """The second publish writes no partition and reads no table's whole rows: only the
    rowid, identity and updated-in-place columns (the accounting index was hashed whole)."""
    snaps = tmp_path / "snapshots"
    _three_batches(store, tmp_path / "in")
    _publish(store, db_path, snaps, "run_20260101T000000_a")
    counting = Counting(store)
    second = _publish(counting, db_path, snaps, "run_20260102T000000_b")
    assert second.parts_written == 0 and second.parts_bytes_written == 0
    assert not [s for t in PARTITIONED for s in counting.copies_of(t)]
    reads = [
        s
        for s in counting.sql
        if s.startswith("SELECT") and any(f'"{t}"' in s for t in PARTITIONED)
    ]
    assert reads, "the publisher reads the partitioned tables' narrow columns"
    for sql in reads:
        for table, columns in _scanned_columns(store, sql).items():
            narrow = {*IDENTITY[table], *UPDATED_IN_PLACE[table], "rowid"}
            assert columns <= narrow, (table, columns - narrow)


def test_a_change_rewrites_only_the_segment_that_holds_it(
    store: duckdb.DuckDBPyConnection,
    db_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Small blocks and segments, so three batches of seven events make several segments:
    a re-read citation in the last batch rewrites the segment holding it and no other."""
    monkeypatch.setattr(snapshot_parts, "BLOCK_ROWS", 4)
    monkeypatch.setattr(snapshot_parts, "SEGMENT_ROWS", 8)
    snaps = tmp_path / "snapshots"
    _three_batches(store, tmp_path / "in")
    first = _publish(store, db_path, snaps, "run_20260101T000000_a")
    events = [p for p in first.segments if p.table == "disclosure_events" and p.kind == "range"]
    assert len(events) == 3  # rowids 0-7, 8-15, 16-20
    store.execute("UPDATE disclosure_events SET authority_id = 'reread' WHERE rowid = 18")
    counting = Counting(store)
    second = _publish(counting, db_path, snaps, "run_20260102T000000_b")
    [copy] = counting.copies_of("disclosure_events")
    assert "BETWEEN 16 AND 20" in copy
    assert not counting.copies_of("accounting_keys")
    query = "SELECT * EXCLUDE (extra) FROM disclosure_events ORDER BY ALL"
    assert _read(second.path, query) == store.execute(query).fetchall()
    assert _read(first.path, "SELECT count(*) FROM disclosure_events WHERE authority_id = 'reread'") == [(0,)]  # fmt: skip
    kept = listed_files(first.path) & listed_files(second.path)
    assert {events[0].file, events[1].file} <= kept


def test_small_increments_fold_into_few_files(
    store: duckdb.DuckDBPyConnection,
    db_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One new event a run does not leave one file a run: the newest small segments are
    folded into the next write while no larger than it (a log-structured merge)."""
    monkeypatch.setattr(snapshot_parts, "BLOCK_ROWS", 4)
    monkeypatch.setattr(snapshot_parts, "SEGMENT_ROWS", 64)
    snaps = tmp_path / "snapshots"
    _load(store, tmp_path / "in" / "a.csv", ["2026-01-02"] * 8, 1)
    for n in range(16):
        _load(store, tmp_path / "in" / f"n{n}.csv", ["2026-01-03"], 9 + n)
        published = _publish(store, db_path, snaps, f"run_20260101T0000{n:02d}_a")
    files = [p for p in published.segments if p.table == "disclosure_events" and p.kind == "range"]
    assert len(files) <= 5  # 24 rows from 17 loads: a binary counter's worth of segments
    query = "SELECT * EXCLUDE (extra) FROM disclosure_events ORDER BY ALL"
    assert _read(published.path, query) == store.execute(query).fetchall()


def test_the_index_rewritten_in_key_order_and_checkpointed_is_published_whole(
    store: duckdb.DuckDBPyConnection,
    db_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The accounting index rewrites itself in key order (every row deleted and re-added);
    a checkpoint may move the new rows back to the old rowids. Same counts per block, other
    rows: the hash of rowid and identity finds it."""
    monkeypatch.setattr(snapshot_parts, "BLOCK_ROWS", 4)
    monkeypatch.setattr(snapshot_parts, "SEGMENT_ROWS", 8)
    snaps = tmp_path / "snapshots"
    entry = (
        "INSERT INTO accounting_keys (lookup_key, via, source_row, ingest_run_id)"
        " VALUES (?, 'event', ?, ?)"
    )
    for i in range(12):  # keys out of order, as appends leave them
        store.execute(entry, [(i * 7) % 12, i, f"ing_{i % 3}"])
    _publish(store, db_path, snaps, "run_20260101T000000_a")
    store.execute("CREATE TEMP TABLE sorted AS SELECT * FROM accounting_keys ORDER BY lookup_key")
    store.execute("DELETE FROM accounting_keys")
    store.execute("INSERT INTO accounting_keys SELECT * FROM sorted")
    store.execute("CHECKPOINT")
    second = _publish(store, db_path, snaps, "run_20260102T000000_b")
    query = "SELECT lookup_key, source_row FROM accounting_keys"  # in the table's order
    assert _read(second.path, query) == store.execute(query).fetchall()
