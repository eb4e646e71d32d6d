"""Notification lists and the two commands, through the CLI as users run them."""

from __future__ import annotations

import json
import re

import pytest
from accounting_seed import BULK, LEDGER, TIN_A, TIN_B, TIN_C
from click.testing import CliRunner

from dwatch.accounting.affected import affected_taxpayers, match_identifiers
from dwatch.cli import main
from dwatch.errors import InputError
from dwatch.pseudonym import pseudonymise, resolve_key

TIN_SHAPE = re.compile(r"666-?01-?000\d")


@pytest.fixture
def with_case(loaded):
    """One case of two open alerts sharing taxpayer A, and a retracted alert naming C."""
    key = resolve_key()
    refs = {t: pseudonymise(t, key) for t in (TIN_A, TIN_B, TIN_C)}
    loaded.execute(
        "INSERT INTO alerts (alert_id, detector_id, detector_kind, detector_version, severity,"
        " entity_type, entity_id, explanation, status, citations) VALUES"
        " ('al_1', 'disclosure_without_valid_address', 'rule', '1', 'critical', 'request', ?, 'x',"
        "  'open', ['order-1']),"
        " ('al_2', 'bulk_case_by_case_request', 'rule', '1', 'high', 'request', ?, 'y', 'open', []),"
        " ('al_3', 'bulk_case_by_case_request', 'rule', '1', 'high', 'request', ?, 'z', 'retracted', [])",
        [BULK, BULK, BULK],
    )
    loaded.execute(
        "INSERT INTO alert_subjects (alert_id, taxpayer_ref, reason, request_id, event_id, item_no,"
        " source_system) VALUES"
        " ('al_1', ?, 'disclosed without address', ?, 'EV-4', 1, ?),"
        " ('al_2', ?, 'named in a bulk request', ?, 'EV-3', 1, ?),"
        " ('al_2', ?, 'named in a bulk request', ?, 'EV-3', 2, ?),"
        " ('al_3', ?, 'retracted', ?, 'EV-6', NULL, ?)",
        [
            refs[TIN_A],
            BULK,
            LEDGER,
            refs[TIN_A],
            BULK,
            LEDGER,
            refs[TIN_B],
            BULK,
            LEDGER,
            refs[TIN_C],
            BULK,
            LEDGER,
        ],
    )
    loaded.execute(
        "INSERT INTO cases (case_id, grouping_key, status, severity, risk_score, sensitivity,"
        " alert_count, open_alert_count, suppressed_alert_count, retracted_alert_count, title,"
        " first_seen_at, refreshed_at) VALUES"
        " ('cs_1', 'k', 'open', 'critical', 1, 1, 3, 2, 0, 1, 't', now(), now())"
    )
    loaded.execute(
        "INSERT INTO case_alerts (case_id, alert_id) VALUES ('cs_1', 'al_1'), ('cs_1', 'al_2'), ('cs_1', 'al_3')"
    )
    return refs


def test_case_list_counts_distinct_taxpayers_as_the_report_does(loaded, with_case):
    found = affected_taxpayers(loaded, "case", "cs_1")
    assert [t.taxpayer_ref for t in found.taxpayers] == sorted([with_case[TIN_A], with_case[TIN_B]])
    counted = loaded.execute(
        "SELECT subjects FROM subject_counts WHERE scope = 'case' AND scope_id = 'cs_1'"
    ).fetchone()[0]
    assert len(found.taxpayers) == counted == 2
    a = next(t for t in found.taxpayers if t.taxpayer_ref == with_case[TIN_A])
    assert a.alert_ids == ("al_1", "al_2")
    assert a.event_types == ("disclosure", "request")
    assert a.recipients == ("DHS-ICE",)


def test_order_and_alert_scopes(loaded, with_case):
    loaded.execute("INSERT INTO registry_court_orders (order_id) VALUES ('order-1')")
    assert [t.taxpayer_ref for t in affected_taxpayers(loaded, "order", "order-1").taxpayers] == [
        with_case[TIN_A]
    ]
    assert len(affected_taxpayers(loaded, "alert", "al_2").taxpayers) == 2
    with pytest.raises(InputError, match="no case 'cs_nope'"):
        affected_taxpayers(loaded, "case", "cs_nope")


