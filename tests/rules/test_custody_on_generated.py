"""Custody rules on generated logs, judged under the generated agreements' disposal clause:
every injected reconciliation or retention instance is found by its rule, and no custody
finding names a lawful event - neither background reads between a disposal and the next
batch nor the ledger's labelled corrections."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from detectors.engine import detect_rules
from dwatch.generate import generate
from dwatch.ingest import ingest_paths
from dwatch.policy import load_registry, with_entries
from dwatch.store import connect

CUSTODY_RULES = {
    "transfer_not_received",
    "receipt_without_disclosure",
    "record_count_mismatch",
    "receipt_late",
    "retention_exceeded",
    "use_after_disposal",
}
# each injected scenario and the rule that must name it
FOUND_BY = {
    "transfer_never_received": "transfer_not_received",
    "receipt_without_disclosure": "receipt_without_disclosure",
    "record_count_mismatch": "record_count_mismatch",
    "retention_exceeded": "retention_exceeded",
    "use_after_disposal": "use_after_disposal",
}


@pytest.fixture(scope="module")
def judged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    import os

    os.environ.setdefault("DWATCH_PSEUDONYM_KEY", "test-key-not-secret-0123456789abcdef")
    root = tmp_path_factory.mktemp("custody")
    # small enough that the monthly schedule is thinned past the disposal clause (gaps in
    # what recipients hold), with two instances of each custody scenario
    result = generate(
        root / "logs",
        events=20_000,
        seed=5,
        scale=0.004,
        scenarios={name: 2 for name in FOUND_BY},
    )
    truth = json.loads(Path(result.ground_truth).read_text(encoding="utf-8"))
    registry = with_entries(load_registry(), truth["reference"]["registry_patch"])
    db = root / "store.duckdb"
    con = connect(db)
    try:
        ingest_paths(con, [str(p) for p in result.files])
        detect_rules(con, registry=registry, run_id="custody-1")
        alerts = con.execute(
            "SELECT a.alert_id, a.detector_id, a.explanation,"
            " list((e.source_system, e.event_id)) FROM alerts a"
            " JOIN alert_events e USING (alert_id)"
            " WHERE a.status = 'open' AND list_contains(?, a.detector_id) GROUP BY ALL",
            [sorted(CUSTODY_RULES)],
        ).fetchall()
        disposals = con.execute(
            "SELECT count(*) FROM disclosure_events WHERE event_type = 'disposal'"
        ).fetchone()
    finally:
        con.close()
    yield {"truth": truth, "alerts": alerts, "disposals": disposals[0] if disposals else 0}


def _scenario_of(truth: dict[str, Any]) -> dict[tuple[str, str], str]:
    return {(s, e): inst["instance_id"] for inst in truth["instances"] for s, e in inst["events"]}


def test_no_custody_finding_names_a_lawful_event(judged: dict[str, Any]) -> None:
    truth = judged["truth"]
    scenario_of = _scenario_of(truth)
    corrections = {tuple(e) for e in truth["noise"]["corrections"]}
    assert corrections and judged["disposals"] > 20  # the lawful situations are there
    for _, detector, explanation, events in judged["alerts"]:
        keys = {(s, e) for s, e in events}
        assert keys <= set(scenario_of), (detector, explanation, keys - set(scenario_of))
        assert not keys & corrections


def test_every_injected_custody_instance_is_found(judged: dict[str, Any]) -> None:
    scenario_of = _scenario_of(judged["truth"])
    found: dict[str, set[str]] = {}
    for _, detector, _, events in judged["alerts"]:
        for key in events:
            if tuple(key) in scenario_of:
                found.setdefault(scenario_of[tuple(key)], set()).add(detector)
    instances = [i for i in judged["truth"]["instances"] if i["scenario"] in FOUND_BY]
    assert len(instances) == 2 * len(FOUND_BY)
    for inst in instances:
        assert FOUND_BY[inst["scenario"]] in found.get(inst["instance_id"], set()), inst
