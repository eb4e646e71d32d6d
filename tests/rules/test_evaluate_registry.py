"""`dwatch evaluate` judges a generated world with the agreements the generator invented."""

from __future__ import annotations

from dwatch.evaluate import rule_registry
from dwatch.policy import load_registry

_AGREEMENT = {
    "id": "gen-agreement-0001",
    "title": "generated data-sharing agreement",
    "kind": "mou",
    "parties": ["AGENCY-A", "AGENCY-B"],
    "authorities": [load_registry().authorities[0].id],
    "effective_from": "2024-01-01",
    "effective_to": "2024-06-30",
    "status_history": [
        {"status": "in_force", "from": "2024-01-01"},
        {"status": "suspended", "from": "2024-03-01"},
    ],
    "sources": [{"cite": "generated agreement inventory"}],
}


def test_registry_patch_from_ground_truth_is_applied() -> None:
    truth = {"reference": {"registry_patch": {"agreements": [_AGREEMENT]}}}
    registry = rule_registry(truth)
    ids = {a.id for a in registry.agreements}
    assert "gen-agreement-0001" in ids
    # the base registry's agreements are kept, and the copy gets its own version
    assert {a.id for a in load_registry().agreements} <= ids
    assert registry.version != load_registry().version


def test_without_a_patch_the_base_registry_is_used() -> None:
    registry = rule_registry({"reference": {}})
    assert [a.id for a in registry.agreements] == [a.id for a in load_registry().agreements]
