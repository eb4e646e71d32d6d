"""Cases, risk scores, triage decisions and suppressions against a store of realistic alerts."""

from __future__ import annotations

import math
from datetime import date, timedelta
from typing import Any

import duckdb
import pytest
from report_seed import BULK_REQUEST, ORDER_DMASS, rule_alerts, to_arrow

from detectors.alerts import merge_alerts
from dwatch.errors import InputError
from dwatch.report.cases import build_cases, case_id_for, load_risk_weights
from dwatch.report.citations import CitationDirectory
from dwatch.report.suppressions import add_suppression, list_suppressions
from dwatch.report.triage import record_decision

TODAY = date(2026, 3, 2)


def _cases(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, Any]]:
    cursor = con.execute("SELECT * FROM cases")
    names = [d[0] for d in cursor.description]
    return {r[0]: dict(zip(names, r, strict=True)) for r in cursor.fetchall()}


def _case_of(con: duckdb.DuckDBPyConnection, alert_id: str) -> dict[str, Any]:
    row = con.execute("SELECT case_id FROM case_alerts WHERE alert_id = ?", [alert_id]).fetchone()
    assert row, f"alert {alert_id} is in no case"
    return _cases(con)[row[0]]


def test_bulk_transfer_is_one_case_with_a_subject_count(con, seeded, directory):
    build_cases(con, directory=directory, as_of=TODAY)
    case = _case_of(con, seeded["bulk_alert_id"])
    assert case["alert_count"] == 2  # the two rules over the same transfer, not 47k rows
    assert case["subjects_affected"] == 47_289  # overlapping detectors: max, not sum
    assert case["severity"] == "critical"
    assert case["recipient_agency"] == "DHS-ICE" and case["request_id"] == BULK_REQUEST
    assert case["court_order_ids"] == []
    assert sorted(case["data_elements"]) == ["address", "name"]


def test_uses_after_the_order_group_by_order_and_add_up_per_subject(con, seeded, directory):
    build_cases(con, directory=directory, as_of=TODAY)
    cases = {_case_of(con, a)["case_id"] for a in seeded["use_alert_ids"]}
    assert len(cases) == 1
    case = _case_of(con, seeded["use_alert_ids"][0])
    assert case["court_order_ids"] == [ORDER_DMASS]
    assert case["alert_count"] == 6 and case["subjects_affected"] == 6
    assert case["case_id"] != _case_of(con, seeded["bulk_alert_id"])["case_id"]
    assert "CEDC v. Bessent" in case["title"]


def test_without_a_registry_orders_are_unknown_and_cases_group_by_recipient_and_request(
    con, seeded
):
    build_cases(con, directory=CitationDirectory(), as_of=TODAY)
    bulk = _case_of(con, seeded["bulk_alert_id"])
    assert _case_of(con, seeded["use_alert_ids"][0])["case_id"] == bulk["case_id"]
    assert bulk["alert_count"] == 8


def test_case_ids_are_derived_from_the_key_and_stable_across_runs(con, seeded, directory):
    first = build_cases(con, directory=directory, as_of=TODAY)
    ids = set(_cases(con))
    assert len(first.new_case_ids) == len(ids) == first.cases
    # A new detection run re-merges the same findings: ids, cases and first_seen stay.
    before = {k: v["first_seen_at"] for k, v in _cases(con).items()}
    rules = rule_alerts(seeded["event_ids"], __import__("random").Random(7))
    merge_alerts(
        con,
        to_arrow(rules),
        detector_ids=sorted({a["detector_id"] for a in rules}),
        run_id="detect-3",
        retract_reason="gone",
    )
    again = build_cases(con, directory=directory, as_of=TODAY)
    assert again.new_case_ids == []
    assert set(_cases(con)) == ids
    assert {k: v["first_seen_at"] for k, v in _cases(con).items()} == before
    bulk = _case_of(con, seeded["bulk_alert_id"])
    assert bulk["case_id"] == case_id_for(f"recipient=DHS-ICE|request={BULK_REQUEST}|orders=")


def test_case_with_only_retracted_alerts_shows_as_retracted(con, seeded, directory):
    result = build_cases(con, directory=directory, as_of=TODAY)
    retracted = [c for c in _cases(con).values() if c["status"] == "retracted"]
    assert result.retracted == 1 and len(retracted) == 1
    assert retracted[0]["request_id"] == "NY-REQ-0009"
    assert retracted[0]["open_alert_count"] == 0 and retracted[0]["retracted_alert_count"] == 1


