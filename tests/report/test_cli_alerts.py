"""``dwatch alerts`` as an analyst uses it: list, show, ack, resolve, suppress."""

from __future__ import annotations

from datetime import date, timedelta

from click.testing import CliRunner
from report_seed import BULK_REQUEST, XSS_IMG

from dwatch.cli import main


def _run(db_path, *args: str):
    result = CliRunner().invoke(
        main, ["--db", str(db_path), "alerts", *args], catch_exceptions=False
    )
    return result


def _bulk_case_id(con) -> str:
    return con.execute(
        "SELECT case_id FROM cases WHERE request_id = ? AND court_order_ids = []", [BULK_REQUEST]
    ).fetchall()[0][0]


def test_list_show_ack_resolve(con, seeded, db_path):
    listed = _run(db_path, "list")
    assert listed.exit_code == 0, listed.output
    assert "critical" in listed.output and BULK_REQUEST in listed.output
    assert "NY-REQ-0009" not in listed.output  # retracted: only with --all
    assert "NY-REQ-0009" in _run(db_path, "list", "--all").output

    case_id = _bulk_case_id(con)
    shown = _run(db_path, "show", case_id[:9])
    assert shown.exit_code == 0, shown.output
    assert "42,695 addresses were disclosed" in shown.output
    assert "decisions: none yet (state: new)" in shown.output

    acked = _run(db_path, "ack", case_id, "--by", "a.analyst", "--note", "pulled the letter")
    assert acked.exit_code == 0 and "acknowledged by a.analyst" in acked.output
    resolved = _run(
        db_path,
        "resolve",
        case_id,
        "--as",
        "violation",
        "--note",
        "no address set forth",
        "--by",
        "b.lead",
    )
    assert resolved.exit_code == 0, resolved.output
    history = _run(db_path, "show", case_id).output
    assert (
        "acknowledged by a.analyst" in history
        and "violation by b.lead: no address set forth" in history
    )
    # Resolved cases leave the default list; the state is shown with --all.
    assert case_id not in _run(db_path, "list").output
    assert "resolved:violation" in _run(db_path, "list", "--all").output


def test_show_alert_masks_taxpayer_refs_and_shows_log_text_inert(con, seeded, db_path):
    use_alert = seeded["use_alert_ids"][0]
    shown = _run(db_path, "show", use_alert)
    assert shown.exit_code == 0, shown.output
    assert "tp_" in shown.output and "…" in shown.output
    evidence = con.execute(
        "SELECT evidence->>'taxpayer_ref' FROM alerts WHERE alert_id = ?", [use_alert]
    ).fetchall()[0][0]
    assert evidence not in shown.output  # full pseudonym never printed
    img_alert = seeded["use_alert_ids"][1]
    assert XSS_IMG in _run(db_path, "show", img_alert).output  # plain text in a terminal


def test_terminal_escapes_in_log_values_are_made_visible(con, seeded, db_path):
    con.execute(
        "UPDATE alerts SET explanation = 'evil \x1b[2J cleared' WHERE alert_id = ?",
        [seeded["bulk_alert_id"]],
    )
    out = _run(db_path, "show", seeded["bulk_alert_id"]).output
    assert "\x1b" not in out and "\\x1b[2J" in out


def test_bad_id_and_bad_resolution_give_clean_errors(con, seeded, db_path):
    missing = CliRunner().invoke(
        main,
        ["--db", str(db_path), "alerts", "resolve", "cs_nope", "--as", "violation", "--note", "x"],
    )
    assert missing.exit_code == 2
    assert "no case or alert with id" in missing.output and "fix:" in missing.output
    wrong = _run(db_path, "resolve", _bulk_case_id(con), "--as", "closed", "--note", "x")
    assert wrong.exit_code != 0 and "closed" in wrong.output


def test_suppress_and_list_suppressions(con, seeded, db_path):
    expires = (date.today() + timedelta(days=10)).isoformat()
    added = _run(
        db_path,
        "suppress",
        "--detector",
        "iforest_recipient_mix",
        "--recipient",
        "CA-FTB",
        "--reason",
        "agreed re-extract",
        "--owner",
        "j.doe",
        "--expires",
        expires,
    )
    assert added.exit_code == 0, added.output
    assert "suppresses 1 alert(s)" in added.output
    listed = _run(db_path, "suppressions").output
    assert "active" in listed and "owner j.doe" in listed and "recipient_agency=CA-FTB" in listed
    assert "CA-FTB" not in _run(db_path, "list").output
    missing_owner = CliRunner().invoke(
        main,
        [
            "--db",
            str(db_path),
            "alerts",
            "suppress",
            "--recipient",
            "SSA",
            "--reason",
            "r",
            "--expires",
            expires,
        ],
    )
    assert missing_owner.exit_code != 0 and "--owner" in missing_owner.output
