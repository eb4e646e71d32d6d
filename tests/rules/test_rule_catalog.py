"""Meta-tests over the whole rule catalog, discovered by scanning detectors/rules/."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from detectors.engine import RULES_DIR, Rule, evaluate_rules, load_rule, load_rules
from dwatch.errors import RuleError
from dwatch.policy import load_registry
from dwatch.store import connect

RULES = load_rules()
REGISTRY = load_registry()
BY_ID = pytest.mark.parametrize("rule", RULES, ids=[r.id for r in RULES])


def test_the_catalog_is_discovered_and_ids_are_unique() -> None:
    ids = [r.id for r in RULES]
    assert len(ids) == len(set(ids))
    assert len(ids) == len([p for p in RULES_DIR.glob("*.yaml") if not p.name.startswith("_")])
    assert len(ids) >= 20


@BY_ID
def test_id_matches_file_name(rule: Rule) -> None:
    assert rule.path is not None and rule.path.stem == rule.id


@BY_ID
def test_citations_exist_in_the_registry(rule: Rule) -> None:
    for citation in rule.citations:
        assert REGISTRY.citation_exists(citation), f"{rule.id} cites unknown {citation!r}"


@BY_ID
def test_has_positive_and_negative_cases(rule: Rule) -> None:
    assert any(c.should_fire for c in rule.cases), f"{rule.id} has no should-fire case"
    assert any(not c.should_fire for c in rule.cases), f"{rule.id} has no should-not-fire case"


def test_template_fields_and_dedup_keys_are_returned_by_every_query(tmp_path: Path) -> None:
    # The engine refuses a rule whose query lacks a named column; on an empty store every
    # rule must compile, bind its parameters and return its columns.
    con = connect(tmp_path / "empty.duckdb")
    try:
        runs = evaluate_rules(con, REGISTRY, RULES)
        names = {r[0] for r in con.execute("DESCRIBE dw_candidates").fetchall()}
    finally:
        con.close()
    assert [r.rule_id for r in runs] == [r.id for r in RULES]
    assert all(r.findings == 0 for r in runs)
    assert {"alert_id", "explanation", "citations", "registry_version"} <= names


# Law is data: no agency code, statute, docket or date literal in rule SQL or the engine.
def _forbidden_terms() -> list[str]:
    terms = {r.code for r in REGISTRY.recipients}
    terms |= {alias.upper() for r in REGISTRY.recipients for alias in r.aliases}
    terms |= {o.docket for o in REGISTRY.court_orders} | {o.id for o in REGISTRY.court_orders}
    terms |= {a.id for a in REGISTRY.agreements}
    return sorted(t for t in terms if len(t) >= 3)


_LAW_PATTERNS = [
    re.compile(r"\b\d{4}-\d{2}-\d{2}\b"),  # a date
    re.compile(r"\b(6103|552a|7213|USC|U\.S\.C)\b", re.IGNORECASE),  # a statute
]


@pytest.mark.parametrize(
    "path",
    [
        *sorted(RULES_DIR.glob("*.sql")),
        RULES_DIR.parent / "engine.py",
        RULES_DIR.parent / "evidence.py",
    ],
    ids=lambda p: p.name,
)
def test_code_names_no_agency_statute_or_date(path: Path) -> None:
    text = "\n".join(
        line.split("--")[0] if path.suffix == ".sql" else line
        for line in path.read_text(encoding="utf-8").splitlines()
    )
    if path.suffix == ".py":
        # docstrings and comments may explain; only string literals in code matter here
        text = re.sub(r'"""[\s\S]*?"""', "", text)
        text = "\n".join(line.split("#")[0] for line in text.splitlines())
    for pattern in _LAW_PATTERNS:
        assert not pattern.search(text), f"{path.name}: {pattern.search(text)}"
    for term in _forbidden_terms():
        assert not re.search(rf"(?<![\w-]){re.escape(term)}(?![\w-])", text), (
            f"{path.name} names {term!r}"
        )


def _write_rule(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(body, encoding="utf-8")
    return path


_MINIMAL = """
id: {id}
title: t
severity: low
citations: [26 USC 6103(a)]
entity: event
query: SELECT 'x' AS entity_id, ['e'] AS event_ids, now() AS window_start, now() AS window_end, 'k' AS k
explanation: "{{k}}"
dedup_key: [k]
"""


def test_a_rule_whose_id_differs_from_its_file_name_is_refused(tmp_path: Path) -> None:
    path = _write_rule(tmp_path, "right_name", _MINIMAL.format(id="wrong_name"))
    with pytest.raises(RuleError) as err:
        load_rule(path)
    assert "right_name.yaml" in str(err.value) and "id" in str(err.value)


def test_an_unknown_key_and_a_bad_severity_name_file_and_key(tmp_path: Path) -> None:
    body = _MINIMAL.format(id="r").replace("severity: low", "severity: urgent\ncolour: red")
    with pytest.raises(RuleError) as err:
        load_rule(_write_rule(tmp_path, "r", body))
    text = str(err.value)
    assert "r.yaml" in text and "severity" in text and "colour" in text


def test_a_template_field_the_query_does_not_return_is_refused(tmp_path: Path) -> None:
    body = _MINIMAL.format(id="r").replace('"{k}"', '"{k} {missing_field}"')
    rule = load_rule(_write_rule(tmp_path, "r", body))
    con = connect(tmp_path / "s.duckdb")
    try:
        with pytest.raises(RuleError) as err:
            evaluate_rules(con, REGISTRY, [rule])
    finally:
        con.close()
    assert "missing_field" in str(err.value) and "r.yaml" in str(err.value)


def test_a_citation_missing_from_the_registry_is_refused(tmp_path: Path) -> None:
    body = _MINIMAL.format(id="r").replace("26 USC 6103(a)", "26 USC 9999(z)")
    rule = load_rule(_write_rule(tmp_path, "r", body))
    con = connect(tmp_path / "s.duckdb")
    try:
        with pytest.raises(RuleError, match="not in the policy registry"):
            evaluate_rules(con, REGISTRY, [rule])
    finally:
        con.close()


def test_an_undefined_parameter_is_refused(tmp_path: Path) -> None:
    body = _MINIMAL.format(id="r").replace("'k' AS k", "$nowhere AS k")
    rule = load_rule(_write_rule(tmp_path, "r", body))
    con = connect(tmp_path / "s.duckdb")
    try:
        with pytest.raises(RuleError, match=r"\$nowhere"):
            evaluate_rules(con, REGISTRY, [rule])
    finally:
        con.close()


def test_a_new_rule_file_is_picked_up_without_editing_a_list(tmp_path: Path) -> None:
    rules_dir = tmp_path / "rules"
    shutil.copytree(RULES_DIR, rules_dir)
    _write_rule(rules_dir, "brand_new", _MINIMAL.format(id="brand_new"))
    assert "brand_new" in {r.id for r in load_rules(rules_dir)}
