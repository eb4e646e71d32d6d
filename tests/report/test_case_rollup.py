"""A case's triage state rolls up from its alerts' decisions (migration 0010)."""

from __future__ import annotations

import random
import shutil
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pytest
from click.testing import CliRunner
from report_seed import (
    BULK_REQUEST,
    I2,
    ORDER_DMASS,
    _alert,
    _ts,
    rule_alerts,
    seed_store,
    to_arrow,
)

import dwatch.store
from detectors.alerts import merge_alerts
from dwatch.cli import main
from dwatch.report.cases import build_cases
from dwatch.report.notify import cases_to_announce
from dwatch.report.triage import record_decision
from dwatch.store import connect, discover_migrations, migrate

TODAY = date(2026, 3, 2)


def _case_state(con: duckdb.DuckDBPyConnection, case_id: str) -> dict[str, Any]:
    cursor = con.execute("SELECT * FROM case_triage_state WHERE case_id = ?", [case_id])
    names = [d[0] for d in cursor.description]
    rows = cursor.fetchall()
    assert len(rows) == 1, f"case {case_id} has {len(rows)} triage rows"
    return dict(zip(names, rows[0], strict=True))


def _case_id(con: duckdb.DuckDBPyConnection, alert_id: str) -> str:
    return con.execute("SELECT case_id FROM case_alerts WHERE alert_id = ?", [alert_id]).fetchall()[
        0
    ][0]


def _is_open(con: duckdb.DuckDBPyConnection, case_id: str) -> bool:
    return bool(
        con.execute("SELECT count(*) FROM open_cases WHERE case_id = ?", [case_id]).fetchall()[0][0]
    )


def _alert_states(con: duckdb.DuckDBPyConnection, alert_ids: list[str]) -> dict[str, tuple]:
    rows = con.execute(
        "SELECT alert_id, triage_state, resolution FROM alert_triage_state"
        " WHERE alert_id IN (SELECT unnest(?::VARCHAR[]))",
        [alert_ids],
    ).fetchall()
    return {r[0]: (r[1], r[2]) for r in rows}


@pytest.fixture
def built(con, seeded, directory) -> dict[str, Any]:
    build_cases(con, directory=directory, as_of=TODAY)
    uses = seeded["use_alert_ids"]
    bulk = seeded["bulk_alert_id"]
    bulk_alerts = [
        r[0]
        for r in con.execute(
            "SELECT alert_id FROM case_alerts WHERE case_id = ? ORDER BY alert_id",
            [_case_id(con, bulk)],
        ).fetchall()
    ]
    return {
        **seeded,
        "use_case": _case_id(con, uses[0]),
        "bulk_case": _case_id(con, bulk),
        "bulk_alerts": bulk_alerts,
    }


def test_resolving_every_alert_one_by_one_closes_the_case(con, built):
    case_id, uses = built["use_case"], built["use_alert_ids"]
    assert len(uses) == 6 and {_case_id(con, a) for a in uses} == {case_id}
    assert _case_state(con, case_id)["triage_state"] == "new"
    for done, alert_id in enumerate(uses[:-1], start=1):
        record_decision(con, alert_id, "violation", decided_by=f"analyst{done}", note="checked")
        state = _case_state(con, case_id)
        # Partial progress: still open, and the note says how far the work has got.
        assert (state["triage_state"], state["resolution"]) == ("acknowledged", None)
        assert state["note"].startswith(f"from alert decisions: {done} of 6 active alerts resolved")
        assert f"{6 - done} not yet decided" in state["note"]
        assert state["decided_by"] == f"analyst{done}"
        assert _is_open(con, case_id)
    record_decision(con, uses[-1], "violation", decided_by="last.one", note="checked")
    state = _case_state(con, case_id)
    assert (state["triage_state"], state["resolution"]) == ("resolved", "violation")
    assert state["decided_by"] == "last.one"
    assert state["note"] == "from alert decisions: 6 of 6 active alerts resolved (violation 6)"
    assert not _is_open(con, case_id)
    # The log holds exactly the six alert decisions: nothing was written for the case.
    assert con.execute(
        "SELECT count(*), count(*) FILTER (WHERE target_type = 'alert') FROM triage_decisions"
    ).fetchall() == [(6, 6)]


