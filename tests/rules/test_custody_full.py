"""A full judgement builds custody from rows written straight into the kept state
(detectors.custody_state.prepare_custody), never holding every receipt, disposal and use of
history as a temporary table: at 100M events those tables spilled about 29 GB.

What it derives must be what the temporary tables gave (detectors.custody.prepare_custody,
still used by a store without the state tables): the pairs, custody rows, emptied uses and
alerts of every custody rule's cases and of generated logs are compared between the two.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from detectors import custody_state
from detectors.engine import Rule, RuleCase, load_case, load_rules, prepare, run_rules
from dwatch.policy import Registry, load_registry, with_entries
from dwatch.store import connect, transaction

REGISTRY = load_registry()
KEY = "custody-full-test-key-0123456789abcdef"
# the tables the custody rules read, and what each is compared on
DERIVED = (
    "dw_reconciliation_pairs",
    "dw_custody",
    "dw_custody_emptied",
    "dw_custody_after_disposal",
)
STATE_TABLES = ("rule_recon_sides", "rule_custody_events")
CUSTODY_RULES = [
    r for r in load_rules() if any(name in (r.query or "") for name in ("dw_custody", "dw_recon"))
]
CASES = [
    pytest.param(rule, case, id=f"{rule.id}::{case.name}")
    for rule in CUSTODY_RULES
    for case in rule.cases
]


@pytest.fixture(scope="module")
def migrated_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.duckdb"
    connect(path).close()
    return path


def _rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple[Any, ...]]:
    return sorted(con.execute(sql).fetchall(), key=repr)


def _judged(
    con: duckdb.DuckDBPyConnection, registry: Registry, rules: list[Rule]
) -> dict[str, list[tuple[Any, ...]]]:
    """A full judgement's custody tables and open rule alerts (with their events)."""
    with transaction(con):
        run_rules(con, registry, run_id="full", rules=rules)
        out = {name: _rows(con, f"FROM {name}") for name in DERIVED}
    out["alerts"] = _rows(
        con,
        "SELECT alert_id, detector_id, entity_id, event_count, window_start, window_end,"
        " list_sort(event_ids), explanation FROM alerts WHERE status = 'open'",
    )
    out["events"] = _rows(con, "SELECT alert_id, source_system, event_id, role FROM alert_events")
    return out


