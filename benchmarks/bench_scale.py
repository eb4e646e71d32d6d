"""The whole pipeline at 1M, 10M and 100M events, and a 1% incremental run, beside DuckDB.

    python -m benchmarks scale -- --sizes 1000000,10000000,100000000
    python -m benchmarks scale -- --sizes 1000000 --workdir /data/bench   # keep the files

For each size: ``dwatch generate`` writes every log as Parquet; each file is cut in two by
its row order (the logs are written in time order): the first 99% is the history, the last
1% arrives later as the same number of new files. Then, each in its own child process (so
each peak memory is its own):

  1. DuckDB's own load of the history files into a fresh database file (one
     ``CREATE TABLE AS SELECT * FROM read_parquet`` per file) - the yardstick;
  2. ``dwatch run`` of the history into a fresh store (ingest, validate, rules, ML train +
     score, report, publish), with its per-step seconds and peak memory;
  3. DuckDB's own load of the 1% new files;
  4. ``dwatch run`` of the 1% new files into the same store (the incremental run).

Prints, per size: each side's seconds and their ratio, the run's steps, peak RSS, the
store's and the snapshots' size on disk, and the incremental run as a share of the full
run. The issue's targets are printed beside the figures. Generation is not timed. The
machine's other load shows in every figure alike (the runs alternate within a size).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

KEY = "benchmark-key-not-secret-0123456789"
NEW_SHARE = 0.01


def _split(raw: Path, history: Path, new: Path) -> tuple[int, int, int]:
    """Cut every Parquet log of ``raw`` into its first 99% and last 1% of rows.

    Only the logs: at large sizes the generator writes its answer key beside them
    (``ground_truth_labels.parquet``), which a run must not load as input.
    """
    history.mkdir(parents=True, exist_ok=True)
    new.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    files = sorted([*raw.glob("events-*.parquet"), *raw.glob("request_items.parquet")])
    rows_history = rows_new = 0
    for f in files:
        n = con.execute("SELECT count(*) FROM read_parquet(?)", [str(f)]).fetchone()[0]
        cut = n - max(1, int(n * NEW_SHARE)) if n > 1 else n
        select = (
            "SELECT * EXCLUDE (file_row_number) FROM read_parquet($f, file_row_number = true)"
            " WHERE file_row_number {op} $cut ORDER BY file_row_number"
        )
        for folder, op in ((history, "<"), (new, ">=")):
            target = folder / f.name
            con.execute(
                f"COPY ({select.format(op=op)}) TO $out (FORMAT parquet)",
                {"f": str(f), "cut": cut, "out": str(target)},
            )
        rows_history += cut
        rows_new += n - cut
    con.close()
    return len(files), rows_history, rows_new


def _peak_and_cpu(out: dict[str, object]) -> dict[str, object]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out["cpu_seconds"] = usage.ru_utime + usage.ru_stime
    out["peak_rss_mb"] = usage.ru_maxrss / 1024
    return out


def _child_duckdb(folder: str, db_path: str) -> dict[str, object]:
    t0 = time.perf_counter()
    con = duckdb.connect(db_path)
    rows = 0
    for i, f in enumerate(sorted(Path(folder).glob("*.parquet"))):
        con.execute(f"CREATE TABLE t{i} AS SELECT * FROM read_parquet(?)", [str(f)])
        rows += con.execute(f"SELECT count(*) FROM t{i}").fetchone()[0]
    con.close()
    return _peak_and_cpu({"seconds": time.perf_counter() - t0, "rows": rows})


def _child_run(folder: str, db_path: str) -> dict[str, object]:
    from dwatch.pipeline import PipelineConfig, run_pipeline

    root = Path(db_path).parent
    config = PipelineConfig(
        reports_dir=root / "reports",
        snapshot_dir=root / "snapshots",
        notify=False,
        source="(benchmark)",
    )
    t0 = time.perf_counter()
    summary = run_pipeline(Path(db_path), [Path(folder)], config=config, trigger="benchmark")
    return _peak_and_cpu(
        {
            "seconds": time.perf_counter() - t0,
            "status": summary.status,
            "steps": {s.step: s.seconds for s in summary.steps},
            "step_cpu": {s.step: s.cpu_seconds for s in summary.steps},
            "step_status": {s.step: s.status for s in summary.steps},
            "events": summary.counts.get("events_loaded"),
        }
    )


def _run_child(mode: str, folder: Path, db: Path) -> dict[str, object]:
    env = {**os.environ, "DWATCH_PSEUDONYM_KEY": os.environ.get("DWATCH_PSEUDONYM_KEY", KEY)}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_scale", "--child", mode, str(folder), str(db)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{mode} child failed on {folder}:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _docs_built(store: Path, timeout_s: float = 900.0) -> float:
    """Wait for the Data Docs a run left to a process of its own (dwatch.validate.docs_job):
    they must not share the CPU with the next timed step. Returns the seconds waited after
    the run ended, printed beside the run so the figures do not hide the pages' cost."""
    pending = store.parent / "reports" / "validation" / ".pending"
    start = time.monotonic()
    deadline = start + timeout_s
    while pending.is_dir() and any(pending.glob("*.json")) and time.monotonic() < deadline:
        time.sleep(0.2)
    return time.monotonic() - start


