"""Accounting per taxpayer and for 100k identifiers at N events, and the side table's cost.

Builds a store the way a deployment has one: years of history loaded by ``dwatch ingest``
(many taxpayers, single-subject accesses and disclosures, bulk state flows naming nobody,
bulk requests with item lists and their receipts and disposals), then a daily increment.
Times, against the real ingest of the same batches:
  1. building ``accounting_keys`` over the history, and appending the increment to it;
  2. rewriting it in key order (what a refresh pays when the unsorted tail is due);
  3. the accounting for one taxpayer at a time (lookup + text output, in process, and one
     whole ``dwatch accounting`` command), against a scan of taxpayer_ref without the index;
  4. the accounting for a file of 100,000 identifiers (pseudonymise, look up, write CSV);
  5. a notification list of a bulk finding matched against 100,000 identifiers.

    python -m benchmarks accounting                        # 5,000,000 events
    python -m benchmarks accounting -- --events 200000     # quicker
Targets (issue 17): one taxpayer under 1 s, 100,000 identifiers under 30 s.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import duckdb

from dwatch.accounting.index import IndexRefresh

T = TypeVar("T")

BULK_REQUESTS = 40
_EVENT_SQL = """
COPY (
  SELECT 'ev-' || i AS event_id,
         CASE WHEN i % 10 IN (6, 7, 8) THEN 'irs-disclosure-ledger'
              ELSE 'state-log-' || (i % 20) END AS source_system,
         i AS sequence_no,
         strftime(TIMESTAMP '2023-01-01' + to_seconds(CAST(i * 7 AS BIGINT)), '%Y-%m-%dT%H:%M:%SZ')
           AS occurred_at,
         (['access','access','access','access','access','access','disclosure','request',
           'disclosure','receipt'])[1 + i % 10] AS event_type,
         'IRS' AS disclosing_agency,
         (['CA-FTB','NY-DTF','TX-CPA','SSA','DOJ-FBI'])[1 + (i // 10) % 5] AS recipient_agency,
         'user.' || (i % 5000) AS actor_id,
         CASE WHEN i % 10 IN (8, 9) THEN 'state-' || (i // 1000) END AS request_id,
         (['26 USC 6103(d)','IRC 6103(l)(1)','26 U.S.C. 6103(i)(2)'])[1 + i % 3] AS legal_authority,
         'state_tax_administration' AS purpose,
         '["name","address","tin"]' AS data_elements,
         CASE WHEN i % 10 IN (8, 9) THEN 5000 ELSE 1 END AS record_count,
         CASE WHEN i % 10 < 8 THEN
           printf('%03d-%02d-%04d', (h // 1000000) % 1000, (h // 10000) % 100, h % 10000) END
           AS taxpayer_tin
  FROM (SELECT i, hash(i * 2654435761) % $population AS h FROM range($start, $stop) t(i))
) TO $path (HEADER)
"""
_BULK_EVENT_SQL = """
COPY (
  SELECT printf('%s-%d', kind, r) AS event_id,
         CASE WHEN kind IN ('bq', 'bd') THEN 'irs-disclosure-ledger' ELSE 'ice-fti-receipt-log' END
           AS source_system,
         $seq0 + r * 4 + k AS sequence_no,
         strftime(TIMESTAMP '2023-06-01' + to_days(CAST(r * 7 + k AS INTEGER)), '%Y-%m-%dT%H:%M:%SZ')
           AS occurred_at,
         (['request','disclosure','receipt','disposal'])[1 + k] AS event_type,
         'IRS' AS disclosing_agency, 'DHS-ICE' AS recipient_agency, 'officer.' || r AS actor_id,
         'BULK-' || r AS request_id, '26 U.S.C. 6103(i)(2)' AS legal_authority,
         'nontax_criminal_investigation' AS purpose, '["name","address"]' AS data_elements,
         $items AS record_count, NULL AS taxpayer_tin
  FROM range($requests) a(r), (SELECT k, (['bq','bd','br','bx'])[1 + k] AS kind FROM range(4) b(k))
) TO $path (HEADER)
"""
# Each bulk request names `items` taxpayers; its disclosure carries every 25th of them.
_ITEMS_SQL = """
COPY (
  SELECT 'BULK-' || r AS request_id, CASE WHEN d THEN 'bd-' ELSE 'bq-' END || r AS event_id,
         n AS item_no,
         printf('%03d-%02d-%04d', (h // 1000000) % 1000, (h // 10000) % 100, h % 10000) AS taxpayer_tin,
         'irs-disclosure-ledger' AS source_system
  FROM (SELECT r, n, hash(r * 1000003 + n) % $population AS h
        FROM range($requests) a(r), range(1, $items + 1) b(n)),
       (SELECT false AS d UNION ALL SELECT true)
  WHERE NOT d OR n % 25 = 0
) TO $path (HEADER)
"""


def _write_logs(folder: Path, events: int, increment: int) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    population = max(events // 3, 1000)
    items = max(events // 20 // BULK_REQUESTS, 10)
    con = duckdb.connect()
    paths = {
        "history": folder / "events-history.csv",
        "bulk": folder / "events-bulk.csv",
        "items": folder / "request_items.csv",
        "increment": folder / "events-increment.csv",
    }
    history = events - increment - BULK_REQUESTS * 4
    for name, start, stop in (("history", 0, history), ("increment", history, events)):
        con.execute(
            _EVENT_SQL,
            {"start": start, "stop": stop, "population": population, "path": str(paths[name])},
        )
    con.execute(
        _BULK_EVENT_SQL,
        {"requests": BULK_REQUESTS, "items": items, "seq0": events, "path": str(paths["bulk"])},
    )
    con.execute(
        _ITEMS_SQL,
        {
            "requests": BULK_REQUESTS,
            "items": items,
            "population": population,
            "path": str(paths["items"]),
        },
    )
    con.close()
    return paths


def _timed(label: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> tuple[T, float]:
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    elapsed = time.perf_counter() - started
    print(f"{label:<58} {elapsed:8.2f}s", flush=True)
    return result, elapsed


def _ingest(con: duckdb.DuckDBPyConnection, paths: list[Path]) -> int:
    from dwatch.ingest import ingest_paths

    results = ingest_paths(con, paths)
    bad = [r for r in results if r.status != "loaded"]
    if bad:
        sys.exit(f"ingest failed: {bad[0].message}")
    return sum(r.rows_loaded for r in results)


def _refresh(con: duckdb.DuckDBPyConnection) -> IndexRefresh:
    from dwatch.accounting.index import refresh_index
    from dwatch.store import transaction

    with transaction(con):
        return refresh_index(con)


def _compact(con: duckdb.DuckDBPyConnection) -> None:
    from dwatch.accounting import index
    from dwatch.store import transaction

    with transaction(con):
        con.execute("UPDATE accounting_index_state SET sorted_entries = 0")
        saved, index.COMPACT_MIN_TAIL = index.COMPACT_MIN_TAIL, 0
        try:
            assert index._compact_if_due(con)
        finally:
            index.COMPACT_MIN_TAIL = saved


def _sample_tins(paths: dict[str, Path], count: int, seed: int) -> list[str]:
    con = duckdb.connect()
    tins = [
        r[0]
        for r in con.execute(
            "SELECT taxpayer_tin FROM read_csv(?, all_varchar = true) WHERE taxpayer_tin IS NOT NULL"
            " ORDER BY hash(event_id, ?) LIMIT ?",
            [str(paths["history"]), seed, count],
        ).fetchall()
    ]
    tins += [
        r[0]
        for r in con.execute(
            "SELECT taxpayer_tin FROM read_csv(?, all_varchar = true) WHERE event_id LIKE 'bd-%'"
            " ORDER BY hash(item_no, request_id, ?) LIMIT ?",
            [str(paths["items"]), seed, max(count // 10, 1)],
        ).fetchall()
    ]
    con.close()
    return tins


def _one_taxpayer(db: Path, tins: list[str]) -> list[float]:
    from dwatch.accounting.lookup import build_accounting, subjects_from_identifiers
    from dwatch.accounting.write import write_text
    from dwatch.pseudonym import resolve_key
    from dwatch.store import connect

    key = resolve_key()
    con = connect(db, read_only=True)
    times = []
    for tin in tins:
        started = time.perf_counter()
        write_text(build_accounting(con, subjects_from_identifiers([tin], key)))
        times.append(time.perf_counter() - started)
    con.close()
    return times


def _scan_without_index(db: Path, tins: list[str]) -> list[float]:
    from dwatch.pseudonym import pseudonymise, resolve_key

    key = resolve_key()
    con = duckdb.connect(str(db), read_only=True)
    times = []
    for tin in tins:
        ref = pseudonymise(tin, key)
        started = time.perf_counter()
        con.execute(
            "SELECT event_id FROM disclosure_events WHERE taxpayer_ref = $r"
            " UNION ALL SELECT event_id FROM request_items WHERE taxpayer_ref = $r",
            {"r": ref},
        ).fetchall()
        times.append(time.perf_counter() - started)
    con.close()
    return times


def _many(db: Path, ids_file: Path) -> int:
    """What `dwatch accounting --ids FILE --format csv --out F` does."""
    from dwatch.accounting.lookup import build_accounting, subjects_from_identifiers
    from dwatch.accounting.write import copy_csv
    from dwatch.pseudonym import resolve_key
    from dwatch.store import connect

    con = connect(db, read_only=True)
    lines = ids_file.read_text().splitlines()
    accounting = build_accounting(con, subjects_from_identifiers(lines, resolve_key()), fetch=False)
    rows = copy_csv(con, accounting, ids_file.with_suffix(".csv"))
    con.close()
    return rows


def _notification(db: Path, ids_file: Path) -> tuple[int, int]:
    from dwatch.accounting.affected import affected_taxpayers, match_identifiers
    from dwatch.pseudonym import resolve_key
    from dwatch.store import connect

    con = connect(db, read_only=True)
    found = affected_taxpayers(con, "alert", "al_bench_bulk")
    con.close()
    matched = match_identifiers(found, ids_file.read_text().splitlines(), resolve_key())
    return len(matched.taxpayers), matched.matched


def _seed_bulk_finding(db: Path) -> None:
    """One open finding listing every taxpayer the first bulk disclosure carried."""
    from dwatch.store import connect

    con = connect(db)
    con.execute(
        "INSERT INTO alerts (alert_id, detector_id, detector_kind, detector_version, severity,"
        " entity_type, entity_id, explanation) VALUES ('al_bench_bulk', 'bench', 'rule', '1',"
        " 'high', 'request', 'BULK-0', 'benchmark finding')"
    )
    con.execute(
        "INSERT INTO alert_subjects (alert_id, taxpayer_ref, reason, request_id, event_id, item_no,"
        " source_system) SELECT 'al_bench_bulk', taxpayer_ref, 'disclosed', request_id, event_id,"
        " item_no, source_system FROM request_items WHERE event_id LIKE 'bd-%'"
    )
    con.close()


def _summary(label: str, times: list[float]) -> None:
    print(
        f"{label:<58} median {statistics.median(times) * 1000:7.1f} ms,"
        f" max {max(times) * 1000:7.1f} ms over {len(times)}",
        flush=True,
    )


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench_accounting")
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--ids", type=int, default=100_000, help="identifiers in the file")
    parser.add_argument("--lookups", type=int, default=20, help="single-taxpayer lookups")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--dir", type=Path, default=None, help="Work folder (default: temp)")
    args = parser.parse_args(argv)

    os.environ.setdefault("DWATCH_PSEUDONYM_KEY", "benchmark-key-not-secret-0123456789")
    from dwatch.store import connect

    work = args.dir or Path(tempfile.mkdtemp(prefix="bench_accounting_"))
    work.mkdir(parents=True, exist_ok=True)
    db = work / "store.duckdb"
    try:
        increment = max(args.events // 100, 1000)
        paths, _ = _timed(
            f"write {args.events:,} synthetic events (untimed below)",
            _write_logs,
            work / "logs",
            args.events,
            increment,
        )
        con = connect(db)
        loaded, ingest_s = _timed(
            "dwatch ingest: history, bulk requests and their items",
            _ingest,
            con,
            [paths["history"], paths["bulk"], paths["items"]],
        )
        _, build_s = _timed("accounting index: build over the history", _refresh, con)
        _, inc_ingest_s = _timed(
            f"dwatch ingest: increment of {increment:,} events", _ingest, con, [paths["increment"]]
        )
        _, append_s = _timed("accounting index: append the increment", _refresh, con)
        _, compact_s = _timed("accounting index: rewrite in key order", _compact, con)
        entries = con.execute("SELECT count(*) FROM accounting_keys").fetchone()[0]  # type: ignore[index]
        events = con.execute("SELECT count(*) FROM disclosure_events").fetchone()[0]  # type: ignore[index]
        con.execute("CHECKPOINT")
        con.close()
        print(f"store: {events:,} events, {loaded:,} rows ingested; index: {entries:,} entries")
        print(f"ratio build / ingest of the same rows:    {build_s / ingest_s:.2f}")
        print(f"ratio append / ingest of the increment:   {append_s / inc_ingest_s:.2f}")
        print(
            f"ratio rewrite / ingest of the history:    {compact_s / ingest_s:.2f}"
            " (paid when the unsorted tail passes half the sorted part)"
        )

        tins = _sample_tins(paths, args.lookups, args.seed)
        _summary("one taxpayer, scan of taxpayer_ref (no index)", _scan_without_index(db, tins))
        _summary("one taxpayer, dwatch accounting lookup + text", _one_taxpayer(db, tins))
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "dwatch.cli", "--db", str(db), "accounting"],
            input=tins[0] + "\n",
            text=True,
            check=True,
            capture_output=True,
        )
        print(
            f"{'one taxpayer, whole dwatch accounting command':<58}"
            f" {time.perf_counter() - started:8.2f}s"
        )

        rng = random.Random(args.seed)
        known = _sample_tins(paths, int(args.ids * 0.9), args.seed + 1)
        unknown = [
            f"999-{rng.randrange(100):02d}-{rng.randrange(10000):04d}"
            for _ in range(args.ids - len(known))
        ]
        ids_file = work / "ids.txt"
        ids_file.write_text("\n".join(known + unknown) + "\n")
        rows, _ = _timed(
            f"{args.ids:,} identifiers: pseudonymise, look up, write CSV", _many, db, ids_file
        )
        print(f"  CSV rows: {rows:,}")
        _seed_bulk_finding(db)
        (listed, matched), _ = _timed(
            f"notification list of a bulk finding matched to {args.ids:,} ids",
            _notification,
            db,
            ids_file,
        )
        print(f"  affected taxpayers: {listed:,}; matched in the file: {matched:,}")
    finally:
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)
