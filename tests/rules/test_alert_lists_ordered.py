"""Every list an alert shows (its citations, the lists in its evidence and explanation) and
every value it picks from several rows come out the same whatever order the store holds
the rows in: a rule's ``list(DISTINCT ...)``, ``list_distinct`` or ``any_value`` has no
order of its own, and an alert that reads differently on each run is updated each run
(and compared unequal by :mod:`tests.rules.test_scoped_cases`).

Each firing case is loaded once in its own order and once reversed (the same event ids,
sequence numbers and item numbers), judged in full, and the alerts compared column by
column."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from detectors.engine import Rule, RuleCase, load_case, load_rules, run_rules
from dwatch.policy import Registry, load_registry, with_entries
from dwatch.store import connect, transaction
from tests.rules.test_scoped_cases import _numbered

RULES = load_rules()
REGISTRY = load_registry()
CASES = [
    pytest.param(rule, case, id=f"{rule.id}::{case.name}")
    for rule in RULES
    for case in rule.cases
    if case.alerts > 0
]
# What an alert shows; the run ids and detection times differ by construction.
SHOWN = (
    "alert_id, severity, score, entity_type, entity_id, disclosing_agency, recipient_agency,"
    " request_id, actor_id, source_system, window_start, window_end, event_ids, event_count,"
    " subjects_affected, records_affected, CAST(evidence AS VARCHAR) AS evidence, citations,"
    " explanation"
)


@pytest.fixture(scope="module")
def migrated_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.duckdb"
    connect(path).close()
    return path


def _reversed(case: RuleCase) -> RuleCase:
    """The case's rows stored in the opposite order, each keeping its ids and numbers."""
    items = [{"item_no": n, **i} for n, i in enumerate(case.request_items, start=1)]
    return case.model_copy(
        update={
            "events": list(reversed(_numbered(case))),
            "request_items": list(reversed(items)),
            "quarantine": list(reversed(case.quarantine)),
        }
    )


def _shown(path: Path, case: RuleCase, rule: Rule, registry: Registry) -> list[dict[str, Any]]:
    con = connect(path)
    try:
        load_case(con, case)
        with transaction(con):
            run_rules(con, registry, run_id="ordered", rules=[rule])
        cursor = con.execute(f"SELECT {SHOWN} FROM alerts ORDER BY alert_id")
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    finally:
        con.close()


@pytest.mark.parametrize(("rule", "case"), CASES)
def test_an_alert_reads_the_same_whatever_order_its_rows_are_stored_in(
    rule: Rule, case: RuleCase, tmp_path: Path, migrated_store: Path
) -> None:
    registry: Registry = (
        with_entries(REGISTRY, case.registry, label=f"case:{case.name}")
        if case.registry
        else REGISTRY
    )
    shutil.copy(migrated_store, tmp_path / "forward.duckdb")
    shutil.copy(migrated_store, tmp_path / "backward.duckdb")
    numbered = case.model_copy(update={"events": _numbered(case)})
    forward = _shown(tmp_path / "forward.duckdb", numbered, rule, registry)
    backward = _shown(tmp_path / "backward.duckdb", _reversed(case), rule, registry)
    assert forward, "the case fires"
    assert [a["alert_id"] for a in backward] == [a["alert_id"] for a in forward]
    for ahead, behind in zip(forward, backward, strict=True):
        differ = {k: (ahead[k], behind[k]) for k in ahead if ahead[k] != behind[k]}
        assert not differ, f"{ahead['alert_id']}: {differ}"


def test_a_rule_citing_several_authorities_lists_its_own_first_then_the_rest_sorted(
    tmp_path: Path, migrated_store: Path
) -> None:
    """The citations list: the rule's own in the order its YAML gives them, then every
    other registry id its findings cite, sorted (an order that can fail: reversed input)."""
    rule = next(r for r in RULES if r.id == "data_elements_not_permitted")
    case = next(c for c in rule.cases if c.expect.get("citations_include"))
    shutil.copy(migrated_store, tmp_path / "s.duckdb")
    [alert] = _shown(tmp_path / "s.duckdb", _reversed(case), rule, REGISTRY)
    own = [c for c in alert["citations"] if c in rule.citations]
    rest = alert["citations"][len(own) :]
    assert own == [c for c in rule.citations if c in own]
    assert alert["citations"][: len(own)] == own
    assert rest == sorted(rest) and len(rest) >= 2, alert["citations"]
    assert len(set(alert["citations"])) == len(alert["citations"])
