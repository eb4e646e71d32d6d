"""A full run against a 1% incremental run and an idle run, per step, as users run them.

    python -m benchmarks incremental -- --events 1000000 --new-share 0.01

Generates ``--events`` events (every scenario, one file per log), cuts every file (and
the request items) by row position into the first 99% and the last 1%, runs the pipeline
on the 99% (the full run: ingest, validate, rules, ML training and scoring, report,
snapshot), then adds the 1% as new files (one per log: the incremental run), then runs
once more with nothing new (idle). Prints wall and CPU seconds per step of each run and
the incremental run as a share of the full one. ``--judge-all`` makes the incremental run
re-judge every rule over all history (the behaviour before detectors/scoped.py), for the
before/after comparison. The machine's other load shows in the wall figures; CPU seconds
(this process, every thread) are steadier.
"""

from __future__ import annotations

import argparse
import csv
import os
import tempfile
import time
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path

import dwatch.pipeline as pipeline
from dwatch.pipeline import STEP_NAMES, PipelineConfig, RunSummary, run_pipeline


def _cut(raw: Path, old: Path, new: Path, share: float) -> int:
    """Every log and the request items cut into the first (1 - share) and the last share."""
    old.mkdir(parents=True, exist_ok=True)
    new.mkdir(parents=True, exist_ok=True)
    rows_new = 0
    for source in sorted(raw.glob("*.csv")):
        with source.open(newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            header = next(reader)
            rows = list(reader)
        cut = len(rows) - max(1, round(len(rows) * share)) if rows else 0
        for folder, (lo, hi) in zip((old, new), pairwise((0, cut, len(rows))), strict=True):
            with (folder / f"{source.stem}.{folder.name}.csv").open(
                "w", newline="", encoding="utf-8"
            ) as fh:
                writer = csv.writer(fh)
                writer.writerow(header)
                writer.writerows(rows[lo:hi])
        rows_new += len(rows) - cut
    return rows_new


def _timed_steps(cpu: dict[str, float]) -> None:
    """Wrap every pipeline step to record its CPU seconds (all threads) into ``cpu``."""

    def wrap(name: str, fn: Callable[..., object]) -> Callable[..., object]:
        def timed(ctx: object) -> object:
            began = time.process_time()
            try:
                return fn(ctx)
            finally:
                cpu[name] = time.process_time() - began

        return timed

    for name, fn in list(pipeline.STEPS.items()):
        pipeline.STEPS[name] = wrap(name, fn)  # type: ignore[assignment]


def _row(label: str, summary: RunSummary, cpu: dict[str, float], total_cpu: float) -> str:
    wall = {s.step: s.seconds for s in summary.steps}
    cells = " ".join(f"{wall.get(n, 0.0):>7.1f}/{cpu.get(n, 0.0):<6.1f}" for n in STEP_NAMES)
    return f"{label:<12} {summary.duration_seconds or 0:>7.1f}/{total_cpu:<7.1f} {cells} {summary.status}"


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench_incremental")
    parser.add_argument("--events", type=int, default=1_000_000, help="events generated")
    parser.add_argument("--new-share", type=float, default=0.01, help="share of each log new")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--judge-all", action="store_true", help="rules re-judge all history")
    parser.add_argument("--dir", type=Path, default=None, help="work folder (default: temp)")
    args = parser.parse_args(argv)
    os.environ.setdefault("DWATCH_PSEUDONYM_KEY", "benchmark-key-not-secret-0123456789")
    from dwatch.generate import generate

    if args.judge_all:
        pipeline._judge_all_because = lambda ctx, version: "benchmark --judge-all"  # type: ignore[assignment]
    cpu: dict[str, float] = {}
    _timed_steps(cpu)
    with tempfile.TemporaryDirectory(prefix="dwatch-bench-incr-") as tmp:
        root = args.dir or Path(tmp)
        t0 = time.perf_counter()
        generate(root / "raw", events=args.events, seed=args.seed)
        new_rows = _cut(root / "raw", root / "old", root / "new", args.new_share)
        inbox = root / "inbox"
        inbox.mkdir(parents=True, exist_ok=True)
        for f in (root / "old").glob("*.csv"):
            f.rename(inbox / f.name)
        print(
            f"{args.events:,} events generated and cut in {time.perf_counter() - t0:.0f}s;"
            f" {new_rows:,} rows ({args.new_share:.0%} of each log) held back as"
            f" {len(list((root / 'new').glob('*.csv')))} new files"
            + ("; --judge-all: rules re-judge all history" if args.judge_all else "")
        )
        print(
            f"{'run':<12} {'total s wall/cpu':>15} " + " ".join(f"{n[:14]:>14}" for n in STEP_NAMES)
        )
        config = PipelineConfig(
            reports_dir=root / "reports", snapshot_dir=root / "snapshots", notify=False
        )
        db = root / "store.duckdb"
        totals: dict[str, float] = {}
        for label in ("full", "incremental", "idle"):
            if label == "incremental":
                for f in (root / "new").glob("*.csv"):
                    f.rename(inbox / f.name)
            cpu.clear()
            began = time.process_time()
            summary = run_pipeline(db, [inbox], config=config, trigger="benchmark")
            total_cpu = time.process_time() - began
            totals[label] = summary.duration_seconds or 0.0
            totals[f"{label}_cpu"] = total_cpu
            print(_row(label, summary, cpu, total_cpu), flush=True)
            rules = summary.step("detect_rules")
            if rules is not None and label != "full":
                print(f"  detect_rules: {rules.message}")
                for line in (rules.detail or {}).get("revisits", []):
                    print(f"    read {line[:300]}")
        print(
            f"incremental / full: {totals['incremental'] / max(totals['full'], 1e-9):.1%} wall,"
            f" {totals['incremental_cpu'] / max(totals['full_cpu'], 1e-9):.1%} CPU;"
            f" idle run {totals['idle']:.1f}s wall, {totals['idle_cpu']:.1f}s CPU"
        )
