"""The pipeline's validation step on many generated log files, as a ratio to its ingest step.

What a deployment runs: ``dwatch generate`` writes one CSV per log (the IRS ledger, every
recipient agency's receipt/access log, request items; 70-odd files). The first run loads
99% of each log, an incremental run adds the last 1% of each log as new files, and a third
run finds nothing new. Each run is the pipeline's own ``ingest`` then ``validate`` step
(``dwatch.pipeline``: the same code ``dwatch run`` executes, timed by the pipeline itself),
in one process on one store; the other steps (rules, ML, report, publish) are not run.
Target (issue 18): validation at most 0.5x ingest inside the pipeline.

    python -m benchmarks validate -- --events 1000000
    python -m benchmarks validate -- --events 200000 --work /tmp/bv   # keep the files
    python -m benchmarks validate -- --rows 1000000 --compare-pandas

``--compare-pandas`` repeats the measurement behind the adapter choice in
dwatch/validate/gx_duckdb.py: five expectations on the same rows through the adapter's
SQL route and with the batch handed to GX as a pandas DataFrame.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb

T0 = datetime(2025, 1, 1, tzinfo=UTC)
TAIL_SHARE = 0.01  # the incremental run's share of each log


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def split_logs(raw: Path, first: Path, later: Path, tail_share: float = TAIL_SHARE) -> int:
    """Each generated CSV: its first rows into ``first``, its last ``tail_share`` into
    ``later`` (as <name>-tail.csv). Returns the number of files written."""
    first.mkdir(parents=True, exist_ok=True)
    later.mkdir(parents=True, exist_ok=True)
    written = 0
    for path in sorted(raw.glob("*.csv")):
        with path.open(encoding="utf-8", newline="") as fh:
            header, *lines = fh.readlines()
        cut = len(lines) - max(1, int(len(lines) * tail_share)) if len(lines) > 1 else len(lines)
        (first / path.name).write_text(header + "".join(lines[:cut]), encoding="utf-8")
        written += 1
        if lines[cut:]:
            tail = later / f"{path.stem}-tail.csv"
            tail.write_text(header + "".join(lines[cut:]), encoding="utf-8")
            written += 1
    return written


def _pipeline_run(db: Path, inputs: list[Path], work: Path) -> dict[str, float | str]:
    """The pipeline's ingest and validate steps, as ``dwatch run`` runs them."""
    from dwatch.pipeline import PipelineConfig, begin_run

    config = PipelineConfig(
        reports_dir=work / "reports", snapshot_dir=work / "snapshots", notify=False
    )
    ctx = begin_run(db, inputs, trigger="benchmark", config=config)
    try:
        ingest = ctx.run("ingest")
        validate = ctx.run("validate")
    finally:
        ctx.close()
    stages = (validate.detail or {}).get("seconds_by_stage") or {}
    return {
        "ingest_s": ingest.seconds,
        "validate_s": validate.seconds,
        "ingest": ingest.message,
        "validate": validate.message
        + (" [" + ", ".join(f"{k} {v:.2f} s" for k, v in stages.items()) + "]" if stages else ""),
    }


def _print_run(label: str, run: dict[str, float | str]) -> None:
    ingest_s, validate_s = float(run["ingest_s"]), float(run["validate_s"])
    ratio = f"{validate_s / ingest_s:.2f}x" if ingest_s >= 0.05 else "n/a"
    print(f"{label:<12} ingest {ingest_s:8.2f} s  validate {validate_s:8.2f} s  ratio {ratio}")
    print(f"{'':<12} ingest:   {run['ingest']}")
    print(f"{'':<12} validate: {run['validate']}", flush=True)


def bench_pipeline_validate(events: int, work: Path, seed: int) -> None:
    from dwatch.generate import generate

    os.environ.setdefault("DWATCH_PSEUDONYM_KEY", "benchmark-key-not-secret-0123456789")
    raw, first, later = work / "raw", work / "inbox", work / "inbox-later"
    t = time.perf_counter()
    if not (raw / "ground_truth.json").is_file():  # --work keeps the files for a re-run
        generate(raw, events=events, seed=seed)
    files = split_logs(raw, first, later)
    size = sum(p.stat().st_size for p in first.glob("*.csv")) / 1e6
    print(
        f"generated {events:,} events in {time.perf_counter() - t:.1f} s: {files} CSV files"
        f" ({len(list(first.glob('*.csv')))} first, {len(list(later.glob('*.csv')))} later;"
        f" {size:.0f} MB first)",
        flush=True,
    )
    db = work / "store.duckdb"
    for stale in (db, db.with_suffix(".duckdb.wal")):
        stale.unlink(missing_ok=True)
    full = _pipeline_run(db, [first], work)
    _print_run("full", full)
    incremental = _pipeline_run(db, [first, later], work)
    _print_run("incremental", incremental)
    idle = _pipeline_run(db, [first, later], work)
    _print_run("nothing new", idle)
    ratio = float(full["validate_s"]) / max(float(full["ingest_s"]), 1e-9)
    print(
        f"validation / ingest in the full run: {ratio:.2f} (target <= 0.50:"
        f" {'met' if ratio <= 0.5 else 'NOT met'} at {events:,} events);"
        f" validation with nothing new: {float(idle['validate_s']):.2f} s"
    )
    print(f"peak RSS of this process: {_peak_rss_mb():.0f} MB")