def test_alerts_resolved_differently_close_the_case_as_mixed(con, built):
    case_id = built["bulk_case"]
    first, second = built["bulk_alerts"]
    record_decision(con, first, "violation", decided_by="a", note="no address set forth")
    record_decision(con, second, "false_positive", decided_by="b", note="size was agreed")
    state = _case_state(con, case_id)
    assert (state["triage_state"], state["resolution"]) == ("resolved", "mixed")
    assert "(false_positive 1, violation 1)" in state["note"]
    assert not _is_open(con, case_id)
    # Each alert keeps its own finding.
    assert _alert_states(con, [first, second]) == {
        first: ("resolved", "violation"),
        second: ("resolved", "false_positive"),
    }


def test_all_alerts_acknowledged_is_an_acknowledged_case(con, built):
    for alert_id in built["bulk_alerts"]:
        record_decision(con, alert_id, "acknowledged", decided_by="a")
    state = _case_state(con, built["bulk_case"])
    assert (state["triage_state"], state["resolution"]) == ("acknowledged", None)
    assert state["note"].endswith("0 of 2 active alerts resolved, 2 acknowledged")


def test_a_later_case_reopen_wins_over_earlier_alert_decisions(con, built):
    case_id = built["use_case"]
    for alert_id in built["use_alert_ids"]:
        record_decision(con, alert_id, "authorised", decided_by="a", note="order stayed")
    assert _case_state(con, case_id)["resolution"] == "authorised"
    record_decision(con, case_id, "reopened", decided_by="lead", note="stay lifted on appeal")
    state = _case_state(con, case_id)
    assert (state["triage_state"], state["resolution"]) == ("new", None)
    assert (state["decided_by"], state["note"]) == ("lead", "stay lifted on appeal")
    assert _is_open(con, case_id)
    assert set(_alert_states(con, built["use_alert_ids"]).values()) == {("new", None)}
    # ... and an alert decided after the reopen counts again: 1 of 6 resolved.
    record_decision(con, built["use_alert_ids"][0], "violation", decided_by="a", note="used")
    state = _case_state(con, case_id)
    assert state["triage_state"] == "acknowledged" and "1 of 6" in state["note"]


def test_a_newer_case_decision_wins_and_older_one_loses(con, built):
    case_id = built["bulk_case"]
    first, second = built["bulk_alerts"]
    # An acknowledgement of the case is overtaken by later alert resolutions.
    record_decision(con, case_id, "acknowledged", decided_by="lead")
    record_decision(con, first, "data_error", decided_by="a", note="duplicate feed row")
    record_decision(con, second, "data_error", decided_by="a", note="duplicate feed row")
    assert _case_state(con, case_id)["resolution"] == "data_error"
    # A case resolution made after them wins, for the case and for each alert.
    record_decision(con, case_id, "violation", decided_by="lead", note="feed was right after all")
    state = _case_state(con, case_id)
    assert (state["triage_state"], state["resolution"], state["note"]) == (
        "resolved",
        "violation",
        "feed was right after all",
    )
    assert set(_alert_states(con, [first, second]).values()) == {("resolved", "violation")}
    # One alert re-judged later: the other still carries the case's verdict -> mixed.
    record_decision(con, second, "authorised", decided_by="b", note="ex parte order found")
    state = _case_state(con, case_id)
    assert (state["triage_state"], state["resolution"]) == ("resolved", "mixed")
    assert "(authorised 1, violation 1)" in state["note"]