def test_retracted_alert_leaves_severity_of_a_mixed_case(con, seeded, directory):
    # Retract the critical address rule only: the case keeps the high outlier rule.
    rules = rule_alerts(seeded["event_ids"], __import__("random").Random(7))
    keep = [a for a in rules if a["detector_id"] != "i2_request_lacks_address"]
    merge_alerts(
        con,
        to_arrow(keep),
        detector_ids=sorted({a["detector_id"] for a in rules}),
        run_id="detect-3",
        retract_reason="request letter found with addresses",
    )
    build_cases(con, directory=directory, as_of=TODAY)
    case = _case_of(con, seeded["bulk_alert_id"])
    assert case["status"] == "open"
    assert case["severity"] == "high"
    assert case["retracted_alert_count"] == 1 and case["open_alert_count"] == 1


def test_risk_score_is_severity_times_sensitivity_times_log_subjects(con, seeded, directory):
    build_cases(con, directory=directory, as_of=TODAY)
    weights = load_risk_weights()
    case = _case_of(con, seeded["bulk_alert_id"])
    # address (1.5) to an immigration_enforcement recipient (1.5)
    expected_sensitivity = (
        weights.data_elements["address"] * weights.categories["immigration_enforcement"]
    )
    assert case["sensitivity"] == pytest.approx(expected_sensitivity)
    expected = weights.severity["critical"] * expected_sensitivity * (1 + math.log10(1 + 47_289))
    assert case["risk_score"] == pytest.approx(expected, abs=0.01)
    ranked = sorted(_cases(con).values(), key=lambda c: -c["risk_score"])
    assert ranked[0]["case_id"] == case["case_id"]


def test_decisions_are_appended_and_survive_reruns(con, seeded, directory):
    build_cases(con, directory=directory, as_of=TODAY)
    case_id = _case_of(con, seeded["bulk_alert_id"])["case_id"]
    record_decision(con, case_id[:10], "acknowledged", decided_by="a.analyst")
    record_decision(
        con, case_id, "violation", decided_by="b.lead", note="request set forth no address"
    )
    state = con.execute(
        "SELECT triage_state, resolution, decided_by, note FROM case_triage_state WHERE case_id = ?",
        [case_id],
    ).fetchall()[0]
    assert state == ("resolved", "violation", "b.lead", "request set forth no address")
    # Re-run detection and case building: the decision is still the case's state.
    rules = rule_alerts(seeded["event_ids"], __import__("random").Random(7))
    merge_alerts(
        con,
        to_arrow(rules),
        detector_ids=sorted({a["detector_id"] for a in rules}),
        run_id="detect-3",
        retract_reason="gone",
    )
    build_cases(con, directory=directory, as_of=TODAY)
    after = con.execute(
        "SELECT triage_state, resolution FROM case_triage_state WHERE case_id = ?", [case_id]
    ).fetchone()
    assert after == ("resolved", "violation")
    alert_state = con.execute(
        "SELECT triage_state, resolution FROM alert_triage_state WHERE alert_id = ?",
        [seeded["bulk_alert_id"]],
    ).fetchone()
    assert alert_state == ("resolved", "violation")
    assert con.execute("SELECT count(*) FROM triage_decisions").fetchone()[0] == 2
    assert (
        con.execute("SELECT count(*) FROM open_cases WHERE case_id = ?", [case_id]).fetchone()[0]
        == 0
    )


def test_a_later_alert_decision_overrides_its_case_for_that_alert(con, seeded, directory):
    build_cases(con, directory=directory, as_of=TODAY)
    use = seeded["use_alert_ids"]
    record_decision(con, _case_of(con, use[0])["case_id"], "acknowledged", decided_by="a")
    record_decision(
        con, use[1], "false_positive", decided_by="a", note="test account, no real subject"
    )
    states = dict(
        con.execute(
            "SELECT alert_id, triage_state FROM alert_triage_state WHERE alert_id IN (?, ?)",
            [use[0], use[1]],
        ).fetchall()
    )
    assert states == {use[0]: "acknowledged", use[1]: "resolved"}


@pytest.mark.parametrize(
    ("ident", "decision", "by", "note", "message"),
    [
        ("cs_nonexistent", "acknowledged", "a", None, "no case or alert"),
        ("{case}", "closed", "a", "x", "unknown decision"),
        ("{case}", "violation", "a", None, "needs a note"),
        ("{case}", "violation", " ", "why", "who made it"),
    ],
)
def test_bad_decisions_are_refused_with_a_fix(
    con, seeded, directory, ident, decision, by, note, message
):
    build_cases(con, directory=directory, as_of=TODAY)
    ident = ident.format(case=_case_of(con, seeded["bulk_alert_id"])["case_id"])
    with pytest.raises(InputError, match=message) as info:
        record_decision(con, ident, decision, decided_by=by, note=note)
    assert info.value.fix
    assert con.execute("SELECT count(*) FROM triage_decisions").fetchone()[0] == 0


