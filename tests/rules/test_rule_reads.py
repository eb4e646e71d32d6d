"""A history rule judged through its ``reads`` (detectors.scoped) finds what it finds over
the whole store: on every case of every such rule, and on cases with other logs' rows
around them that the predicate leaves out."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import duckdb
import pytest

from detectors.engine import Rule, RuleCase, load_case, load_rules, prepare, run_rules
from detectors.scoped import _judge_through_reads, read_rows_sql
from dwatch.policy import Registry, load_registry, with_entries
from dwatch.store import connect, transaction

REGISTRY = load_registry()
READING = [r for r in load_rules() if r.reads]
CASES = [pytest.param(r, c, id=f"{r.id}::{c.name}") for r in READING for c in r.cases]
# rows of other kinds in the same store, which a rule's reads must not need
NOISE = [
    {"event_id": "N1", "source_system": "noise-log", "event_type": "access",
     "occurred_at": "2025-04-01T10:00:00Z", "recipient_agency": "CA-FTB", "request_id": "R-N"},
    {"event_id": "N2", "source_system": "noise-log", "event_type": "disclosure",
     "occurred_at": "2025-04-02T10:00:00Z", "recipient_agency": "CA-FTB", "request_id": "R-N",
     "legal_authority": "IRC 6103(d)"},
]  # fmt: skip


@pytest.fixture(scope="module")
def migrated_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.duckdb"
    connect(path).close()
    return path


def _alerts(con: duckdb.DuckDBPyConnection) -> list[Any]:
    return sorted(
        con.execute(
            "SELECT alert_id, event_count, window_start, window_end, list_sort(event_ids),"
            " records_affected, subjects_affected, explanation, CAST(evidence AS VARCHAR)"
            " FROM alerts WHERE status = 'open'"
        ).fetchall(),
        key=repr,
    )


def _judged(store: Path, rule: Rule, case: RuleCase, registry: Registry, *, reads: bool) -> Any:
    con = connect(store)
    try:
        load_case(con, case)
        with transaction(con):
            if reads:
                # as in a run: every row's citation was read when its batch was new
                prepare(con, registry)
                _judge_through_reads(con, registry, rule, "reads")
            else:
                run_rules(con, registry, run_id="full", rules=[rule])
        return _alerts(con)
    finally:
        con.close()


def test_rules_that_read_all_history_say_what_they_read() -> None:
    assert {r.id for r in READING} >= {"implausible_attestation", "redisclosure_forbidden"}
    assert all(r.history for r in READING), "reads narrows history rules only"


@pytest.mark.parametrize("noise", [False, True], ids=["case", "case+noise"])
@pytest.mark.parametrize(("rule", "case"), CASES)
def test_judged_through_reads_equals_all_history(
    rule: Rule, case: RuleCase, noise: bool, tmp_path: Path, migrated_store: Path
) -> None:
    registry = (
        with_entries(REGISTRY, case.registry, label=f"case:{case.name}")
        if case.registry
        else REGISTRY
    )
    if noise:
        case = case.model_copy(update={"events": [*case.events, *NOISE]})
    stores = [tmp_path / "full.duckdb", tmp_path / "reads.duckdb"]
    for store in stores:
        shutil.copy(migrated_store, store)
    full = _judged(stores[0], rule, case, registry, reads=False)
    assert len(full) == case.alerts
    assert _judged(stores[1], rule, case, registry, reads=True) == full


def test_reads_given_as_a_list_selects_what_any_item_selects_once_in_store_order(
    tmp_path: Path,
) -> None:
    """Each item of a ``reads`` list is scanned alone (detectors.scoped.read_rows_sql): the
    union holds every row one of them selects, a row two select once, in the store's order,
    as the items joined by OR select them; two rows alike in every column stay two."""
    con = connect(tmp_path / "store.duckdb")
    try:
        rows = [("E1", "redisclosure", "R1"), ("E2", "disclosure", "R1"),
                ("E3", "access", "R2"), ("E4", "disclosure", None),
                ("E5", "redisclosure", None), ("E2", "disclosure", "R1")]  # fmt: skip
        events = [{"event_id": i, "event_type": t, "request_id": r, "sequence_no": 1}
                  for i, t, r in rows]  # fmt: skip
        load_case(con, RuleCase(name="rows", alerts=0, events=events))
        predicates = [
            "e.event_type = 'redisclosure'",
            "e.request_id IN (SELECT r.request_id FROM disclosure_events r"
            " WHERE r.event_type = 'redisclosure')",
        ]
        one_scan = con.execute(
            f"SELECT e.event_id FROM disclosure_events e WHERE {' OR '.join(predicates)}"
        ).fetchall()
        union = con.execute(read_rows_sql(predicates)).fetchall()
        assert [r[0] for r in union] == [r[0] for r in one_scan] == ["E1", "E2", "E5", "E2"]
        columns = [c[0] for c in con.execute("DESCRIBE disclosure_events").fetchall()]
        assert len(union[0]) == len(columns), "the rows come out as the store's columns"
        assert con.execute(read_rows_sql(predicates[:1])).fetchall() == [union[0], union[2]]
    finally:
        con.close()


def test_a_reads_list_item_must_be_a_predicate() -> None:
    rule = next(r for r in READING if isinstance(r.reads, list))
    assert len(rule.read_predicates) > 1
    for bad in ([], ["  "]):
        with pytest.raises(ValueError, match="reads"):
            Rule.model_validate({**rule.model_dump(), "reads": bad})