def test_retracted_alerts_do_not_hold_a_case_open(con, built, directory):
    case_id = built["bulk_case"]
    rules = rule_alerts(built["event_ids"], random.Random(7))
    lacks_address = next(a for a in rules if a["detector_id"] == "i2_request_lacks_address")
    record_decision(con, lacks_address["alert_id"], "violation", decided_by="a", note="checked")
    assert _case_state(con, case_id)["triage_state"] == "acknowledged"  # 1 of 2
    # The other rule's finding no longer holds: only the resolved alert is active.
    merge_alerts(
        con,
        to_arrow([a for a in rules if a["detector_id"] != "i2_bulk_request_outlier"]),
        detector_ids=sorted({a["detector_id"] for a in rules}),
        run_id="detect-3",
        retract_reason="request size agreed",
    )
    build_cases(con, directory=directory, as_of=TODAY)
    state = _case_state(con, case_id)
    assert (state["triage_state"], state["resolution"]) == ("resolved", "violation")
    assert "1 of 1 active alert resolved" in state["note"]


def _late_use_alert(event_id: str) -> dict[str, Any]:
    """A further use of the bulk data after the order, found by a later detection run."""
    return _alert(
        "use_after_injunction",
        "rule",
        "critical",
        (event_id, "late"),
        score=1.0,
        entity_type="event",
        entity_id=event_id,
        recipient_agency="DHS-ICE",
        request_id=BULK_REQUEST,
        actor_id="ice-ero-4000",
        source_system="ice-fti-receipt-log",
        window_start=_ts(2026, 2, 27, 10),
        window_end=_ts(2026, 2, 27, 10),
        event_ids=[event_id],
        event_count=1,
        subjects_affected=1,
        records_affected=1,
        citations=[ORDER_DMASS, I2],
        explanation="ice-ero-4000 accessed return information after the order enjoining its use.",
    )


def test_a_new_alert_joining_a_resolved_case_reopens_it(con, built, directory):
    case_id, uses = built["use_case"], built["use_alert_ids"]
    record_decision(con, case_id, "violation", decided_by="lead", note="six uses after the order")
    assert not _is_open(con, case_id)
    # The same findings found again (same alert ids) keep the decision ...
    rules = rule_alerts(built["event_ids"], random.Random(7))
    detectors = sorted({a["detector_id"] for a in rules})
    merge_alerts(
        con, to_arrow(rules), detector_ids=detectors, run_id="detect-3", retract_reason="x"
    )
    build_cases(con, directory=directory, as_of=TODAY)
    assert _case_state(con, case_id)["resolution"] == "violation"
    # ... a new finding with the same recipient, request and order joins the same case and
    # reopens it: nobody has judged it yet.
    late = _late_use_alert(built["event_ids"]["uses"][0])
    merge_alerts(
        con, to_arrow([*rules, late]), detector_ids=detectors, run_id="detect-4", retract_reason="x"
    )
    build_cases(con, directory=directory, as_of=TODAY)
    assert _case_id(con, late["alert_id"]) == case_id
    state = _case_state(con, case_id)
    assert (state["triage_state"], state["resolution"]) == ("acknowledged", None)
    assert state["note"].startswith("from alert decisions: 6 of 7 active alerts resolved")
    assert "1 not yet decided" in state["note"]
    assert _is_open(con, case_id)
    states = _alert_states(con, [*uses, late["alert_id"]])
    assert states.pop(late["alert_id"]) == ("new", None)
    assert set(states.values()) == {("resolved", "violation")}
    # Judging the newcomer closes the case again.
    record_decision(con, late["alert_id"], "violation", decided_by="a", note="seventh use")
    assert _case_state(con, case_id)["resolution"] == "violation"
    assert not _is_open(con, case_id)


def test_only_untriaged_cases_are_announced(con, built):
    announced = {c[0] for c in cases_to_announce(con, "high")}
    assert built["bulk_case"] in announced
    record_decision(con, built["bulk_alerts"][0], "acknowledged", decided_by="a")
    assert built["bulk_case"] not in {c[0] for c in cases_to_announce(con, "high")}