def test_suppression_hides_until_it_expires(con, seeded, directory):
    sid = add_suppression(
        con,
        criteria={"detector_id": "iforest_recipient_mix", "recipient_agency": "CA-FTB"},
        reason="annual re-extract agreed with the state",
        owner="j.doe",
        expires_on=TODAY + timedelta(days=30),
        today=TODAY,
    )
    result = build_cases(con, directory=directory, as_of=TODAY)
    suppressed = [c for c in _cases(con).values() if c["status"] == "suppressed"]
    assert result.suppressed == 1 and suppressed[0]["recipient_agency"] == "CA-FTB"
    assert (
        con.execute("SELECT count(*) FROM case_alerts WHERE suppression_id = ?", [sid]).fetchone()[
            0
        ]
        == 1
    )
    listed = list_suppressions(con, as_of=TODAY)
    assert listed[0]["active"] and listed[0]["alerts_suppressed"] == 1
    # The day after expiry the alert is back.
    later = TODAY + timedelta(days=31)
    build_cases(con, directory=directory, as_of=later)
    assert all(c["status"] != "suppressed" for c in _cases(con).values())
    assert list_suppressions(con, as_of=later)[0]["active"] is False


def test_partial_criteria_do_not_over_suppress(con, seeded, directory):
    add_suppression(
        con,
        criteria={"recipient_agency": "CA-FTB", "detector_id": "some_other_rule"},
        reason="r",
        owner="o",
        expires_on=TODAY,
        today=TODAY,
    )
    build_cases(con, directory=directory, as_of=TODAY)
    assert (
        con.execute("SELECT count(*) FROM case_alerts WHERE suppression_id IS NOT NULL").fetchone()[
            0
        ]
        == 0
    )


@pytest.mark.parametrize(
    ("criteria", "reason", "owner", "expires", "message"),
    [
        ({}, "r", "o", TODAY, "at least one match criterion"),
        ({"recipient_agency": "  "}, "r", "o", TODAY, "at least one match criterion"),
        ({"recipient_agency": "SSA"}, "", "o", TODAY, "needs a reason"),
        ({"recipient_agency": "SSA"}, "r", "", TODAY, "needs an owner"),
        ({"recipient_agency": "SSA"}, "r", "o", TODAY - timedelta(days=1), "already past"),
        ({"recipient_agency": "SSA"}, "r", "o", TODAY + timedelta(days=400), "more than 366 days"),
        ({"colour": "red"}, "r", "o", TODAY, "unknown match criteria"),
    ],
)
def test_suppressions_need_criteria_reason_owner_and_expiry(
    con, criteria, reason, owner, expires, message
):
    with pytest.raises(InputError, match=message):
        add_suppression(
            con, criteria=criteria, reason=reason, owner=owner, expires_on=expires, today=TODAY
        )
    assert con.execute("SELECT count(*) FROM suppressions").fetchone()[0] == 0


def test_the_store_itself_refuses_suppressions_without_owner_or_criteria(con):
    with pytest.raises(duckdb.ConstraintException):
        con.execute(
            "INSERT INTO suppressions (suppression_id, reason, owner, expires_on) VALUES ('sp_x', 'r', 'o', '2026-01-01')"
        )
    with pytest.raises(duckdb.ConstraintException):
        con.execute(
            "INSERT INTO suppressions (suppression_id, detector_id, reason, owner, expires_on) VALUES ('sp_y', 'd', 'r', '', '2026-01-01')"
        )


def test_directory_falls_back_to_the_registry_tables(con):
    from dwatch.report.citations import directory_from_tables

    con.execute(
        "INSERT INTO registry_court_orders (order_id, case_name, court, docket, issued) VALUES"
        " ('ord-1', 'Doe v. Agency', 'D. Nowhere', '99-cv-1', DATE '2026-01-02')"
    )
    con.execute(
        "INSERT INTO registry_order_status (order_id, status, valid_from, binding) VALUES"
        " ('ord-1', 'in_force', TIMESTAMPTZ '2026-01-02 00:00:00+00', true),"
        " ('ord-1', 'stayed', TIMESTAMPTZ '2026-03-01 00:00:00+00', false)"
    )
    con.execute(
        "INSERT INTO registry_recipients (code, name, category) VALUES ('XA', 'Agency X', 'law_enforcement')"
    )
    directory = directory_from_tables(con)
    order = directory.lookup("ord-1")
    assert order.kind == "court_order" and order.name == "Doe v. Agency"
    assert ("stayed", date(2026, 3, 1)) in order.dates and (
        "issued",
        date(2026, 1, 2),
    ) in order.dates
    assert directory.lookup("XA").category == "law_enforcement"
    assert directory.court_orders(["ord-1", "XA", "unknown"]) == ["ord-1"]