def _disk_mb(*paths: Path) -> float:
    total = 0
    for p in paths:
        if p.is_file():
            total += p.stat().st_size
        elif p.is_dir():
            total += sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return total / 1e6


def _step(run: dict[str, object], *names: str) -> float:
    steps = run["steps"]
    assert isinstance(steps, dict)
    return sum(float(steps.get(n, 0.0)) for n in names)


def _measure(size: int, work: Path) -> dict[str, object]:
    root = work / f"{size}"
    raw, history, new = root / "raw", root / "history", root / "new"
    if not history.exists():
        from dwatch.generate import generate

        t0 = time.perf_counter()
        generate(raw, events=size, seed=11, fmt="parquet")
        files, rows_history, rows_new = _split(raw, history, new)
        shutil.rmtree(raw)
        print(
            f"  generated {size:,} events: {files} files, {rows_history:,} history rows,"
            f" {rows_new:,} new rows ({time.perf_counter() - t0:.0f}s, not timed)",
            flush=True,
        )
    store = root / "store" / "dwatch.duckdb"
    shutil.rmtree(store.parent, ignore_errors=True)
    store.parent.mkdir(parents=True)
    base = root / "duckdb.duckdb"
    for p in (base, Path(f"{base}.wal")):
        p.unlink(missing_ok=True)
    d_full = _run_child("duckdb", history, base)
    full = _run_child("run", history, store)
    docs_full = _docs_built(store)
    store_mb = _disk_mb(store, Path(f"{store}.wal"))
    snapshots_mb = _disk_mb(store.parent / "snapshots")
    for p in (base, Path(f"{base}.wal")):
        p.unlink(missing_ok=True)
    d_new = _run_child("duckdb", new, base)
    incremental = _run_child("run", new, store)
    docs_new = _docs_built(store)
    snapshots_after = _disk_mb(store.parent / "snapshots")
    return {
        "size": size,
        "duckdb": d_full,
        "full": full,
        "duckdb_new": d_new,
        "incremental": incremental,
        "store_mb": store_mb,
        "snapshots_mb": snapshots_mb,
        "snapshots_after_mb": snapshots_after,
        "docs_after_full_s": docs_full,
        "docs_after_new_s": docs_new,
    }


