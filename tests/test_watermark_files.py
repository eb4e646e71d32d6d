"""dwatch.watermark.record_files: every file read is remembered in one pass, as one upsert per
file would have remembered it (loaded, same content as an earlier batch, failed)."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from dwatch.ingest.base import IngestResult
from dwatch.masking import mask_path
from dwatch.store import connect
from dwatch.watermark import file_sha256, record_files

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def con(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    return connect(tmp_path / "store.duckdb")


def _batch(con: duckdb.DuckDBPyConnection, run_id: str, path: Path, minutes: int) -> None:
    con.execute(
        "INSERT INTO ingest_runs (run_id, source_file, content_sha256, finished_at, status)"
        " VALUES (?, ?, ?, ?, 'loaded')",
        [run_id, str(path), file_sha256(path), T0 + timedelta(minutes=minutes)],
    )


def _files(con: duckdb.DuckDBPyConnection) -> dict[str, tuple[object, ...]]:
    rows = con.execute(
        "SELECT path, size_bytes, mtime_ns, content_sha256, ingest_run_id, status,"
        " first_seen_run_id, last_read_run_id FROM source_files"
    ).fetchall()
    return {r[0]: r[1:] for r in rows}


def test_loaded_duplicate_and_failed_files_in_one_call(
    tmp_path: Path, con: duckdb.DuckDBPyConnection
) -> None:
    paths = []
    for i in range(620):  # more than one statement's worth of files
        p = tmp_path / f"log_{i:04d}.csv"
        p.write_text(f"event_id\nE{i % 600}\n", encoding="utf-8")  # 20 repeat earlier content
        paths.append(p)
    results: list[IngestResult] = []
    for i, p in enumerate(paths):
        if i < 600:
            _batch(con, f"b{i}", p, minutes=i)
            results.append(IngestResult(run_id=f"b{i}", source_file=str(p), status="loaded"))
        else:
            results.append(IngestResult(run_id=f"x{i}", source_file=str(p), status="skipped"))
    broken = tmp_path / "broken.csv"
    broken.write_text("not,a\n", encoding="utf-8")
    results.append(IngestResult(run_id="f", source_file=str(broken), status="failed"))
    ghost = IngestResult(run_id="g", source_file=str(tmp_path / "gone.csv"), status="failed")
    stats = {p: p.stat() for p in [*paths, broken]}

    record_files(con, "run-1", [*results, ghost], stats)

    files = _files(con)
    assert len(files) == 621  # the path that named nothing is not a file
    for i, p in enumerate(paths):
        st = os.stat(p)
        got = files[mask_path(str(p.resolve()), None)]
        if i < 600:
            want = (st.st_size, st.st_mtime_ns, file_sha256(p), f"b{i}", "loaded")
        else:  # same content as file i - 600's batch
            want = (st.st_size, st.st_mtime_ns, file_sha256(p), f"b{i - 600}", "duplicate_content")
        assert got == (*want, "run-1", "run-1")
    assert files[mask_path(str(broken.resolve()), None)][2:5] == (None, None, "failed")


def test_a_second_read_updates_the_row_and_keeps_first_seen(
    tmp_path: Path, con: duckdb.DuckDBPyConnection
) -> None:
    p = tmp_path / "log.csv"
    p.write_text("event_id\nE1\n", encoding="utf-8")
    _batch(con, "b1", p, minutes=0)
    record_files(con, "run-1", [IngestResult("b1", str(p), "loaded")], {p: p.stat()})
    p.write_text("event_id\nE1\nE2\n", encoding="utf-8")
    _batch(con, "b2", p, minutes=5)
    record_files(con, "run-2", [IngestResult("b2", str(p), "loaded")], {p: p.stat()})
    (row,) = _files(con).values()
    assert row[0] == p.stat().st_size
    assert row[2:] == (file_sha256(p), "b2", "loaded", "run-1", "run-2")


def test_duplicate_content_points_at_the_newest_loaded_batch(
    tmp_path: Path, con: duckdb.DuckDBPyConnection
) -> None:
    a, b, c = (tmp_path / n for n in ("a.csv", "b.csv", "c.csv"))
    for p in (a, b, c):
        p.write_text("event_id\nE1\n", encoding="utf-8")
    _batch(con, "older", a, minutes=0)
    _batch(con, "newer", b, minutes=9)
    record_files(con, "run-3", [IngestResult("x", str(c), "skipped")], {c: c.stat()})
    assert _files(con)[mask_path(str(c.resolve()), None)][3:5] == ("newer", "duplicate_content")
