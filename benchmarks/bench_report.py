"""How case building and report writing scale with the number of alerts.

    .venv/bin/python -m benchmarks report [-- --sizes 1000,10000]

Each size gets a fresh store with that many open alerts (spread over 40 recipients and
400 requests, some with event evidence) and 20,000 disclosure events for the timeline.
Prints seconds for the first case build, a re-run (ids stable, nothing new), and the full
report (HTML + CSV + Markdown), and the ratio to the smallest size.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from detectors.alerts import merge_alerts
from dwatch.report.cases import build_cases
from dwatch.report.citations import CitationDirectory
from dwatch.report.render import build_report
from dwatch.store import connect

_EVENTS_SQL = """
INSERT INTO disclosure_events (event_id, source_system, sequence_no, occurred_at, event_type,
    disclosing_agency, recipient_agency, actor_id, data_elements, record_count, taxpayer_ref)
SELECT 'ev-' || i, 'bench-ledger', i, TIMESTAMPTZ '2025-01-01 00:00:00+00' + to_minutes(i * 26),
       'disclosure', 'IRS', 'AG-' || (i % 40), 'actor-' || (i % 300), ['name', 'address'],
       1 + (i % 5000), 'tp_' || md5(i::VARCHAR)
FROM range(?) t(i)
"""

_ALERTS_SQL = """
SELECT 'al_' || md5('bench' || i) AS alert_id, 'bench_rule_' || (i % 7) AS detector_id,
       'rule' AS detector_kind, '1' AS detector_version,
       ['info', 'low', 'medium', 'high', 'critical'][1 + (i % 5)] AS severity, (i % 100) / 100.0 AS score,
       'event' AS entity_type, 'ev-' || (i % 20000) AS entity_id, 'IRS' AS disclosing_agency,
       'AG-' || (i % 40) AS recipient_agency, 'REQ-' || (i % 400) AS request_id,
       'actor-' || (i % 300) AS actor_id, 'bench-ledger' AS source_system,
       TIMESTAMPTZ '2025-01-01 00:00:00+00' + to_minutes(i * 26) AS window_start,
       TIMESTAMPTZ '2025-01-01 00:00:00+00' + to_minutes(i * 26) AS window_end,
       ['ev-' || (i % 20000)] AS event_ids, 1::BIGINT AS event_count, (1 + i % 3)::BIGINT AS subjects_affected,
       (1 + i % 3)::BIGINT AS records_affected, '{"n": 1}'::JSON AS evidence,
       ['26 USC 6103(i)(2)'] AS citations, 'bench finding ' || i AS explanation,
       false AS coverage_incomplete, 'bench' AS registry_version
FROM range(?) t(i)
"""


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench_report")
    parser.add_argument("--sizes", default="1000,10000", help="alert counts, comma-separated")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    os.environ.setdefault("DWATCH_PSEUDONYM_KEY", "bench-key-not-secret-0123456789")
    directory = CitationDirectory()
    rows: list[tuple[int, int, float, float, float]] = []
    # The first size is run twice and the first pass dropped: imports and DuckDB's first
    # plans would otherwise be charged to it.
    for size in [sizes[0], *sizes]:
        with tempfile.TemporaryDirectory(prefix="dwatch-bench-report-") as tmp:
            con = connect(Path(tmp) / "store.duckdb", threads=2)
            con.execute(_EVENTS_SQL, [20_000])
            con.execute(f"CREATE TEMP TABLE bench_alerts AS {_ALERTS_SQL}", [size])
            merge_alerts(
                con,
                "bench_alerts",
                detector_ids=[f"bench_rule_{i}" for i in range(7)],
                run_id="bench",
                retract_reason="bench",
            )
            start = time.perf_counter()
            built = build_cases(con, directory=directory)
            first = time.perf_counter() - start
            start = time.perf_counter()
            build_cases(con, directory=directory)
            again = time.perf_counter() - start
            start = time.perf_counter()
            build_report(con, Path(tmp) / "out", directory=directory)
            report = time.perf_counter() - start
            cases = built.cases
            rows.append((size, cases, first, again, report))
            con.close()
    rows = rows[1:]
    base = rows[0]
    print(
        f"{'alerts':>8} {'cases':>6} {'build s':>8} {'rebuild s':>9} {'report s':>8}  ratio vs {base[0]:,} alerts (build, report)"
    )
    for size, cases, first, again, report in rows:
        print(
            f"{size:>8,} {cases:>6,} {first:>8.2f} {again:>9.2f} {report:>8.2f}  "
            f"x{first / base[2]:.1f}, x{report / base[4]:.1f} for x{size / base[0]:.0f} alerts"
        )
