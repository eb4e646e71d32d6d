"""Ingest throughput against DuckDB's own load of the same CSV, measured side by side.

    python -m benchmarks ingest -- --events 5000000

Writes a canonical CSV of N synthetic events (with a few bad rows, as real logs have),
then in separate child processes (so each peak memory is its own) times
  1. DuckDB's own ``CREATE TABLE AS SELECT * FROM read_csv(...)`` into a database file;
  2. ``dwatch ingest`` of the same file into a fresh store (typing, checks, pseudonyms,
     quarantine, one transaction);
and prints rows/s, the ratio, and peak RSS of each. It also prints each side's CPU seconds
(user + system of its own process) and their ratio: on a shared machine the wall ratio
moves with whatever else runs, the CPU ratio much less. With --repeat N the runs
alternate and each side's median is reported.

    python -m benchmarks ingest -- --folder /work/bench/10000000/history

loads a folder of logs instead (DuckDB's side: one table per file, as ``benchmarks scale``
measures it) and prints the bytes each side wrote to disk, where a work table that spilled
shows (issue 18: 6.1 GB at 10M events before groups were bounded by memory, 0.4 GB after).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

SYNTH_SQL = """
COPY (
  SELECT
    'ev-' || i AS event_id,
    CASE i % 4 WHEN 0 THEN 'irs-disclosure-ledger' WHEN 1 THEN 'ssa-receipt-log'
               WHEN 2 THEN 'ftb-receipt-log' ELSE 'ice-fti-receipt-log' END AS source_system,
    i AS sequence_no,
    strftime(TIMESTAMP '2025-01-01' + to_seconds(i * 6), '%Y-%m-%dT%H:%M:%S')
      || CASE i % 3 WHEN 0 THEN 'Z' WHEN 1 THEN '-05:00' ELSE '-08:00' END AS occurred_at,
    (['request','disclosure','receipt','access','access','access'])[1 + i % 6] AS event_type,
    'IRS' AS disclosing_agency,
    (['CA-FTB','NY-DTF','SSA','DHS-ICE','FBI','TX-CPA'])[1 + (i * 7) % 6] AS recipient_agency,
    'u' || (i % 5000) AS actor_id,
    (['analyst','disclosure_officer','head_of_agency'])[1 + i % 3] AS actor_role,
    'req-' || (i // 10) AS request_id,
    (['26 U.S.C. § 6103(d)','IRC 6103(l)(1)','26 USC 6103(i)(2)','6103(j)(1)'])[1 + i % 4] AS legal_authority,
    (['state_tax_administration','benefit_eligibility','nontax_criminal_investigation'])[1 + i % 3] AS purpose,
    (['["name","address"]','["name","address","income"]','["name","tin"]'])[1 + i % 3] AS data_elements,
    CASE WHEN i % 100000 = 7 THEN '0' ELSE CAST(1 + (i * 13) % 5000 AS VARCHAR) END AS record_count,
    CASE WHEN i % 5 = 0 THEN '9' || lpad(CAST(i % 100000000 AS VARCHAR), 8, '0') END AS taxpayer_tin,
    (['sftp','secure_file_transfer','api'])[1 + i % 3] AS channel,
    CASE WHEN i % 50 = 0 THEN 'false' ELSE 'true' END AS encrypted,
    CASE WHEN i % 4 = 0 THEN 'agr-' || (i % 50) END AS agreement_id,
    NULL AS case_number,
    NULL AS description,
    'success' AS outcome
  FROM range(1, $n + 1) t(i)
) TO $path (HEADER, DELIMITER ',')
"""


def _child(mode: str, csv_path: str, db_path: str) -> None:
    os.environ.setdefault("DWATCH_PSEUDONYM_KEY", "benchmark-key-not-secret-0123456789")
    t0 = time.perf_counter()
    if mode == "duckdb":
        con = duckdb.connect(db_path)
        # A folder: one table per file, as benchmarks scale's yardstick loads it.
        files = sorted(Path(csv_path).iterdir()) if Path(csv_path).is_dir() else [Path(csv_path)]
        rows = 0
        for i, f in enumerate(files):
            reader = "read_parquet" if f.suffix == ".parquet" else "read_csv"
            con.execute(f"CREATE TABLE t{i} AS SELECT * FROM {reader}(?)", [str(f)])
            rows += con.execute(f"SELECT count(*) FROM t{i}").fetchone()[0]
        con.close()
        out = {"rows": rows}
    else:
        from dwatch.ingest import ingest_paths
        from dwatch.store import connect

        con = connect(db_path)
        results = ingest_paths(con, [csv_path])
        con.close()
        out = {
            "rows": sum(r.rows_read for r in results),
            "loaded": sum(r.rows_loaded for r in results),
            "quarantined": sum(r.rows_quarantined for r in results),
            "status": ",".join(sorted({r.status for r in results})),
        }
    out["seconds"] = time.perf_counter() - t0
    # Bytes this process wrote to disk (database and spill files), where Linux says.
    with contextlib.suppress(OSError, KeyError, ValueError):
        io = dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())
        out["written_mb"] = int(io["write_bytes"]) / 1e6
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out["cpu_seconds"] = usage.ru_utime + usage.ru_stime
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


def _run(mode: str, csv_path: Path, work: Path) -> dict[str, float]:
    db = work / f"{mode}.duckdb"
    for suffix in ("", ".wal"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_ingest", "--child", mode, str(csv_path), str(db)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench_ingest")
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument(
        "--repeat", type=int, default=1, help="alternating runs of each; the median is reported"
    )
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument(
        "--folder",
        type=Path,
        default=None,
        help="load this folder of logs (e.g. /work/bench/10000000/history) instead of a"
        " synthetic CSV; DuckDB's side loads each file as a table of its own",
    )
    args = parser.parse_args(argv)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="dwatch-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    csv_path = args.folder or work / f"events-{args.events}.csv"
    if args.folder is None and not csv_path.exists():
        t0 = time.perf_counter()
        duckdb.connect().execute(SYNTH_SQL, {"n": args.events, "path": str(csv_path)})
        print(
            f"wrote {csv_path} ({csv_path.stat().st_size / 1e6:,.0f} MB) in {time.perf_counter() - t0:.1f}s"
        )
    runs: dict[str, list[dict[str, float]]] = {"duckdb": [], "dwatch": []}
    for i in range(args.repeat):
        for mode in ("duckdb", "dwatch"):
            runs[mode].append(_run(mode, csv_path, work))
        d, w = runs["duckdb"][-1], runs["dwatch"][-1]
        if args.repeat > 1:
            print(
                f"run {i + 1}: duckdb {d['seconds']:.2f} s ({d['cpu_seconds']:.2f} CPU-s),"
                f" dwatch {w['seconds']:.2f} s ({w['cpu_seconds']:.2f} CPU-s),"
                f" ratio {w['seconds'] / d['seconds']:.2f}x wall, {w['cpu_seconds'] / d['cpu_seconds']:.2f}x CPU"
            )
    d, w = (_median(runs["duckdb"]), _median(runs["dwatch"]))
    print(f"events                      {int(d['rows']):,}")
    print(
        f"duckdb CTAS (own load)      {d['seconds']:8.2f} s  {d['rows'] / d['seconds']:12,.0f} rows/s  peak {d['peak_rss_mb']:,.0f} MB"
        f"  CPU {d['cpu_seconds']:.2f} s"
    )
    print(
        f"dwatch ingest               {w['seconds']:8.2f} s  {w['rows'] / w['seconds']:12,.0f} rows/s  peak {w['peak_rss_mb']:,.0f} MB"
        f"  CPU {w['cpu_seconds']:.2f} s  (loaded {int(w['loaded']):,}, quarantined {int(w['quarantined']):,})"
    )
    print(
        f"ratio dwatch / duckdb       {w['seconds'] / d['seconds']:8.2f}x   (target <= 3.0x, the owner's figure since stop 11; peak target < 2048 MB)"
    )
    print(f"CPU ratio dwatch / duckdb   {w['cpu_seconds'] / d['cpu_seconds']:8.2f}x")
    if "written_mb" in w:
        print(
            f"written to disk             duckdb {d['written_mb']:,.0f} MB, dwatch {w['written_mb']:,.0f} MB"
            " (database, WAL and spill files)"
        )


def _median(results: list[dict[str, float]]) -> dict[str, float]:
    """Each figure's median across runs (wall, CPU and peak taken independently)."""
    return {
        key: statistics.median(r[key] for r in results) if key != "status" else results[0][key]
        for key in results[0]
    }


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "--child":
        _child(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        main(sys.argv[1:])
