"""Validation time per million rows, and its ratio to the ingest time of the same batch.

One canonical CSV is generated, loaded with dwatch.ingest.ingest_paths and validated with
dwatch.validate.validate_batches in the same run, on the same store. Target (issue 4):
validation adds at most half of the ingest time at 5M rows.

    python -m benchmarks validate -- --rows 5000000
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

SOURCES = 20
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_events_csv(path: Path, rows: int) -> None:
    """Canonical events: SOURCES sources, hourly-ish sequences, two sources with one gap."""
    per_source = rows // SOURCES + 1
    con = duckdb.connect()
    con.execute(
        f"""
        COPY (
          SELECT 'ev-' || i AS event_id,
                 'src-' || (i % {SOURCES}) AS source_system,
                 i // {SOURCES} + 1 AS sequence_no,
                 strftime(TIMESTAMPTZ '{T0.isoformat()}' + to_seconds((i // {SOURCES}) * 60),
                          '%Y-%m-%dT%H:%M:%SZ') AS occurred_at,
                 ['request','disclosure','receipt','access'][1 + i % 4] AS event_type,
                 'IRS' AS disclosing_agency,
                 ['CA-FTB','SSA','NY-DTF','DOJ-FBI'][1 + i % 4] AS recipient_agency,
                 'user-' || (i % 997) AS actor_id,
                 'analyst' AS actor_role,
                 'req-' || (i // 10) AS request_id,
                 ['26 U.S.C. 6103(d)', 'IRC 6103(l)(1)', '26 USC 6103(i)(2)'][1 + i % 3] AS legal_authority,
                 'state_tax_administration' AS purpose,
                 '["name","address"]' AS data_elements,
                 1 + i % 500 AS record_count,
                 ['sftp','api','secure_file_transfer'][1 + i % 3] AS channel,
                 'true' AS encrypted,
                 '' AS agreement_id,
                 '' AS case_number,
                 CASE WHEN i % 100003 = 0 THEN 'see SSN 123-45-6789' ELSE 'batch transfer ' || (i % 50) END
                   AS description,
                 'success' AS outcome
          FROM range({rows}) r(i)
          -- drop one sequence number in 2 of the sources: gaps are rare in real logs
          WHERE NOT (i % {SOURCES} < 2 AND i // {SOURCES} + 1 = {per_source // 2})
        ) TO '{path}' (HEADER, DELIMITER ',')
        """
    )
    con.close()


def bench_ingest_and_validate(rows: int, work: Path) -> None:
    from dwatch.ingest import ingest_paths
    from dwatch.store import connect
    from dwatch.validate import load_config, validate_batches

    csv_path = work / "events.csv"
    t = time.perf_counter()
    write_events_csv(csv_path, rows)
    print(
        f"generated {rows:,} rows in {time.perf_counter() - t:.1f} s ({csv_path.stat().st_size / 1e6:.0f} MB CSV)"
    )

    con = connect(work / "bench.duckdb")
    os.environ.setdefault("DWATCH_PSEUDONYM_KEY", "benchmark-key-not-secret-0123456789")
    t = time.perf_counter()
    [result] = ingest_paths(con, [csv_path])
    ingest_s = time.perf_counter() - t
    print(
        f"ingest   {ingest_s:8.2f} s  read {result.rows_read:,} loaded {result.rows_loaded:,}"
        f" quarantined {result.rows_quarantined:,}"
    )

    config = load_config().with_overrides(now=T0 + timedelta(days=3650), docs_dir=work / "docs")
    t = time.perf_counter()
    report = validate_batches(con, ingest_run_ids=[result.run_id], config=config, build_docs=False)
    validate_s = time.perf_counter() - t
    t = time.perf_counter()
    from dwatch.validate.docs import build_offline_docs
    from dwatch.validate.gx_duckdb import make_context

    # Docs are a fixed cost per run (not per row); measured apart on a fresh, small context.
    build_offline_docs(make_context(work / "docs"), work / "docs")
    docs_s = time.perf_counter() - t
    [batch] = report.batches
    passed = sum(o.success for o in batch.outcomes)
    print(
        f"validate {validate_s:8.2f} s  {len(batch.outcomes)} outcomes ({passed} passed),"
        f" quarantined {batch.rows_quarantined:,}, coverage gaps {len(batch.coverage_gaps)}"
    )
    print(f"docs     {docs_s:8.2f} s  (fixed cost per run, empty site)")
    per_million = validate_s / (rows / 1e6)
    ratio = validate_s / ingest_s
    print(f"validation per million rows: {per_million:.2f} s")
    print(
        f"validation / ingest of the same batch: {ratio:.2f}  (target <= 0.50 at 5M rows:"
        f" {'met' if ratio <= 0.5 else 'NOT met'} at {rows:,} rows)"
    )
    print(f"peak RSS of this process: {_peak_rss_mb():.0f} MB")
    con.close()


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
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--compare-pandas", action="store_true")
    parser.add_argument("--work", type=Path, default=None, help="Folder for the CSV and store.")
    args = parser.parse_args(argv)
    if args.compare_pandas:
        compare_pandas(args.rows)
        return
    if args.work:
        args.work.mkdir(parents=True, exist_ok=True)
        bench_ingest_and_validate(args.rows, args.work)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            bench_ingest_and_validate(args.rows, Path(tmp))