def test_matching_reports_lines_never_identifiers(loaded, with_case):
    found = affected_taxpayers(loaded, "case", "cs_1")
    matched = match_identifiers(found, [TIN_C, "", "6660 10001", "not an id", TIN_B], resolve_key())
    rows = {t.taxpayer_ref: t.match_rows for t in matched.taxpayers}
    # "6660 10001" is A written differently: the same normalised identifier
    assert rows == {with_case[TIN_A]: (3,), with_case[TIN_B]: (5,)}
    assert matched.identifiers_supplied == 4 and matched.matched == 2


def test_affected_command_csv_and_match(loaded, with_case, db_path, tmp_path):
    loaded.close()
    ids = tmp_path / "ids.txt"
    ids.write_text(f"{TIN_B}\n")
    result = CliRunner().invoke(
        main,
        [
            "--db",
            str(db_path),
            "affected",
            "--case",
            "cs_1",
            "--match-ids",
            str(ids),
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert not TIN_SHAPE.search(result.output)
    payload = json.loads(result.output)
    assert payload["taxpayers"] == 2 and payload["matched"] == 1
    missing = CliRunner().invoke(main, ["--db", str(db_path), "affected", "--case", "cs_x"])
    assert missing.exit_code == 2 and "dwatch alerts list" in missing.output


def test_accounting_command_reads_stdin_and_prints_no_identifier(loaded, db_path, tmp_path):
    loaded.close()
    runner = CliRunner()
    result = runner.invoke(
        main, ["--db", str(db_path), "accounting", "--refresh"], input=f"{TIN_A}\n"
    )
    assert result.exit_code == 0, result.output
    assert "disclosure" in result.output and "request_chain" in result.output
    assert not TIN_SHAPE.search(result.output)
    out = tmp_path / "a.csv"
    result = runner.invoke(
        main,
        [
            "--db",
            str(db_path),
            "accounting",
            "--pseudonym",
            pseudonymise(TIN_C, resolve_key()),
            "--format",
            "csv",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert out.read_text().count("\n") == 2  # header and C's one access
    bad = runner.invoke(main, ["--db", str(db_path), "accounting", "--pseudonym", TIN_C])
    assert bad.exit_code == 2 and not TIN_SHAPE.search(bad.output)


WHOLE_REF = re.compile(r"tp_[0-9a-f]{32}")


@pytest.mark.parametrize("fmt", ["text", "csv", "json"])
def test_affected_shortens_pseudonyms_unless_asked_for_whole_ones(
    loaded, with_case, db_path, tmp_path, fmt
):
    loaded.close()
    ids = tmp_path / "ids.txt"
    ids.write_text(f"{TIN_B}\n{TIN_A}\n")
    base = ["--db", str(db_path), "affected", "--case", "cs_1", "--format", fmt]
    runner = CliRunner()
    short = runner.invoke(main, [*base, "--match-ids", str(ids)])
    assert short.exit_code == 0, short.output
    assert not WHOLE_REF.search(short.output)
    for ref in (with_case[TIN_A], with_case[TIN_B]):
        assert ref[:7] + "…" in short.output
    # matching still reports the lines of the key holder's file, never the identifiers
    assert not TIN_SHAPE.search(short.output)
    if fmt == "json":
        rows = {r["taxpayer_ref"]: r["match_lines"] for r in json.loads(short.output)["affected"]}
        assert rows == {with_case[TIN_A][:7] + "…": "2", with_case[TIN_B][:7] + "…": "1"}
    whole = runner.invoke(main, [*base, "--match-ids", str(ids), "--whole-pseudonyms"])
    assert whole.exit_code == 0, whole.output
    assert set(WHOLE_REF.findall(whole.output)) == {with_case[TIN_A], with_case[TIN_B]}
    assert not TIN_SHAPE.search(whole.output)


def test_affected_help_names_the_option_and_the_default():
    result = CliRunner().invoke(main, ["affected", "--help"])
    assert result.exit_code == 0
    assert "--whole-pseudonyms" in result.output and "shortened" in result.output
