"""The engine as a whole: as-of judgment, stable ids, retraction with the reason, refresh."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import duckdb

from detectors.engine import RuleCase, detect_rules, load_case, load_rules, run_rules
from dwatch.policy import Registry, load_registry, with_entries
from dwatch.store import transaction

REGISTRY = load_registry()
RULES = load_rules()


def _insert(
    con: duckdb.DuckDBPyConnection,
    events: list[dict[str, Any]],
    items: list[dict[str, Any]] | None = None,
) -> None:
    load_case(con, RuleCase(name="fixture", alerts=0, events=events, request_items=items or []))


def _run(con: duckdb.DuckDBPyConnection, registry: Registry, run_id: str) -> None:
    with transaction(con):
        run_rules(con, registry, run_id=run_id, rules=RULES)


def _alerts(con: duckdb.DuckDBPyConnection, detector: str | None = None) -> list[dict[str, Any]]:
    cursor = con.execute(
        "SELECT * FROM alerts WHERE ? IS NULL OR detector_id = ? ORDER BY alert_id",
        [detector, detector],
    )
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _stay(registry: Registry, order_id: str, on: str | date | datetime) -> Registry:
    order = registry.court_orders_by_id[order_id].model_dump(by_alias=True)
    order["status_history"] = [
        *order["status_history"],
        {"status": "stayed", "from": on, "note": "stayed on appeal"},
    ]
    return with_entries(registry, {"court_orders": [order]}, label="stay")


# the court's local day: the order binds from midnight in Boston
EST = timezone(timedelta(hours=-5))

ICE_USE = [
    # uses after the D. Mass. order, before and after a hypothetical stay
    {"event_id": "A1", "source_system": "ice-log", "event_type": "access", "occurred_at": "2026-02-10T14:00:00Z",
     "recipient_agency": "DHS-ICE", "actor_id": "ice.ero.1", "legal_authority": "IRC 6103(i)(2)"},
    {"event_id": "A2", "source_system": "ice-log", "event_type": "access", "occurred_at": "2026-04-10T14:00:00Z",
     "recipient_agency": "DHS-ICE", "actor_id": "ice.ero.2", "legal_authority": "IRC 6103(i)(2)"},
    # a disclosure after the D.D.C. order
    {"event_id": "D1", "event_type": "disclosure", "occurred_at": "2025-12-01T14:00:00Z",
     "recipient_agency": "DHS-ICE", "request_id": "R1", "legal_authority": "26 USC 6103(i)(2)"},
]  # fmt: skip


def test_rerunning_keeps_alert_ids_and_duplicates_nothing(con: duckdb.DuckDBPyConnection) -> None:
    _insert(con, ICE_USE)
    _run(con, REGISTRY, "run-1")
    first = {a["alert_id"]: a for a in _alerts(con)}
    _run(con, REGISTRY, "run-2")
    second = {a["alert_id"]: a for a in _alerts(con)}
    assert first.keys() == second.keys() and first
    assert all(a["status"] == "open" and a["first_run_id"] == "run-1" for a in second.values())
    assert all(a["last_run_id"] == "run-2" for a in second.values())
    assert all(a["registry_version"] == REGISTRY.version for a in second.values())


def test_an_event_is_judged_by_the_order_status_at_its_time(con: duckdb.DuckDBPyConnection) -> None:
    _insert(con, ICE_USE)
    _run(con, _stay(REGISTRY, "dmass-25-cv-12822-pi", "2026-03-01"), "run-1")
    uses = _alerts(con, "use_after_court_order")
    # the access before the stay is still a violation; the one after it is not
    assert [a["actor_id"] or a["entity_id"] for a in uses] == ["ice.ero.1"]


def test_staying_an_order_retracts_exactly_the_alerts_that_depended_on_it(
    con: duckdb.DuckDBPyConnection,
) -> None:
    _insert(con, ICE_USE)
    _run(con, REGISTRY, "run-1")
    before = {a["alert_id"]: a for a in _alerts(con)}
    depends = {i for i, a in before.items() if "dmass-25-cv-12822-pi" in a["citations"]}
    assert depends, "the uses after the order must be flagged first"
    # stayed from the order's first day
    stayed = _stay(REGISTRY, "dmass-25-cv-12822-pi", datetime(2026, 2, 5, tzinfo=EST))
    _run(con, stayed, "run-2")
    after = {a["alert_id"]: a for a in _alerts(con)}
    retracted = {i for i, a in after.items() if a["status"] == "retracted"}
    assert retracted == depends
    for alert_id in retracted:
        reason = after[alert_id]["retracted_reason"]
        assert "dmass-25-cv-12822-pi" in reason and "stayed on 2026-02-05" in reason
        assert stayed.version in reason
    assert all(after[i]["status"] == "open" for i in before.keys() - depends)
    # lifting the stay again reopens the same alerts under the same ids
    _run(con, REGISTRY, "run-3")
    assert {a["alert_id"] for a in _alerts(con) if a["status"] == "open"} == set(before)


def test_authority_ids_are_refreshed_from_the_registry_at_detect_time(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    _insert(
        con,
        [
            {
                "event_id": "D1",
                "legal_authority": "state basic agreement authority",
                "recipient_agency": "CA-FTB",
                "purpose": "state_tax_administration",
            }
        ],
    )
    con.execute("UPDATE disclosure_events SET authority_id = 'stale'")
    _run(con, REGISTRY, "run-1")
    assert con.execute("SELECT authority_id FROM disclosure_events").fetchone() == (None,)
    assert [a["detector_id"] for a in _alerts(con) if a["status"] == "open"] == [
        "authority_unrecognised"
    ]
    # a new alias in the registry makes the same text resolve, and the alert is retracted
    auth = REGISTRY.authorities_by_id["26 USC 6103(d)"].model_dump()
    auth["aliases"] = [*auth["aliases"], "state basic agreement authority"]
    _run(con, with_entries(REGISTRY, {"authorities": [auth]}), "run-2")
    assert con.execute("SELECT authority_id FROM disclosure_events").fetchone() == (
        "26 USC 6103(d)",
    )
    (retracted,) = _alerts(con, "authority_unrecognised")
    assert retracted["status"] == "retracted"
    assert "no longer holds under registry version" in retracted["retracted_reason"]
    assert REGISTRY.version in retracted["retracted_reason"]  # the version it was judged under


def test_values_reach_sql_only_as_parameters(con: duckdb.DuckDBPyConnection) -> None:
    hostile = "x'); DROP TABLE alerts; --"
    _insert(
        con,
        [
            {
                "event_id": "D1",
                "legal_authority": hostile,
                "recipient_agency": hostile,
                "actor_id": hostile,
            }
        ],
    )
    _run(con, REGISTRY, "run-1")
    alert = _alerts(con, "authority_unrecognised")[0]
    assert hostile in alert["explanation"]


def test_detect_rules_commits_and_marks_coverage(con: duckdb.DuckDBPyConnection) -> None:
    _insert(con, ICE_USE)
    con.execute(
        "INSERT INTO validation_results (validation_run_id, source_system, suite, expectation, scope, success,"
        " window_start, window_end) VALUES ('v1', 'ice-log', 's', 'e', 'batch', false,"
        " '2026-01-01'::TIMESTAMPTZ, '2026-12-31'::TIMESTAMPTZ)"
    )
    result = detect_rules(con, run_id="run-1")
    assert result.merge is not None and result.merge.new == len(_alerts(con))
    assert result.coverage_flagged >= 1
    flagged = [a for a in _alerts(con) if a["coverage_incomplete"]]
    assert flagged and all(a["source_system"] == "ice-log" for a in flagged)


def test_a_finding_gone_from_the_data_says_so(con: duckdb.DuckDBPyConnection) -> None:
    _insert(
        con,
        [{"event_id": "D1", "legal_authority": "per MOU", "purpose": "state_tax_administration"}],
    )
    _run(con, REGISTRY, "run-1")
    con.execute("UPDATE disclosure_events SET legal_authority = 'IRC 6103(d)'")  # corrected log
    _run(con, REGISTRY, "run-2")
    (alert,) = _alerts(con, "authority_unrecognised")
    assert alert["status"] == "retracted"
    assert alert["retracted_reason"].startswith("no longer found in the data")
