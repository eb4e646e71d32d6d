"""``dwatch report`` from the command line."""

from __future__ import annotations

from click.testing import CliRunner

from dwatch.cli import main


def test_report_command_writes_the_chosen_formats(con, seeded, db_path, tmp_path):
    out = tmp_path / "reports"
    result = CliRunner().invoke(
        main, ["--db", str(db_path), "report", "--out", str(out), "--format", "html,md"]
    )
    assert result.exit_code == 0, result.output
    assert (out / "report.html").is_file() and (out / "report.md").is_file()
    assert not list(out.glob("report-*.csv"))
    assert "case(s) need attention" in result.output and "e-mail: not configured" in result.output


def test_report_command_refuses_an_unknown_format(con, seeded, db_path, tmp_path):
    result = CliRunner().invoke(
        main, ["--db", str(db_path), "report", "--out", str(tmp_path), "--format", "pdf"]
    )
    assert result.exit_code == 2
    assert "unknown report format(s): pdf" in result.output and "fix:" in result.output
    assert not (tmp_path / "report.html").exists()


def test_report_command_reports_bad_mail_config_clearly(
    con, seeded, db_path, tmp_path, monkeypatch
):
    monkeypatch.setenv("DWATCH_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("DWATCH_SMTP_FROM", "dwatch@agency.example")
    result = CliRunner().invoke(
        main, ["--db", str(db_path), "report", "--out", str(tmp_path / "r")]
    )
    assert result.exit_code == 2 and "recipients must be e-mail addresses" in result.output
    assert (
        tmp_path / "r" / "report.html"
    ).is_file()  # the report was written before delivery was tried


def test_report_command_mails_new_cases_with_a_config_file(con, seeded, db_path, tmp_path):
    from aiosmtpd.controller import Controller
    from test_notify import Inbox, _free_port

    port = _free_port()
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    config = tmp_path / "notify.yaml"
    config.write_text(
        f"smtp:\n  host: 127.0.0.1\n  port: {port}\n  sender: dwatch@agency.example\n"
        "  recipients: [compliance@agency.example]\n  min_severity: critical\n"
    )
    try:
        result = CliRunner().invoke(
            main,
            [
                "--db",
                str(db_path),
                "report",
                "--out",
                str(tmp_path / "r"),
                "--notify-config",
                str(config),
            ],
        )
    finally:
        controller.stop()
    assert result.exit_code == 0, result.output
    assert "e-mail: queued" in result.output and "sent 1" in result.output
    assert len(inbox.messages) == 1
