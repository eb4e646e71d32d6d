"""Snapshot publishing: a first and a 1% incremental publish, partitions vs a whole copy.

    python -m benchmarks snapshot -- --events 1000000
    python -m benchmarks snapshot -- --store data/dwatch.duckdb   # a copy of a real store
    python -m benchmarks snapshot -- --store data/dwatch.duckdb --parts-only  # no whole copy

Builds a store (``--events`` generated as CSV logs, ingested) or copies ``--store``, then
publishes the analyst snapshot as a run does, adds ``--new`` (1% of the events by default)
in one new file, ingests it and publishes again, then once more with nothing new. Each
publish is timed and followed by the snapshot folder's size; the first two are measured
for the design this replaced too (a whole copy of the store per run, three kept) unless
``--parts-only``. Prints one line per publish: seconds, CPU seconds (this process and
DuckDB's threads), bytes written, the snapshot file, and the folder on disk. The machine's
other load shows in the seconds; the CPU seconds and bytes depend on it little.
"""

from __future__ import annotations

import argparse
import os
import resource
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


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _line(label: str, seconds: float, cpu: float, written: int, snapshot: int, folder: int) -> str:
    return (
        f"{label:<34} {seconds:>9.2f} {cpu:>9.2f} {written / MB:>11.1f} {snapshot / MB:>11.1f}"
        f" {folder / MB:>10.1f}"
    )


def _publish_both(
    con: duckdb.DuckDBPyConnection,
    db: Path,
    root: Path,
    run_id: str,
    label: str,
    *,
    whole_copy: bool = True,
) -> list[str]:
    _record_run(con, run_id)
    parts_dir, full_dir = root / "snapshots", root / "whole-copies"
    t0, c0 = time.perf_counter(), _cpu()
    published = publish_snapshot(con, db, parts_dir, run_id, keep=3)
    new_s, new_cpu = time.perf_counter() - t0, _cpu() - c0
    written = published.parts_bytes_written + published.bytes
    lines = [
        _line(
            f"{label}: partitions",
            new_s,
            new_cpu,
            written,
            published.bytes,
            _folder_bytes(parts_dir),
        )
        + f"  ({published.parts_written} of {published.parts_listed} partition files written)"
    ]
    if whole_copy:
        t0, c0 = time.perf_counter(), _cpu()
        full = _whole_copy(con, full_dir, run_id, keep=3)
        full_s, full_cpu = time.perf_counter() - t0, _cpu() - c0
        lines.append(
            _line(
                f"{label}: whole copy (replaced)",
                full_s,
                full_cpu,
                full,
                full,
                _folder_bytes(full_dir),
            )
        )
    return lines


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench_snapshot")
    parser.add_argument("--events", type=int, default=1_000_000, help="events to generate")
    parser.add_argument("--store", type=Path, help="copy this store instead of generating")
    parser.add_argument("--new", type=int, help="events in the new file (default: 1%%)")
    parser.add_argument("--keep", type=Path, help="work here and keep it (default: a temp dir)")
    parser.add_argument(
        "--parts-only", action="store_true", help="skip the replaced design's whole copies"
    )
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
                f"{'publish':<34} {'seconds':>9} {'CPU s':>9} {'written MB':>11} {'snapshot MB':>11}"
                f" {'folder MB':>10}"
            )
            whole = not args.parts_only
            first = "run_20260101T000000_first"
            for line in _publish_both(con, db, root, first, "first", whole_copy=whole):
                print(line, flush=True)
            (root / "new").mkdir(exist_ok=True)
            _new_file(root / "new" / "new.csv", new)
            ingest_paths(con, [root / "new"])
            refresh_index(con)
            incr = "run_20260102T000000_incr"
            for line in _publish_both(con, db, root, incr, "+1% increment", whole_copy=whole):
                print(line, flush=True)
            idle = "run_20260103T000000_idle"
            for line in _publish_both(con, db, root, idle, "nothing new", whole_copy=False):
                print(line, flush=True)
        finally:
            con.close()
