"""End to end on generated data: generate -> ingest -> detect, checked against ground truth."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from detectors.engine import detect_rules
from dwatch.generate import generate
from dwatch.ingest import ingest_paths
from dwatch.policy import DEFAULT_REGISTRY_DIR, Registry, load_registry, with_entries
from dwatch.store import connect

LOG_INTEGRITY = {"sequence_gap", "duplicate_events", "out_of_order_timestamps"}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    import os

    os.environ.setdefault("DWATCH_PSEUDONYM_KEY", "test-key-not-secret-0123456789abcdef")
    root = tmp_path_factory.mktemp("e2e")
    result = generate(root / "logs", events=20_000, seed=11, scale=0.004)
    truth = json.loads(Path(result.ground_truth).read_text(encoding="utf-8"))
    db = root / "store.duckdb"
    con = connect(db)
    try:
        ingest_paths(con, [str(p) for p in result.files])
        detect_rules(con, run_id="e2e-1")
    finally:
        con.close()
    yield {"db": db, "truth": truth, "root": root}


def _open(world: dict[str, Any]) -> duckdb.DuckDBPyConnection:
    return connect(world["db"])


def _alerts(con: duckdb.DuckDBPyConnection, where: str = "status = 'open'") -> list[dict[str, Any]]:
    cursor = con.execute(f"SELECT * FROM alerts WHERE {where} ORDER BY alert_id")
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _instance(truth: dict[str, Any], scenario: str) -> dict[str, Any]:
    return next(i for i in truth["instances"] if i["scenario"] == scenario)


def _labelled(truth: dict[str, Any]) -> set[str]:
    ids = {e[1] for i in truth["instances"] for e in (i.get("events") or [])}
    ids |= {e[1] for rows in truth["noise"].values() for e in rows}
    return ids


def test_the_ice_case_names_the_statute_and_counts_per_taxpayer(world: dict[str, Any]) -> None:
    truth = world["truth"]
    ice = _instance(truth, "ice_bulk_address_disclosure")
    ice_events = {e[1] for e in ice["events"]}
    con = _open(world)
    try:
        alerts = [a for a in _alerts(con) if set(a["event_ids"]) & ice_events]
    finally:
        con.close()
    by_rule = {a["detector_id"]: a for a in alerts}
    for rule in [
        "disclosure_without_valid_address", "request_missing_required_elements",
        "bulk_case_by_case_request", "implausible_attestation", "requester_role_not_permitted",
    ]:  # fmt: skip
        assert rule in by_rule, f"{rule} did not fire on the ICE case"
    assert all("26 USC 6103(i)(2)" in a["citations"] for a in alerts)
    violation = by_rule["disclosure_without_valid_address"]
    # courts count per taxpayer: the disclosed subjects whose requested address was no address
    assert violation["subjects_affected"] == ice["details"]["placeholder_addresses_disclosed"]
    assert violation["subjects_affected"] == ice["item_count"]
    assert f"{violation['subjects_affected']} violation(s)" in violation["explanation"]
    assert by_rule["requester_role_not_permitted"]["actor_id"] == ice["details"]["signer"]


def test_use_after_the_order_is_flagged_citing_the_order(world: dict[str, Any]) -> None:
    truth = world["truth"]
    uses = {e[1] for e in _instance(truth, "use_after_court_order")["events"]}
    con = _open(world)
    try:
        alerts = _alerts(con, "status = 'open' AND detector_id = 'use_after_court_order'")
    finally:
        con.close()
    flagged = {e for a in alerts for e in a["event_ids"]}
    assert uses <= flagged
    assert all("dmass-25-cv-12822-pi" in a["citations"] for a in alerts)
    assert all(
        "CEDC v. Bessent" in a["explanation"] and "25-cv-12822" in a["explanation"] for a in alerts
    )


def test_legitimate_bulk_flows_raise_no_alert(world: dict[str, Any]) -> None:
    truth = world["truth"]
    labelled = _labelled(truth)
    registry = load_registry()
    legit = {
        r["code"]
        for r in truth["reference"]["recipients"]
        if r["category"] in {"state_tax_agency", "federal_benefits", "statistical"}
    }
    assert {"SSA", "CENSUS", "CA-FTB"} <= legit
    con = _open(world)
    try:
        alerts = _alerts(con)
        bulk_events = con.execute(
            "SELECT count(*) FROM disclosure_events WHERE event_type = 'disclosure'"
            " AND list_contains(?, recipient_agency) AND record_count > 1000",
            [sorted(legit)],
        ).fetchone()
    finally:
        con.close()
    assert bulk_events and bulk_events[0] > 50  # the flows are really there
    for alert in alerts:
        # every finding is an injected scenario or labelled noise, never background traffic
        assert set(alert["event_ids"]) & labelled, (alert["detector_id"], alert["explanation"])
        if alert["recipient_agency"] in legit and alert["detector_id"] not in LOG_INTEGRITY:
            assert set(alert["event_ids"]) <= labelled, alert["explanation"]
    assert registry.version == alerts[0]["registry_version"]


def _registry_copy(world: dict[str, Any], name: str) -> Path:
    target = world["root"] / name
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(DEFAULT_REGISTRY_DIR, target)
    return target


def test_staying_the_order_retracts_exactly_the_alerts_that_depended_on_it(
    world: dict[str, Any], tmp_path: Path
) -> None:
    db = tmp_path / "copy.duckdb"
    shutil.copy(world["db"], db)
    policies = _registry_copy(world, "policies-stayed")
    orders = policies / "court_orders.yaml"
    text = orders.read_text(encoding="utf-8")
    block = re.search(
        r"id: dmass-25-cv-12822-pi[\s\S]*?status_history:\n(\s+- status: in_force\n\s+from: 2026-02-05[^\n]*\n)",
        text,
    )
    assert block is not None
    stayed = text.replace(
        block.group(1),
        block.group(1).replace("status: in_force", "status: stayed")
        + "        note: stayed pending appeal (what-if)\n",
    )
    orders.write_text(stayed, encoding="utf-8")
    con = connect(db)
    try:
        before = {a["alert_id"] for a in _alerts(con)}
        depended = {a["alert_id"] for a in _alerts(con) if "dmass-25-cv-12822-pi" in a["citations"]}
        assert depended
        result = detect_rules(con, registry_path=policies, run_id="e2e-stayed")
        after = _alerts(con, "true")
    finally:
        con.close()
    retracted = {a["alert_id"] for a in after if a["status"] == "retracted"}
    assert retracted == depended
    assert result.merge is not None and result.merge.retracted == len(depended)
    assert {a["alert_id"] for a in after if a["status"] == "open"} == before - depended
    for alert in after:
        if alert["status"] == "retracted":
            assert "dmass-25-cv-12822-pi" in alert["retracted_reason"]
            assert "stayed on 2026-02-05" in alert["retracted_reason"]
            assert result.registry_version in alert["retracted_reason"]


def _with_world_agreements(registry: Registry, truth: dict[str, Any]) -> Registry:
    """The agencies' own agreements, as an agreement inventory would supply them."""
    known = {alias.upper() for g in registry.agreements for alias in [g.id, *g.aliases]}
    entries = []
    for g in truth["reference"]["agreements"]:
        if g["agreement_id"].upper() in known:
            continue
        after = lambda day: (date.fromisoformat(day) + timedelta(days=1)).isoformat()  # noqa: E731
        history = [{"status": "in_force", "from": g["valid_from"]}]
        if g["suspended_from"]:
            history += [
                {"status": "suspended", "from": g["suspended_from"]},
                {"status": "in_force", "from": after(g["suspended_to"])},
            ]
        entries.append(
            {
                "id": g["agreement_id"], "title": f"{g['kind']} with {g['recipient']}",
                "kind": g["kind"], "parties": ["IRS", g["recipient"]], "authorities": [g["authority"]],
                "effective_from": g["valid_from"], "effective_to": after(g["valid_to"]),
                "status_history": history, "sources": [{"cite": "generated agreement inventory"}],
            }
        )  # fmt: skip
    return with_entries(registry, {"agreements": entries}, label="agreements")


def test_expired_and_suspended_agreements_once_the_registry_holds_them(
    world: dict[str, Any], tmp_path: Path
) -> None:
    truth = world["truth"]
    db = tmp_path / "copy.duckdb"
    shutil.copy(world["db"], db)
    patch = truth["reference"].get("registry_patch")
    registry = (
        with_entries(load_registry(), patch, label="generated-agreements")
        if patch
        else _with_world_agreements(load_registry(), truth)
    )
    con = connect(db)
    try:
        detect_rules(con, registry=registry, run_id="e2e-agreements")
        alerts = _alerts(con, "status = 'open' AND detector_id = 'agreement_not_valid'")
    finally:
        con.close()
    flagged = {e for a in alerts for e in a["event_ids"]}
    for scenario in ("expired_agreement", "suspended_agreement"):
        events = {e[1] for e in _instance(truth, scenario)["events"]}
        assert events <= flagged, scenario
    assert flagged <= _labelled(truth)  # no background transfer under a valid agreement flagged
