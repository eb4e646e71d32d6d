"""Segments written on cursors, one thread each (``snapshot_parts._write_all``): the same
files as one connection writes, and the database's thread setting restored, also when a
COPY fails."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from pipeline_helpers import ledger_rows, write_events

import dwatch.snapshot_parts as snapshot_parts
from dwatch.ingest import ingest_paths
from dwatch.snapshot_parts import write_parts
from dwatch.store import connect


@pytest.fixture
def store(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[duckdb.DuckDBPyConnection]:
    monkeypatch.setattr(snapshot_parts, "BLOCK_ROWS", 4)
    monkeypatch.setattr(snapshot_parts, "SEGMENT_ROWS", 8)
    con = connect(db_path)
    con.execute("SET threads = 2")
    for n in range(3):
        path = db_path.parent / f"in{n}.csv"
        write_events(path, ledger_rows("ca-ftb-fti-log", [(f"2026-01-{d:02d}", 9) for d in range(2, 9)], start_seq=1 + 7 * n))  # fmt: skip
        ingest_paths(con, [path])
    yield con
    con.close()


def _files(folder: Path, parts: snapshot_parts.PartsWritten) -> list[tuple[object, ...]]:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    rows: list[tuple[object, ...]] = []
    for part in sorted(parts.parts, key=lambda p: (p.table, p.lo)):
        if part.table == "disclosure_events" and part.file and part.kind == "range":
            rows += con.execute(
                "SELECT * EXCLUDE (extra) FROM read_parquet(?)", [str(folder / part.file)]
            ).fetchall()
    return rows


def test_cursors_write_what_one_connection_writes(
    store: duckdb.DuckDBPyConnection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    used: list[bool] = []
    real = snapshot_parts._write_all

    def spy(con: duckdb.DuckDBPyConnection, jobs: list[tuple[str, Path]], *, cursors: bool) -> list[tuple[int, int]]:  # fmt: skip
        used.append(cursors and len(jobs) > 1)
        return real(con, jobs, cursors=cursors)

    monkeypatch.setattr(snapshot_parts, "_write_all", spy)
    parallel = write_parts(store, tmp_path / "a")
    assert any(used) and store.execute("SELECT current_setting('threads')").fetchone() == (2,)
    store.execute("SET threads = 1")  # one thread: one connection writes all
    used.clear()
    single = write_parts(store, tmp_path / "b")
    assert not any(used) or store.execute("SELECT current_setting('threads')").fetchone() == (1,)
    expected = store.execute(
        "SELECT * EXCLUDE (extra) FROM disclosure_events ORDER BY rowid"
    ).fetchall()
    assert _files(tmp_path / "a", parallel) == _files(tmp_path / "b", single) == expected
    assert len([p for p in parallel.written if p.table == "disclosure_events"]) == 4  # 3 + schema


def test_a_failed_copy_restores_the_thread_setting(
    store: duckdb.DuckDBPyConnection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = snapshot_parts._write_one

    def failing(con: duckdb.DuckDBPyConnection, query: str, target: Path) -> tuple[int, int]:
        if "BETWEEN 8 AND 15" in query:
            raise duckdb.IOException("disk full")
        return real(con, query, target)

    monkeypatch.setattr(snapshot_parts, "_write_one", failing)
    with pytest.raises(duckdb.IOException):
        write_parts(store, tmp_path / "s")
    assert store.execute("SELECT current_setting('threads')").fetchone() == (2,)
    assert store.execute("SELECT count(*) FROM disclosure_events").fetchone() == (21,)


def test_parts_written_inside_the_callers_transaction_leave_it_open(
    store: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    """Inside a caller's transaction the publisher reads through it (its uncommitted rows
    included) and leaves it open: a failed ``BEGIN`` used to abort it."""
    assert not snapshot_parts.in_transaction(store)
    store.execute("BEGIN TRANSACTION")
    store.execute("DELETE FROM disclosure_events WHERE rowid < 3")
    assert snapshot_parts.in_transaction(store)
    parts = write_parts(store, tmp_path / "s")
    expected = store.execute(
        "SELECT * EXCLUDE (extra) FROM disclosure_events ORDER BY rowid"
    ).fetchall()
    assert _files(tmp_path / "s", parts) == expected and len(expected) == 18
    store.execute("COMMIT")  # still the caller's, not aborted
    assert store.execute("SELECT count(*) FROM disclosure_events").fetchone() == (18,)
    assert not snapshot_parts.in_transaction(store)
