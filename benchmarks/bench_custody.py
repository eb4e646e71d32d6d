"""The custody step of a full judgement: CPU seconds, DuckDB spill and temporary tables.

    python -m benchmarks custody                                 # 100k generated events
    python -m benchmarks custody -- --store /work/bench/1000000/store/dwatch.duckdb
    DWATCH_MEMORY=512MB python -m benchmarks custody -- --store ...  # a small budget

Works on a copy of the store (``--store``, else generated and ingested ``--events``):
prepares the views over all history, then times what a full judgement does for the
reconciliation and retention rules (:func:`detectors.custody_state.prepare_custody`), and
rolls back. Prints process CPU seconds, the peak size of the spill folder (sampled), the
memory DuckDB holds for temporary tables and the rows kept. The spill should stay at zero
and the temporary tables small whatever the store's size: every use of history is kept in
the store file, not in memory (a 100M-event store's temporary tables spilled 29 GB).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import duckdb


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class _SpillPeak(threading.Thread):
    """The largest size the spill folder reached while running."""

    def __init__(self, folder: Path) -> None:
        super().__init__(daemon=True)
        self.folder, self.peak, self.done = folder, 0, False

    def run(self) -> None:
        while not self.done:
            try:
                size = sum(f.stat().st_size for f in self.folder.iterdir())
            except OSError:
                size = 0
            self.peak = max(self.peak, size)
            time.sleep(0.05)


def _step(con: duckdb.DuckDBPyConnection, name: str, fn: Callable[[], object], spill: Path) -> None:
    watch = _SpillPeak(spill)
    watch.start()
    cpu, wall = _cpu(), time.perf_counter()
    fn()
    cpu, wall = _cpu() - cpu, time.perf_counter() - wall
    watch.done = True
    watch.join()
    row = con.execute(
        "SELECT coalesce(sum(memory_usage_bytes), 0), coalesce(sum(temporary_storage_bytes), 0)"
        " FROM duckdb_memory() WHERE tag = 'IN_MEMORY_TABLE'"
    ).fetchone()
    held, spilled = row if row else (0, 0)
    print(
        f"{name:<16} CPU {cpu:7.2f} s  wall {wall:7.2f} s  spill peak {watch.peak / 2**20:8.1f} MiB"
        f"  temporary tables {held / 2**20:7.1f} MiB in memory, {spilled / 2**20:7.1f} MiB spilled",
        flush=True,
    )


def _generated(events: int, work: Path) -> Path:
    from dwatch.generate import generate
    from dwatch.ingest import ingest_paths
    from dwatch.store import connect

    generate(work / "logs", events=events, seed=11)
    db = work / "store.duckdb"
    con = connect(db)
    try:
        ingest_paths(con, sorted(str(p) for p in (work / "logs").glob("*.csv")))
    finally:
        con.close()
    return db


def _measure(db: Path) -> None:
    from detectors.custody_state import prepare_custody
    from detectors.engine import prepare
    from dwatch.policy import load_registry
    from dwatch.store import connect

    con = connect(db)
    spill = db.parent / f"{db.name}.spill"
    spill.mkdir(exist_ok=True)
    row = con.execute("SELECT current_setting('memory_limit'), count(*) FROM disclosure_events")
    limit, events = row.fetchone() or ("?", 0)
    print(f"events: {events:,}; DuckDB memory_limit {limit}")
    registry = load_registry()
    con.execute("BEGIN TRANSACTION")
    try:
        _step(
            con,
            "prepare views",
            lambda: prepare(con, registry, log_order=False, custody=False),
            spill,
        )
        _step(con, "custody", lambda: prepare_custody(con), spill)
        kept = con.execute(
            "SELECT (SELECT count(*) FROM rule_custody_events),"
            " (SELECT count(*) FROM rule_recon_sides), (SELECT count(*) FROM dw_custody_emptied)"
        ).fetchone()
        print(f"kept: {kept[0]:,} custody rows, {kept[1]:,} reconciliation sides;"
              f" {kept[2]:,} use(s) after their data's disposal" if kept else "kept: ?")  # fmt: skip
    finally:
        con.execute("ROLLBACK")
        con.close()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(f"peak resident memory {usage.ru_maxrss / 1024:,.0f} MiB")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench_custody")
    parser.add_argument("--store", type=Path, help="a store to copy (default: generate one)")
    parser.add_argument("--events", type=int, default=100_000, help="events to generate")
    parser.add_argument("--dir", type=Path, default=None, help="work folder (default: temp)")
    args = parser.parse_args(argv)
    os.environ.setdefault("DWATCH_PSEUDONYM_KEY", "benchmark-key-not-secret-0123456789")
    work = args.dir or Path(tempfile.mkdtemp(prefix="bench_custody_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        if args.store:
            db = work / "store.duckdb"
            shutil.copy(args.store, db)
        else:
            db = _generated(args.events, work)
        _measure(db)
    finally:
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main([])