def _without_state(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """The store as one without the state tables: custody held as temporary tables."""
    for table in STATE_TABLES:
        con.execute(f"DROP TABLE {table}")
    assert not custody_state.kept(con)
    return con


@pytest.mark.parametrize(("rule", "case"), CASES)
def test_rule_cases_judged_from_kept_rows_as_from_temporary_tables(
    rule: Rule, case: RuleCase, tmp_path: Path, migrated_store: Path
) -> None:
    registry = (
        with_entries(REGISTRY, case.registry, label=f"case:{case.name}")
        if case.registry
        else REGISTRY
    )
    judged = {}
    for how in ("kept", "temporary"):
        shutil.copy(migrated_store, tmp_path / f"{how}.duckdb")
        con = connect(tmp_path / f"{how}.duckdb")
        try:
            load_case(con, case)
            judged[how] = _judged(con if how == "kept" else _without_state(con), registry, [rule])
        finally:
            con.close()
    assert len({a[0] for a in judged["kept"]["alerts"]}) == case.alerts
    for part, rows in judged["temporary"].items():
        assert judged["kept"][part] == rows, part


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Generated logs (every scenario, the custody ones included), loaded once."""
    from dwatch.generate import generate
    from dwatch.ingest import ingest_paths

    root = tmp_path_factory.mktemp("custody-full")
    generate(root / "logs", events=3000, seed=13)
    con = connect(root / "store.duckdb")
    try:
        ingest_paths(con, sorted((root / "logs").glob("*.csv")), key=KEY.encode())
    finally:
        con.close()
    return root / "store.duckdb"


def test_generated_logs_judged_from_kept_rows_as_from_temporary_tables(
    generated: Path, tmp_path: Path
) -> None:
    judged = {}
    for how in ("kept", "temporary"):
        shutil.copy(generated, tmp_path / f"{how}.duckdb")
        con = connect(tmp_path / f"{how}.duckdb")
        try:
            judged[how] = _judged(
                con if how == "kept" else _without_state(con), REGISTRY, CUSTODY_RULES
            )
        finally:
            con.close()
    assert judged["kept"]["dw_reconciliation_pairs"], "the logs have reconciled transfers"
    assert judged["kept"]["alerts"], "the logs' custody scenarios fire"
    for part, rows in judged["temporary"].items():
        assert judged["kept"][part] == rows, part


USES = 400


@pytest.fixture
def held(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A holder's receipt, disposal and many reads (minute by minute from the day after the
    receipt; the disposal three hours in): most custody rows are uses."""
    con = connect(tmp_path / "held.duckdb")
    con.execute(
        "INSERT INTO disclosure_events (event_id, source_system, sequence_no, occurred_at,"
        " event_type, disclosing_agency, recipient_agency, actor_id, request_id, record_count,"
        " data_elements, ingest_run_id)"
        " SELECT *, ['name'], 'b1' FROM ("
        " SELECT 'U' || i, 'ftb-log', i + 3, TIMESTAMPTZ '2025-03-02 00:00:00+00' + to_minutes(i),"
        "  'access', 'IRS', 'CA-FTB', 'ftb.' || (i % 7), 'F-1', 1 FROM range($n) t(i)"
        " UNION ALL SELECT 'R1', 'ftb-log', 1, TIMESTAMPTZ '2025-03-01 12:00:00+00', 'receipt',"
        "  'IRS', 'CA-FTB', 'ftb.2', 'F-1', 5"
        " UNION ALL SELECT 'X1', 'ftb-log', 2, TIMESTAMPTZ '2025-03-02 03:00:00+00', 'disposal',"
        "  'IRS', 'CA-FTB', 'ftb.2', 'F-1', 5)",
        {"n": USES},
    )
    yield con
    con.close()


def _temporary_rows(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    names = [
        row[0]
        for row in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE temporary"
            " AND (table_name LIKE 'dw_custody%' OR table_name LIKE 'dw_recon%')"
        ).fetchall()
    ]
    counts = {}
    for name in names:
        row = con.execute(f"SELECT count(*) FROM temp.{name}").fetchone()
        counts[name] = int(row[0]) if row else 0
    return counts


def test_a_full_judgement_holds_no_temporary_row_per_use(
    held: duckdb.DuckDBPyConnection,
) -> None:
    # a row of an earlier derivation, which the rebuild must not keep
    held.execute("INSERT INTO rule_custody_events (event_id, event_type) VALUES ('OLD', 'access')")
    with transaction(held):
        prepare(held, REGISTRY, log_order=False)
        temporary = _temporary_rows(held)
        emptied = held.execute("SELECT count(*) FROM dw_custody_emptied").fetchone()
    kept = held.execute(
        "SELECT count(*), count(*) FILTER (event_id = 'OLD') FROM rule_custody_events"
    )
    assert kept.fetchone() == (2, 0), "the receipt and the disposal are kept, once; no use"
    reach = held.execute("SELECT holder_code, log_last_at FROM rule_custody_reach").fetchall()
    last_use = held.execute("SELECT max(occurred_at) FROM disclosure_events").fetchone()
    assert reach == [("CA-FTB", last_use[0] if last_use else None)], "the holder's log reaches"
    # the uses after the disposal (minutes 181 on) are read back from the store; no other
    # temporary table holds more than the receipts and disposals
    assert emptied == (USES - 181,)
    assert {name: n for name, n in temporary.items() if n > 2} == {"dw_custody_emptied": USES - 181}
