"""Snapshots that cost what changed (issue 18 item 4): the big tables are Parquet files of
rowid ranges written once; a publish writes new rows and changed ranges only, each snapshot
keeps showing its own run, and the analyst sees the same tables, views and columns as the
store."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from pipeline_helpers import ledger_rows, write_events

import dwatch.snapshot
from dwatch.ingest import ingest_paths
from dwatch.snapshot import Published, prune, publish_snapshot
from dwatch.snapshot_parts import PARTITIONED, UPDATED_IN_PLACE, WHOLE_ROWS, listed_files
from dwatch.store import connect

ROOT = Path(__file__).resolve().parents[2]
DAY = 24 * 3600.0


@pytest.fixture
def store(db_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    con = connect(db_path)
    yield con
    con.close()


def _load(con: duckdb.DuckDBPyConnection, path: Path, days: list[str], start: int) -> str:
    write_events(path, ledger_rows("ca-ftb-fti-log", [(d, 9) for d in days], start_seq=start))
    ingest_paths(con, [path])
    [(batch,)] = con.execute(
        "SELECT run_id FROM ingest_runs ORDER BY chain_seq DESC LIMIT 1"
    ).fetchall()
    return str(batch)


def _publish(
    con: duckdb.DuckDBPyConnection, db: Path, snaps: Path, run_id: str, keep: int = 5
) -> Published:
    con.execute(
        "INSERT INTO runs (run_id, trigger, status, started_at) VALUES (?, 'test', 'succeeded',"
        " now())",
        [run_id],
    )
    return publish_snapshot(con, db, snaps, run_id, keep=keep)


def _read(snapshot: Path, sql: str) -> list[tuple[object, ...]]:
    con = duckdb.connect(str(snapshot), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _relations(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple[str, str]]]:
    """Every table and view of the main schema with its columns and types."""
    names = con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"
    ).fetchall()
    return {
        name: [(c[0], c[1]) for c in con.execute(f'DESCRIBE "{name}"').fetchall()]
        for (name,) in names
    }


def test_an_incremental_publish_writes_only_the_new_batch(
    store: duckdb.DuckDBPyConnection, db_path: Path, tmp_path: Path
) -> None:
    snaps = tmp_path / "snapshots"
    _load(store, tmp_path / "in" / "a.csv", ["2026-01-02", "2026-01-03"], 1)
    first = _publish(store, db_path, snaps, "run_20260101T000000_a")
    old_files = {p: p.stat().st_mtime_ns for p in (snaps / "parts").rglob("*.parquet")}
    new_batch = _load(store, tmp_path / "in" / "b.csv", ["2026-01-04"] * 3, 3)
    second = _publish(store, db_path, snaps, "run_20260102T000000_b")

    # one events partition for the new batch; no request items were loaded by either file
    assert second.parts_written == 1 and first.parts_written > second.parts_written
    assert {p: p.stat().st_mtime_ns for p in old_files} == old_files  # never rewritten
    assert _read(second.path, "SELECT count(*) FROM disclosure_events") == [(5,)]
    assert _read(first.path, "SELECT count(*) FROM disclosure_events") == [(2,)]
    assert _read(second.path, f"SELECT count(*) FROM disclosure_events WHERE ingest_run_id = '{new_batch}'") == [(3,)]  # fmt: skip
    assert 0 < second.parts_bytes_written < first.parts_bytes_written


def test_the_analyst_sees_the_stores_tables_views_and_columns(
    store: duckdb.DuckDBPyConnection, db_path: Path, tmp_path: Path
) -> None:
    _load(store, tmp_path / "in" / "a.csv", ["2026-01-02"], 1)
    published = _publish(store, db_path, tmp_path / "snapshots", "run_20260101T000000_a")
    snapshot = duckdb.connect(str(published.path), read_only=True)
    try:
        # everything but the detectors' kept working state (dwatch.snapshot.WORK_STATE)
        expected = {
            k: v for k, v in _relations(store).items() if k not in dwatch.snapshot.WORK_STATE
        }
        assert _relations(snapshot) == expected
        kinds = dict(
            snapshot.execute(
                "SELECT table_name, table_type FROM information_schema.tables"
                f" WHERE table_name IN {PARTITIONED}"
            ).fetchall()
        )
        rows = snapshot.execute("SELECT * EXCLUDE (extra) FROM disclosure_events").fetchall()
    finally:
        snapshot.close()
    assert kinds == dict.fromkeys(PARTITIONED, "VIEW")
    assert rows == store.execute("SELECT * EXCLUDE (extra) FROM disclosure_events").fetchall()


def test_rows_changed_after_load_get_a_new_partition_and_old_snapshots_keep_theirs(
    store: duckdb.DuckDBPyConnection, db_path: Path, tmp_path: Path
) -> None:
    snaps = tmp_path / "snapshots"
    a = _load(store, tmp_path / "in" / "a.csv", ["2026-01-02", "2026-01-03", "2026-01-05"], 1)
    b = _load(store, tmp_path / "in" / "b.csv", ["2026-01-06", "2026-01-07"], 4)
    _load(store, tmp_path / "in" / "c.csv", ["2026-01-08"], 6)
    first = _publish(store, db_path, snaps, "run_20260101T000000_a")
    # validation quarantining a row of an old batch; a registry change re-reading a citation
    store.execute("DELETE FROM disclosure_events WHERE ingest_run_id = ? AND sequence_no = 2", [a])
    store.execute(
        "UPDATE disclosure_events SET authority_id = 'reread' WHERE ingest_run_id = ?", [b]
    )
    second = _publish(store, db_path, snaps, "run_20260102T000000_b")

    # a, b and c sit in one segment (a store this small is one): it is rewritten once;
    # test_snapshot_segments holds that a change leaves other segments' files alone
    assert second.parts_written == 1
    per_batch = "SELECT ingest_run_id, count(*), count(authority_id = 'reread' OR NULL) FROM disclosure_events GROUP BY 1 ORDER BY 1"  # fmt: skip
    assert _read(second.path, per_batch) == store.execute(per_batch).fetchall()
    assert dict((r[0], r[1]) for r in _read(second.path, per_batch))[a] == 2
    # the first snapshot still shows the first run: three rows in a, none re-read
    before = {r[0]: r[1:] for r in _read(first.path, per_batch)}
    assert before[a] == (3, 0) and before[b] == (2, 0)


def test_files_no_snapshot_lists_go_after_the_grace_period(
    store: duckdb.DuckDBPyConnection, db_path: Path, tmp_path: Path
) -> None:
    snaps = tmp_path / "snapshots"
    a = _load(store, tmp_path / "in" / "a.csv", ["2026-01-02", "2026-01-03"], 1)
    first = _publish(store, db_path, snaps, "run_20260101T000000_a", keep=1)
    listed_first = listed_files(first.path)
    store.execute("DELETE FROM disclosure_events WHERE ingest_run_id = ? AND sequence_no = 2", [a])
    second = _publish(store, db_path, snaps, "run_20260102T000000_b", keep=1)
    replaced = listed_first - listed_files(second.path)
    assert not first.path.exists() and len(replaced) == 1
    [old] = replaced
    # pruned snapshot, but an analyst may still read it: the file stays within the grace
    clock = json.loads((snaps / "parts" / ".orphans.json").read_text(encoding="utf-8"))[old]
    prune(snaps, keep=1, now=clock + DAY - 60)
    assert (snaps / old).exists()
    prune(snaps, keep=1, now=clock + DAY + 60)
    assert not (snaps / old).exists()
    # what the current snapshot lists is never collected
    assert all((snaps / f).exists() for f in listed_files(second.path))
    assert _read(second.path, "SELECT count(*) FROM disclosure_events") == [(1,)]


def test_partition_file_names_carry_no_value_from_a_log(
    store: duckdb.DuckDBPyConnection, db_path: Path, tmp_path: Path
) -> None:
    _load(store, tmp_path / "in" / "ledger-123-45-6789.csv", ["2026-01-02"], 1)
    published = _publish(store, db_path, tmp_path / "snapshots", "run_20260101T000000_a")
    names = [p.name for p in (tmp_path / "snapshots" / "parts").rglob("*.parquet")]
    assert names and all(re.fullmatch(r"[0-9a-f]{16}-[0-9a-f]{16}\.parquet|schema-[0-9a-f]{16}\.parquet", n) for n in names)  # fmt: skip
    assert published.parts_listed == len(names)


_UPDATE = re.compile(
    r"UPDATE\s+(?:main\.)?(" + "|".join(PARTITIONED) + r")\b[^;\"]*?\bSET\s+(.*?)(?:\bFROM\b|\bWHERE\b|\"|$)",
    re.I | re.S,
)  # fmt: skip


def test_every_update_of_a_partitioned_table_is_a_declared_column() -> None:
    """A partition's fingerprint hashes only the columns updated in place: an UPDATE of any
    other column would leave analysts a stale partition, so none may exist."""
    found: list[tuple[str, str, str]] = []
    for folder in ("dwatch", "detectors", "flows"):
        for path in (ROOT / folder).rglob("*"):
            if path.suffix not in {".py", ".sql"}:
                continue
            text = re.sub(r"\"\s*\n\s*f?\"", "", path.read_text(encoding="utf-8"))
            for table, sets in _UPDATE.findall(text):
                for column in re.findall(r"(\w+)\s*=", sets):
                    found.append((path.name, table, column))
    assert found, "the scan finds the citation re-read in detectors/engine.py"
    undeclared = [f for f in found if f[1] not in WHOLE_ROWS and f[2] not in UPDATED_IN_PLACE[f[1]]]
    assert not undeclared


def test_an_accounting_batch_refreshed_with_other_values_gets_a_new_partition(
    store: duckdb.DuckDBPyConnection, db_path: Path, tmp_path: Path
) -> None:
    """The index deletes and re-adds a stale batch: same count, other values, new file."""
    snaps = tmp_path / "snapshots"
    entry = (
        "INSERT INTO accounting_keys (lookup_key, via, ingest_run_id, source_row, request_id)"
        " VALUES (?, 'request_chain', ?, ?, ?)"
    )
    for batch in ("ing_a", "ing_b"):
        store.execute(entry, [1, batch, 1, "REQ-1"])
    first = _publish(store, db_path, snaps, "run_20260101T000000_a")
    store.execute("DELETE FROM accounting_keys WHERE ingest_run_id = 'ing_a'")
    store.execute(entry, [1, "ing_a", 1, "REQ-2"])
    second = _publish(store, db_path, snaps, "run_20260102T000000_b")
    assert second.parts_written == 1
    query = "SELECT ingest_run_id, request_id FROM accounting_keys ORDER BY 1"
    assert _read(second.path, query) == [("ing_a", "REQ-2"), ("ing_b", "REQ-1")]
    assert _read(first.path, query) == [("ing_a", "REQ-1"), ("ing_b", "REQ-1")]


def test_batches_read_by_rowid_range_are_whole_after_deletes_compaction_and_interleaving(
    store: duckdb.DuckDBPyConnection, db_path: Path, tmp_path: Path
) -> None:
    """Each batch is read back from the rowid range one scan found it in: rows deleted from
    the middle of a batch, a checkpoint that may renumber rowids, and batches whose rows
    interleave (the accounting index re-sorts itself) must still give every row, once."""
    snaps = tmp_path / "snapshots"
    days = [f"2026-01-{d:02d}" for d in range(2, 12)]
    a = _load(store, tmp_path / "in" / "a.csv", days, 1)
    _load(store, tmp_path / "in" / "b.csv", days, 11)
    store.execute("DELETE FROM disclosure_events WHERE ingest_run_id = ? AND sequence_no % 3 = 0", [a])  # fmt: skip
    store.execute("CHECKPOINT")
    _load(store, tmp_path / "in" / "c.csv", days[:4], 21)
    entry = (
        "INSERT INTO accounting_keys (lookup_key, via, source_row, ingest_run_id)"
        " VALUES (?, 'event', ?, ?)"
    )
    for i in range(30):  # three batches, one row of each in turn
        store.execute(entry, [i, i, f"ing_{'xyz'[i % 3]}"])
    first = _publish(store, db_path, snaps, "run_20260101T000000_a")
    _load(store, tmp_path / "in" / "d.csv", days[:2], 25)
    store.execute("DELETE FROM accounting_keys WHERE ingest_run_id = 'ing_y' AND lookup_key > 20")
    second = _publish(store, db_path, snaps, "run_20260102T000000_b")
    assert first.parts_written > second.parts_written == 2  # batch d, and ing_y changed
    for query in (
        "SELECT * EXCLUDE (extra) FROM disclosure_events ORDER BY ALL",
        "SELECT * FROM accounting_keys ORDER BY ALL",
    ):
        assert _read(second.path, query) == store.execute(query).fetchall(), query
    assert _read(first.path, "SELECT count(*) FROM accounting_keys") == [(30,)]


def _join_sides(plan: dict[str, Any]) -> list[tuple[str, str]]:
    """(probe, build) operator names of every hash join in a JSON plan."""
    found: list[tuple[str, str]] = []
    children = plan.get("children", [])
    if plan.get("name") == "HASH_JOIN":
        found.append((children[0]["name"], children[1]["name"]))
    for child in children:
        found.extend(_join_sides(child))
    return found


def test_a_join_with_a_few_rows_builds_on_them_not_on_the_partition_files(
    store: duckdb.DuckDBPyConnection, db_path: Path, tmp_path: Path
) -> None:
    """DuckDB estimates a Parquet list's rows from its first file: the zero-row schema file
    listed first made every join build its hash table from the whole partitioned table (a
    one-taxpayer accounting read every index row of a snapshot)."""
    _load(store, tmp_path / "in" / "a.csv", ["2026-01-02", "2026-01-03", "2026-01-04"], 1)
    published = _publish(store, db_path, tmp_path / "snapshots", "run_20260101T000000_a")
    snapshot = duckdb.connect(str(published.path), read_only=True)
    try:
        snapshot.execute(
            "CREATE TEMP TABLE wanted AS SELECT event_id FROM disclosure_events LIMIT 1"
        )
        [(_, plan)] = snapshot.execute(
            "EXPLAIN (FORMAT json) SELECT e.* FROM wanted w"
            " JOIN disclosure_events e ON e.event_id = w.event_id"
        ).fetchall()
        found = snapshot.execute(
            "SELECT count(*) FROM wanted w JOIN disclosure_events e USING (event_id)"
        ).fetchone()
    finally:
        snapshot.close()
    sides = [side for root in json.loads(plan) for side in _join_sides(root)]
    assert sides == [("READ_PARQUET", "SEQ_SCAN")]
    assert found == (1,)
