"""Every rule's own should-fire / should-not-fire cases, discovered by scanning the rules."""

from __future__ import annotations

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


def _matches(alert: dict[str, Any], key: str, expected: Any) -> bool:
    if key.endswith("_include"):
        return set(expected) <= set(alert[key.removesuffix("_include")] or [])
    if key == "explanation_contains":
        return all(part in alert["explanation"] for part in expected)
    return alert[key] == expected


@pytest.mark.parametrize(("rule", "case"), CASES)
def test_rule_case(rule: Rule, case: RuleCase, tmp_path: Path) -> None:
    registry: Registry = (
        with_entries(REGISTRY, case.registry, label=f"case:{case.name}")
        if case.registry
        else REGISTRY
    )
    con = connect(tmp_path / "case.duckdb")
    try:
        load_case(con, case)
        evaluate_rules(con, registry, [rule])
        cursor = con.execute("SELECT * FROM dw_candidates ORDER BY window_start, entity_id")
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
                f"{key}: {alert.get(key.removesuffix('_include'))!r} vs {expected!r}"
            )
