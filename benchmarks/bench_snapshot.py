"""Snapshot publishing: a first and a 1% incremental publish, partitions vs a whole copy.

    python -m benchmarks snapshot -- --events 1000000
    python -m benchmarks snapshot -- --store data/dwatch.duckdb   # a copy of a real store

Builds a store (``--events`` generated as CSV logs, ingested) or copies ``--store``, then
publishes the analyst snapshot as a run does, adds ``--new`` (1% of the events by default)
in one new file, ingests it and publishes again. Each publish is timed and followed by the
snapshot folder's size; the same two moments are measured for the design this replaced (a
whole copy of the store per run, three kept). Prints one line per publish: seconds, bytes
written, the snapshot file, and the folder on disk. The machine's other load shows in the
seconds; the bytes do not depend on it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import duckdb

from benchmarks.bench_pipeline import _new_file
from dwatch.accounting.index import refresh_index
from dwatch.ingest import ingest_paths
from dwatch.snapshot import publish_snapshot
from dwatch.store import connect

MB = 1024 * 1024


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def _record_run(con: duckdb.DuckDBPyConnection, run_id: str) -> None:
    con.execute(
        "INSERT INTO runs (run_id, trigger, status, started_at) VALUES (?, 'benchmark',"
        " 'succeeded', now())",
        [run_id],
    )


def _whole_copy(con: duckdb.DuckDBPyConnection, folder: Path, run_id: str, keep: int) -> int:
    """The replaced design: the whole store copied (storage v1.0.0), ``keep`` kept."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"dwatch-{run_id}.duckdb"
    con.execute("CHECKPOINT")
    database = con.execute("SELECT current_database()").fetchone()[0]  # type: ignore[index]
    con.execute(f"ATTACH '{target}' AS dw_full (STORAGE_VERSION 'v1.0.0')")
    try:
        con.execute(f'COPY FROM DATABASE "{database}" TO dw_full')
    finally:
        con.execute("DETACH DATABASE dw_full")
    for old in sorted(folder.glob("dwatch-*.duckdb"), reverse=True)[keep:]:
        old.unlink()
    return target.stat().st_size


def _line(label: str, seconds: float, written: int, snapshot: int, folder: int) -> str:
    return (
        f"{label:<34} {seconds:>9.2f} {written / MB:>11.1f} {snapshot / MB:>11.1f}"
        f" {folder / MB:>10.1f}"
    )


def _publish_both(
    con: duckdb.DuckDBPyConnection, db: Path, root: Path, run_id: str, label: str
) -> list[str]:
    _record_run(con, run_id)
    parts_dir, full_dir = root / "snapshots", root / "whole-copies"
    t0 = time.perf_counter()
    published = publish_snapshot(con, db, parts_dir, run_id, keep=3)
    new_s = time.perf_counter() - t0
    written = published.parts_bytes_written + published.bytes
    t0 = time.perf_counter()
    full = _whole_copy(con, full_dir, run_id, keep=3)
    full_s = time.perf_counter() - t0
    return [
        _line(f"{label}: partitions", new_s, written, published.bytes, _folder_bytes(parts_dir))
        + f"  ({published.parts_written} of {published.parts_listed} partition files written)",
        _line(f"{label}: whole copy (replaced)", full_s, full, full, _folder_bytes(full_dir)),
    ]


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench_snapshot")
    parser.add_argument("--events", type=int, default=1_000_000, help="events to generate")
    parser.add_argument("--store", type=Path, help="copy this store instead of generating")
    parser.add_argument("--new", type=int, help="events in the new file (default: 1%%)")
    parser.add_argument("--keep", type=Path, help="work here and keep it (default: a temp dir)")
    args = parser.parse_args(argv)
    os.environ.setdefault("DWATCH_PSEUDONYM_KEY", "benchmark-key-not-secret-0123456789")
    with tempfile.TemporaryDirectory(prefix="dwatch-bench-snapshot-") as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        db = root / "store.duckdb"
        if args.store:
            shutil.copyfile(args.store, db)
        con = connect(db)
        try:
            if not args.store:
                from dwatch.generate import generate

                generate(root / "logs", events=args.events, seed=11)
                t0 = time.perf_counter()
                ingest_paths(con, [root / "logs"])
                print(f"(generated and ingested in {time.perf_counter() - t0:.1f}s)", flush=True)
            refresh_index(con)  # as a run does before it publishes
            con.execute("CHECKPOINT")
            [(events,)] = con.execute("SELECT count(*) FROM disclosure_events").fetchall()
            new = args.new or max(1, events // 100)
            print(f"store: {events:,} events, {db.stat().st_size / MB:.1f} MB; increment: {new:,}")
            print(
                f"{'publish':<34} {'seconds':>9} {'written MB':>11} {'snapshot MB':>11}"
                f" {'folder MB':>10}"
            )
            for line in _publish_both(con, db, root, "run_20260101T000000_first", "first"):
                print(line, flush=True)
            (root / "new").mkdir(exist_ok=True)
            _new_file(root / "new" / "new.csv", new)
            ingest_paths(con, [root / "new"])
            refresh_index(con)
            for line in _publish_both(con, db, root, "run_20260102T000000_incr", "+1% increment"):
                print(line, flush=True)
        finally:
            con.close()
