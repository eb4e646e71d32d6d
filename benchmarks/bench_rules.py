"""The full rule catalog over N events, against DuckDB's own load of the same CSV.

The floor every DuckDB pipeline pays is reading the events from CSV into a database file
(``CREATE TABLE AS SELECT * FROM read_csv(...)``). This measures, in the same run and on
the same events, the whole detect step (registry sync, authority refresh, views, every
rule, the merge into ``alerts``) and prints detect / load. Target: at most 1.

Events come from dwatch.generate (the synthetic world with its scenarios) unless
``--synthetic`` asks for a vectorised DuckDB-SQL table instead. The canonical store is
built from the same CSV with set-wise SQL (untimed: that is ingest's benchmark), with
authority ids and address verdicts derived per distinct value as ingest derives them.

    python -m benchmarks rules                       # 5,000,000 events
    python -m benchmarks rules -- --events 200000    # quicker
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import duckdb

from detectors.engine import load_rules, run_rules
from dwatch.address import vocabulary_of
from dwatch.address_verdicts import refresh_address_verdicts
from dwatch.policy import load_registry, normalise_citation
from dwatch.pseudonym import hmac_pads, resolve_key, sql_pseudonymise
from dwatch.store import connect, transaction

_CANONICAL = (
    "event_id, source_system, sequence_no, occurred_at, event_type, disclosing_agency,"
    " recipient_agency, actor_id, actor_role, request_id, legal_authority, purpose,"
    " data_elements, record_count, taxpayer_ref, channel, encrypted, agreement_id,"
    " case_number, description, outcome"
)


def _generated_csv(out: Path, events: int, seed: int) -> tuple[str, str | None]:
    from dwatch.generate import generate

    generate(out, events=events, seed=seed, fmt="csv", scale=0.01)
    items = out / "request_items.csv"
    return str(out / "events-*.csv"), str(items) if items.exists() else None


def _synthetic_csv(out: Path, events: int, seed: int) -> tuple[str, str | None]:
    """A vectorised synthetic log: bulk and individual flows, uses, a few odd events."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "events-synthetic.csv"
    con = duckdb.connect()
    con.execute("SELECT setseed(?)", [1.0 / (seed + 2)])
    con.execute(
        """
        COPY (
          WITH base AS (
            SELECT i, random() AS u, random() AS v, (i % 64) AS src FROM range(?) t(i)
          )
          SELECT 'E' || i AS event_id,
                 'log-' || src AS source_system,
                 i // 64 + 1 AS sequence_no,
                 strftime(TIMESTAMP '2025-01-01' + to_seconds(CAST(i * 11 AS BIGINT)), '%Y-%m-%dT%H:%M:%SZ') AS occurred_at,
                 CASE WHEN u < 0.3 THEN 'disclosure' WHEN u < 0.999 THEN 'access' ELSE 'redisclosure' END AS event_type,
                 'IRS' AS disclosing_agency,
                 (['CA-FTB', 'NY-DTF', 'TX-CPA', 'SSA', 'CENSUS', 'DOJ-FBI', 'TX-OAG-CSD', 'ZZ-NEW'])[1 + (i % 8)] AS recipient_agency,
                 'user.' || (i % 5000) AS actor_id,
                 'analyst' AS actor_role,
                 'R-' || (i % 8) AS request_id,
                 (['IRC 6103(d)(1)', '26 U.S.C. 6103(d)', '26 USC 6103(d)', '6103(l)(1)', '26 U.S.C. 6103(j)(1)',
                   'IRC 6103(i)(2)', '26 U.S.C. 6103(l)(6)', 'per agreement'])[1 + (i % 8)] AS legal_authority,
                 (['state_tax_administration', 'state_tax_administration', 'state_tax_administration',
                   'social_security_administration', 'statistical', 'nontax_criminal_investigation',
                   'child_support_enforcement', 'other'])[1 + (i % 8)] AS purpose,
                 CASE WHEN v < 0.5 THEN '["name","address","tin"]' ELSE '["tin","income"]' END AS data_elements,
                 CASE WHEN v < 0.001 THEN 50000 ELSE 1 END AS record_count,
                 '666-' || lpad(CAST(i % 97 AS VARCHAR), 2, '0') || '-' || lpad(CAST(i % 9973 AS VARCHAR), 4, '0') AS taxpayer_tin,
                 CASE WHEN v < 0.0005 THEN 'email' ELSE 'sftp' END AS channel,
                 true AS encrypted,
                 'AGR-' || (i % 8) AS agreement_id,
                 NULL AS case_number,
                 'synthetic' AS description,
                 'success' AS outcome
          FROM base
        ) TO ? (HEADER)
        """,
        [events, str(path)],
    )
    con.close()
    return str(path), None


def _baseline_load(csv_glob: str, db: Path) -> float:
    """DuckDB's own load of the same events from CSV into a database file."""
    if db.exists():
        db.unlink()
    con = duckdb.connect(str(db))
    started = time.perf_counter()
    con.execute(
        "CREATE TABLE events AS SELECT * FROM read_csv(?, union_by_name = true)", [csv_glob]
    )
    con.execute("CHECKPOINT")
    elapsed = time.perf_counter() - started
    con.close()
    return elapsed