def _cli(db_path: Path, *args: str) -> str:
    result = CliRunner().invoke(main, ["--db", str(db_path), "alerts", *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_alerts_listing_reflects_the_rollup(con, seeded, db_path):
    _cli(db_path, "list")  # builds cases as the CLI does (this store holds no registry)
    case_id = _case_id(con, seeded["bulk_alert_id"])
    members = [
        r[0]
        for r in con.execute(
            "SELECT alert_id FROM case_alerts JOIN alerts USING (alert_id)"
            " WHERE case_id = ? AND status = 'open' ORDER BY alert_id",
            [case_id],
        ).fetchall()
    ]
    total = len(members)
    assert total > 2
    _cli(db_path, "resolve", members[0], "--as", "violation", "--note", "no address", "--by", "a")
    line = next(ln for ln in _cli(db_path, "list").splitlines() if ln.startswith(case_id))
    assert f"acknowledged 1/{total} resolved" in line
    shown = _cli(db_path, "show", case_id)
    assert "triage acknowledged" in shown
    assert (
        f"triage note: from alert decisions: 1 of {total} active alerts resolved (violation 1)"
        in shown
    )
    for alert_id in members[1:]:
        _cli(
            db_path, "resolve", alert_id, "--as", "false_positive", "--note", "agreed", "--by", "b"
        )
    assert case_id not in _cli(db_path, "list")
    everything = _cli(db_path, "list", "--all")
    assert "resolved:mixed" in next(ln for ln in everything.splitlines() if ln.startswith(case_id))
    assert case_id in _cli(db_path, "list", "--all", "--state", "resolved")


def test_the_migration_applies_to_a_store_made_before_it(tmp_path, monkeypatch, directory):
    before = [m for m in discover_migrations() if m.version < 10]
    assert before[-1].version == 9
    monkeypatch.setattr(dwatch.store, "discover_migrations", lambda: before)
    db = tmp_path / "at_0009.duckdb"
    con = connect(db)
    assert con.execute("SELECT max(version) FROM schema_migrations").fetchall() == [(9,)]
    seeded = seed_store(con)
    build_cases(con, directory=directory, as_of=TODAY)
    use_case = _case_id(con, seeded["use_alert_ids"][0])
    for alert_id in seeded["use_alert_ids"]:
        record_decision(con, alert_id, "violation", decided_by="a", note="used after order")
    # Under 0006's definition the case ignores its alerts' decisions.
    assert _case_state(con, use_case)["triage_state"] == "new"
    log_before = con.execute("SELECT * FROM triage_decisions ORDER BY decision_no").fetchall()
    con.close()
    # A copy made before migrating shows nothing else changes the store on the way.
    shutil.copy(db, tmp_path / "copy.duckdb")

    monkeypatch.undo()
    con = connect(db)  # applies 0010 (and any later migration)
    try:
        applied = con.execute("SELECT max(version) FROM schema_migrations").fetchone()
        assert applied is not None and applied[0] >= 10
        state = _case_state(con, use_case)
        assert (state["triage_state"], state["resolution"]) == ("resolved", "violation")
        assert not _is_open(con, use_case)
        assert (
            con.execute("SELECT * FROM triage_decisions ORDER BY decision_no").fetchall()
            == log_before
        )
        # Same columns, same types as the view had before: dependants keep working.
        old = duckdb.connect(str(tmp_path / "copy.duckdb"), read_only=True)
        try:
            for view in ("case_triage_state", "alert_triage_state", "open_cases"):
                assert _columns(con, view) == _columns(old, view), view
        finally:
            old.close()
        # Applying migrations again is a no-op.
        assert migrate(con) == []
    finally:
        con.close()


def _columns(con: duckdb.DuckDBPyConnection, view: str) -> list[tuple[str, str]]:
    return con.execute(
        "SELECT column_name, data_type FROM information_schema.columns"
        " WHERE table_name = ? ORDER BY ordinal_position",
        [view],
    ).fetchall()