def compare_pandas(rows: int) -> None:
    """The adapter's SQL route against handing the batch to GX as a pandas DataFrame."""
    import great_expectations as gx

    from dwatch.validate.gx_duckdb import duckdb_datasource, make_context
    from dwatch.validate.suites import re2_tin_pattern

    con = duckdb.connect()
    con.execute(
        f"CREATE TABLE t AS SELECT i AS record_count, ['sftp','api','fax','tape'][1 + i % 4] AS channel,"
        f" CASE WHEN i % 100000 = 0 THEN NULL ELSE 'u' || i END AS actor_id,"
        f" 'note ' || i || CASE WHEN i % 500000 = 1 THEN ' 123-45-6789' ELSE '' END AS description,"
        f" TIMESTAMPTZ '{T0.isoformat()}' + to_seconds(i) AS occurred_at FROM range({rows}) r(i)"
    )

    def suite() -> gx.ExpectationSuite:
        return gx.ExpectationSuite(
            name=f"compare_{time.monotonic_ns()}",
            expectations=[
                gx.expectations.ExpectColumnValuesToNotBeNull(column="actor_id"),
                gx.expectations.ExpectColumnValuesToBeInSet(
                    column="channel", value_set=["sftp", "api", "fax"]
                ),
                gx.expectations.ExpectColumnValuesToBeBetween(column="record_count", min_value=1),
                gx.expectations.ExpectColumnValuesToNotMatchRegex(
                    column="description", regex=re2_tin_pattern()
                ),
                gx.expectations.ExpectColumnValuesToBeBetween(
                    column="occurred_at", min_value=T0, max_value=T0 + timedelta(days=3650)
                ),
            ],
        )

    with tempfile.TemporaryDirectory() as tmp:
        context = make_context(Path(tmp))
        rss = _peak_rss_mb()
        t = time.perf_counter()
        with duckdb_datasource(context, con) as ds:
            batch = (
                ds.add_query_asset(name="t", query="SELECT * FROM t")
                .add_batch_definition_whole_table("b")
                .get_batch()
            )
            sql_counts = [r.result.get("unexpected_count") for r in batch.validate(suite()).results]
        sql_s = time.perf_counter() - t
        sql_rss = _peak_rss_mb() - rss
        rss = _peak_rss_mb()
        t = time.perf_counter()
        frame = con.execute("SELECT * FROM t").df()
        convert_s = time.perf_counter() - t
        ds = context.data_sources.add_pandas("frames")
        batch = (
            ds.add_dataframe_asset("t")
            .add_batch_definition_whole_dataframe("b")
            .get_batch(batch_parameters={"dataframe": frame})
        )
        pandas_counts = [r.result.get("unexpected_count") for r in batch.validate(suite()).results]
        pandas_s = time.perf_counter() - t
        pandas_rss = _peak_rss_mb() - rss
    print(f"five expectations on {rows:,} rows, same data:")
    print(
        f"  adapter (GX SQL route on DuckDB): {sql_s:6.2f} s  peak RSS +{sql_rss:.0f} MB  counts {sql_counts}"
    )
    print(
        f"  pandas DataFrame:                 {pandas_s:6.2f} s  ({convert_s:.2f} s DuckDB -> pandas)"
        f"  peak RSS +{pandas_rss:.0f} MB  counts {pandas_counts}"
    )
    print(f"  pandas / adapter: {pandas_s / sql_s:.1f}x")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench_validate", description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000, help="events to generate")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows for --compare-pandas")
    parser.add_argument("--compare-pandas", action="store_true")
    parser.add_argument("--work", type=Path, default=None, help="Folder for the files and store.")
    args = parser.parse_args(argv)
    if args.compare_pandas:
        compare_pandas(args.rows)
        return
    if args.work:
        args.work.mkdir(parents=True, exist_ok=True)
        bench_pipeline_validate(args.events, args.work, args.seed)
    else:
        with tempfile.TemporaryDirectory(prefix="dwatch-bench-validate-") as tmp:
            bench_pipeline_validate(args.events, Path(tmp), args.seed)