def _build_store(csv_glob: str, items_csv: str | None, db: Path) -> int:
    """Canonical store from the same CSV, set-wise (ingest has its own benchmark)."""
    if db.exists():
        db.unlink()
    key = resolve_key(allow_demo=True)
    ipad, opad = hmac_pads(key)
    registry = load_registry()
    con = connect(db)
    with transaction(con):
        con.execute(
            "CREATE TEMP TABLE raw AS SELECT * FROM read_csv(?, union_by_name = true, all_varchar = true)",
            [csv_glob],
        )
        ref = sql_pseudonymise("taxpayer_tin")
        con.execute(
            f"""
            INSERT INTO disclosure_events ({_CANONICAL})
            SELECT event_id, source_system, CAST(sequence_no AS BIGINT), CAST(occurred_at AS TIMESTAMPTZ),
                   lower(event_type), upper(disclosing_agency), upper(recipient_agency), actor_id,
                   lower(actor_role), request_id, legal_authority, lower(purpose),
                   CAST(from_json(data_elements, '["VARCHAR"]') AS VARCHAR[]),
                   CAST(record_count AS BIGINT), {ref}, lower(channel), CAST(encrypted AS BOOLEAN),
                   agreement_id, case_number, description, lower(outcome)
            FROM raw
            """,
            {"ipad": ipad, "opad": opad},
        )
        # authority_id as ingest derives it (DISTINCT values through the normaliser)
        distinct = con.execute(
            "SELECT DISTINCT legal_authority FROM raw WHERE legal_authority IS NOT NULL"
        ).fetchall()
        con.execute("CREATE TEMP TABLE amap (legal_authority VARCHAR, authority_id VARCHAR)")
        con.executemany(
            "INSERT INTO amap VALUES (?, ?)",
            [(t, normalise_citation(t, registry)) for (t,) in distinct],
        )
        con.execute(
            "UPDATE disclosure_events e SET authority_id = m.authority_id FROM amap m"
            " WHERE e.legal_authority = m.legal_authority"
        )
        if items_csv:
            con.execute(
                f"""
                INSERT INTO request_items (request_id, event_id, item_no, taxpayer_ref, supplied_name,
                       supplied_address, tax_periods, statute, reason, match_method, source_system)
                SELECT request_id, event_id, CAST(item_no AS BIGINT), {ref}, supplied_name,
                       supplied_address, tax_periods, statute, reason, match_method, source_system
                FROM read_csv($items, all_varchar = true)
                """,
                {"ipad": ipad, "opad": opad, "items": items_csv},
            )
        # address verdicts as ingest makes them (each distinct supplied address once)
        started = time.perf_counter()
        judged = refresh_address_verdicts(con, vocabulary_of(registry))
        print(
            f"address verdicts (ingest's share, untimed below): {judged:,} distinct addresses"
            f" judged in {time.perf_counter() - started:.2f}s"
        )
    row = con.execute("SELECT count(*) FROM disclosure_events").fetchone()
    con.execute("CHECKPOINT")
    con.close()
    return int(row[0]) if row else 0


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench_rules")
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--synthetic", action="store_true", help="SQL-generated events")
    parser.add_argument("--dir", type=Path, default=None, help="Work folder (default: temp)")
    args = parser.parse_args(argv)

    os.environ.setdefault("DWATCH_PSEUDONYM_KEY", "benchmark-key-not-secret-0123456789")
    work = args.dir or Path(tempfile.mkdtemp(prefix="bench_rules_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        started = time.perf_counter()
        try:
            if args.synthetic:
                raise ImportError
            csv_glob, items = _generated_csv(work / "logs", args.events, args.seed)
            source = "dwatch.generate"
        except ImportError:
            csv_glob, items = _synthetic_csv(work / "logs", args.events, args.seed)
            source = "synthetic SQL"
        n_files = len(list(Path(csv_glob).parent.glob(Path(csv_glob).name)))
        print(
            f"events: {args.events:,} from {source} in {n_files} CSV file(s)"
            f" ({time.perf_counter() - started:.1f}s)"
        )

        load_s = _baseline_load(csv_glob, work / "baseline.duckdb")
        n = _build_store(csv_glob, items, work / "store.duckdb")
        print(f"store: {n:,} events")

        registry = load_registry()
        rules = load_rules()
        con = connect(work / "store.duckdb")
        started = time.perf_counter()
        with transaction(con):
            result = run_rules(con, registry, run_id="bench", rules=rules)
        detect_s = time.perf_counter() - started
        con.close()

        rules_s = sum(r.seconds for r in result.rules)
        print(f"\n{'rule':<36} {'seconds':>8} {'findings':>9}")
        for run in sorted(result.rules, key=lambda r: -r.seconds):
            print(f"{run.rule_id:<36} {run.seconds:8.2f} {run.findings:9,}")
        print(f"{'(all rules)':<36} {rules_s:8.2f} {result.findings:9,}")
        print(f"\nDuckDB CSV -> database file (CREATE TABLE AS read_csv): {load_s:8.2f}s")
        print(f"detect (sync, refresh, views, {len(rules)} rules, merge):      {detect_s:8.2f}s")
        print(f"ratio detect / load: {detect_s / load_s:.2f}  (target <= 1)")
    finally:
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)
