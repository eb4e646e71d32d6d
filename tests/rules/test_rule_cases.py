"""Every rule's own should-fire / should-not-fire cases, discovered by scanning the rules."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from detectors.engine import Rule, RuleCase, evaluate_rules, load_case, load_rules
from dwatch.policy import Registry, load_registry, with_entries
from dwatch.store import connect

RULES = load_rules()
REGISTRY = load_registry()
CASES = [
    pytest.param(rule, case, id=f"{rule.id}::{case.name}") for rule in RULES for case in rule.cases
]


def _value(alert: dict[str, Any], key: str) -> Any:
    if key in alert:
        return alert[key]
    evidence = json.loads(alert["evidence"] or "{}")
    assert key in evidence, f"{key} is neither an alert column nor in the evidence"
    return evidence[key]


def _matches(alert: dict[str, Any], key: str, expected: Any) -> bool:
    if key.endswith("_include"):
        return set(expected) <= set(_value(alert, key.removesuffix("_include")) or [])
    if key == "explanation_contains":
        return all(part in alert["explanation"] for part in expected)
    return _value(alert, key) == expected


@pytest.fixture(scope="module")
def migrated_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated empty store, copied per case (migrating each time is the slow part)."""
    path = tmp_path_factory.mktemp("template") / "template.duckdb"
    connect(path).close()
    return path


@pytest.mark.parametrize(("rule", "case"), CASES)
def test_rule_case(rule: Rule, case: RuleCase, tmp_path: Path, migrated_store: Path) -> None:
    registry: Registry = (
        with_entries(REGISTRY, case.registry, label=f"case:{case.name}")
        if case.registry
        else REGISTRY
    )
    shutil.copy(migrated_store, tmp_path / "case.duckdb")
    con = connect(tmp_path / "case.duckdb")
    try:
        load_case(con, case)
        evaluate_rules(con, registry, [rule])
        cursor = con.execute(
            "SELECT c.*, coalesce((SELECT list(DISTINCT s.taxpayer_ref ORDER BY s.taxpayer_ref)"
            " FROM dw_candidates_subjects s WHERE s.alert_id = c.alert_id), []) AS subjects"
            " FROM dw_candidates c ORDER BY window_start, entity_id"
        )
        names = [d[0] for d in cursor.description]
        alerts = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    finally:
        con.close()
    shown = "\n".join(f"  - {a['explanation']}" for a in alerts)
    assert len(alerts) == case.alerts, (
        f"expected {case.alerts} alert(s), got {len(alerts)}:\n{shown}"
    )
    for alert in alerts:
        assert alert["detector_id"] == rule.id
        assert alert["registry_version"] == registry.version
        assert "{" not in alert["explanation"], alert["explanation"]
        for key, expected in case.expect.items():
            assert _matches(alert, key, expected), (
                f"{key}: {_value(alert, key.removesuffix('_include'))!r} vs {expected!r}"
            )
