"""Peak memory of ML training and scoring under DWATCH_MEMORY budgets, on a real store.

    python -m benchmarks memory                                   # 200k generated events
    python -m benchmarks memory -- --events 5000000 --memory default,3GB
    python -m benchmarks memory -- --db /srv/dwatch/dwatch.duckdb   # an existing store

Without ``--db``, generates ``--events`` events (Parquet), ingests them into a temporary
store, then for each budget runs, each in its own process so its peak is its own:
``dwatch train`` (every enabled detector, no window given: what a run that trains a
missing model does) and scoring all history with the latest models (what a run does
after a new model). Prints wall seconds, peak resident memory and rows scored. Peak
memory should follow the budget, not the store: run it at two sizes and compare.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCORE_ALL = """
import sys
from pathlib import Path
from detectors.ml.registry import default_models_dir
from detectors.ml.run import score_models
from dwatch.store import connect
db = Path(sys.argv[1])
con = connect(db)
summary = score_models(con, run_id="bench-memory", models_dir=default_models_dir(db))
print(sum(d.rows_scored for d in summary.detectors))
con.close()
"""
DWATCH = "from dwatch.cli import main; main()"


def _peak_run(args: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    """Run a child and read its peak from wait4 (Popen's own wait would reap it first)."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [sys.executable, *args], env=env, stdout=subprocess.PIPE, stderr=err
        )
        assert proc.stdout
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - start
        if proc.returncode:
            err.seek(0)
            raise SystemExit(f"error: {' '.join(args[2:5])} failed:\n{err.read().decode()[-2000:]}")
    # ru_maxrss of the one waited-for child: its own peak, in KiB on Linux.
    return wall, usage.ru_maxrss * 1024, out.decode()


def _prepare(events: int, folder: Path, env: dict[str, str]) -> Path:
    logs, db = folder / "logs", folder / "store.duckdb"
    for args in (
        ["-c", DWATCH, "generate", str(logs), "-n", str(events), "--format", "parquet"],
        ["-c", DWATCH, "--db", str(db), "ingest", str(logs)],
    ):
        _peak_run(args, env)
    return db


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks memory", description=__doc__)
    parser.add_argument("--events", type=int, default=200_000, help="events to generate")
    parser.add_argument("--db", type=Path, help="an existing store (skips generate and ingest)")
    parser.add_argument(
        "--memory",
        default="default,3GB",
        help="comma-separated DWATCH_MEMORY values; 'default' leaves it unset",
    )
    args = parser.parse_args(argv)
    env = dict(os.environ)
    env.setdefault("DWATCH_PSEUDONYM_KEY", "benchmark-key-not-a-secret-0123456789")
    with tempfile.TemporaryDirectory(prefix="dwatch-bench-memory-") as tmp:
        db = args.db or _prepare(args.events, Path(tmp), env)
        print(f"store: {db} ({db.stat().st_size / 2**20:,.0f} MB)")
        print(f"{'DWATCH_MEMORY':>14} {'step':>6} {'wall s':>8} {'peak MB':>9}  detail")
        for budget in args.memory.split(","):
            child_env = dict(env)
            child_env.pop("DWATCH_MEMORY", None)
            if budget.strip() != "default":
                child_env["DWATCH_MEMORY"] = budget.strip()
            wall, peak, out = _peak_run(["-c", DWATCH, "--db", str(db), "train"], child_env)
            trained = sum(" trained " in line for line in out.splitlines())
            print(
                f"{budget:>14} {'train':>6} {wall:>8.1f} {peak / 2**20:>9,.0f}  {trained} model(s)"
            )
            wall, peak, out = _peak_run(["-c", SCORE_ALL, str(db)], child_env)
            rows = int(out.strip().splitlines()[-1])
            print(f"{budget:>14} {'score':>6} {wall:>8.1f} {peak / 2**20:>9,.0f}  {rows:,} rows")


if __name__ == "__main__":
    main()