def _print(results: list[dict[str, object]]) -> None:
    head = (
        f"{'events':>12} {'DuckDB s':>9} {'run s':>8} {'ratio':>6} {'ingest':>7} {'valid.':>7}"
        f" {'rules':>7} {'ML':>7} {'publish':>7} {'peak MB':>8} {'store MB':>9} {'snap MB':>8}"
        f" {'1% run s':>9} {'1% share':>8} {'1% peak':>8}"
    )
    print(head)
    for r in results:
        d, f, i = r["duckdb"], r["full"], r["incremental"]
        assert isinstance(d, dict) and isinstance(f, dict) and isinstance(i, dict)
        print(
            f"{r['size']:>12,} {d['seconds']:>9.1f} {f['seconds']:>8.1f}"
            f" {f['seconds'] / d['seconds']:>5.1f}x {_step(f, 'ingest'):>7.1f}"
            f" {_step(f, 'plan', 'validate'):>7.1f} {_step(f, 'detect_rules'):>7.1f}"
            f" {_step(f, 'detect_ml'):>7.1f} {_step(f, 'publish'):>7.1f}"
            f" {f['peak_rss_mb']:>8,.0f} {r['store_mb']:>9,.0f} {r['snapshots_mb']:>8,.0f}"
            f" {i['seconds']:>9.1f} {i['seconds'] / f['seconds']:>7.1%} {i['peak_rss_mb']:>8,.0f}"
        )
    print(
        "targets (issue 18): run <= 5x DuckDB's load; validation <= 0.5x ingest;"
        " 1% run <= 5% of a full run; peak < 4096 MB at 100M; snapshots grow with what changed"
    )
    for r in results:
        f, i, dn = r["full"], r["incremental"], r["duckdb_new"]
        assert isinstance(f, dict) and isinstance(i, dict) and isinstance(dn, dict)
        validation = _step(f, "plan", "validate") / max(_step(f, "ingest"), 1e-9)
        print(
            f"{r['size']:,}: validation / ingest {validation:.2f}x; 1% run {i['seconds']:.1f}s"
            f" vs DuckDB's load of the 1% {dn['seconds']:.1f}s; steps of the 1% run:"
            f" {json.dumps({k: round(float(v), 1) for k, v in i['steps'].items()})};"
            f" statuses {json.dumps(f['step_status'])};"
            f" snapshots {r['snapshots_mb']:,.0f} -> {r['snapshots_after_mb']:,.0f} MB;"
            f" Data Docs (built beside the run) still building after it ended:"
            f" {r['docs_after_full_s']:.1f}s full, {r['docs_after_new_s']:.1f}s 1%"
        )
        d = r["duckdb"]
        assert isinstance(d, dict) and isinstance(dn, dict)
        # CPU seconds (user + system, every thread) do not depend on how busy the machine was.
        print(
            f"{r['size']:,} CPU seconds: DuckDB's load {d['cpu_seconds']:.1f}, run"
            f" {f['cpu_seconds']:.1f} ({f['cpu_seconds'] / d['cpu_seconds']:.1f}x), steps"
            f" {json.dumps({k: round(float(v), 1) for k, v in f.get('step_cpu', {}).items()})};"
            f" 1% run {i['cpu_seconds']:.1f} ({i['cpu_seconds'] / f['cpu_seconds']:.1%} of the"
            f" full run's), steps"
            f" {json.dumps({k: round(float(v), 1) for k, v in i.get('step_cpu', {}).items()})}"
        )


def main(argv: list[str]) -> None:
    if argv[:1] == ["--child"]:
        mode, folder, db = argv[1:4]
        out = _child_duckdb(folder, db) if mode == "duckdb" else _child_run(folder, db)
        print(json.dumps(out))
        return
    parser = argparse.ArgumentParser(prog="bench_scale")
    parser.add_argument(
        "--sizes", default="1000000,10000000,100000000", help="comma-separated event counts"
    )
    parser.add_argument("--workdir", type=Path, default=None, help="kept; generated files reused")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    work = args.workdir or Path(tempfile.mkdtemp(prefix="dwatch-bench-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    results = []
    for size in sizes:
        print(f"size {size:,} in {work}", flush=True)
        results.append(_measure(size, work))
        _print(results)
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])
