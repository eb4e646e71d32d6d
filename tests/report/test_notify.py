"""E-mail delivery against a real SMTP server on loopback (aiosmtpd), including failures."""

from __future__ import annotations

import email
import email.policy
import logging
import socket
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from report_seed import XSS_SCRIPT

from dwatch.errors import ConfigError
from dwatch.report.notify import SmtpConfig, load_smtp_config, notify_after_report
from dwatch.report.render import build_report


class Inbox:
    """An aiosmtpd handler that keeps what it receives; can refuse the first N messages."""

    def __init__(self, refuse_first: int = 0) -> None:
        self.refuse_first = refuse_first
        self.refused = 0
        self.messages: list[tuple[list[str], email.message.EmailMessage]] = []

    async def handle_DATA(self, server, session, envelope) -> str:  # aiosmtpd hook name
        if self.refused < self.refuse_first:
            self.refused += 1
            return "451 4.3.0 Mailbox temporarily unavailable, try again later"
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append((list(envelope.rcpt_tos), message))
        return "250 OK"


def _lines(text: str) -> list[str]:
    """Mail transport turns line ends into CRLF; compare the content line by line."""
    return text.replace("\r\n", "\n").strip().split("\n")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def smtp_port() -> int:
    return _free_port()


def _start(inbox: Inbox, port: int) -> Controller:
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    return controller


@pytest.fixture
def inbox(smtp_port: int) -> Iterator[Inbox]:
    handler = Inbox()
    controller = _start(handler, smtp_port)
    yield handler
    controller.stop()


def _config(port: int, **overrides) -> SmtpConfig:
    base = SmtpConfig(
        host="127.0.0.1",
        port=port,
        sender="dwatch@agency.example",
        recipients=("compliance@agency.example", "lead@agency.example"),
        min_severity="high",
        timeout_seconds=5,
        attempts=3,
        backoff_seconds=0.5,
    )
    return replace(base, **overrides)


def test_new_cases_are_mailed_with_the_report_inline_and_attached(
    con, seeded, directory, tmp_path, inbox, smtp_port
):
    result = build_report(con, tmp_path / "out", directory=directory)
    outcome = notify_after_report(con, result, _config(smtp_port), sleep=lambda s: None)
    assert outcome.sent == [outcome.queued] and not outcome.pending
    assert len(inbox.messages) == 1
    rcpts, message = inbox.messages[0]
    assert rcpts == ["compliance@agency.example", "lead@agency.example"]
    assert "3 new case(s) at or above high (highest: critical)" in message["Subject"]
    html_part = message.get_body(preferencelist=("html",))
    assert html_part is not None
    html = html_part.get_content()
    sent_copy = Path(con.execute("SELECT report_html_path FROM notifications").fetchall()[0][0])
    assert sent_copy.parent == tmp_path / "out" / "outbox"
    assert _lines(html) == _lines(sent_copy.read_text(encoding="utf-8"))
    assert _lines(html) == _lines(result.html_path.read_text(encoding="utf-8"))
    assert "&lt;script&gt;" in html and XSS_SCRIPT not in html
    text = message.get_body(preferencelist=("plain",)).get_content()
    assert "CRITICAL" in text and "dwatch alerts resolve" in text
    attachments = list(message.iter_attachments())
    assert len(attachments) == 1 and attachments[0].get_filename() == sent_copy.name
    row = con.execute("SELECT status, attempts, last_error FROM notifications").fetchall()
    assert row == [("sent", 1, None)]


def test_nothing_is_sent_without_new_cases_at_the_severity(
    con, seeded, directory, tmp_path, inbox, smtp_port
):
    first = build_report(con, tmp_path / "out", directory=directory)
    notify_after_report(
        con, first, _config(smtp_port, min_severity="critical"), sleep=lambda s: None
    )
    assert len(inbox.messages) == 1
    announced = con.execute("SELECT case_ids FROM notifications").fetchall()[0][0]
    severities = {
        r[0]
        for r in con.execute(
            "SELECT severity FROM cases WHERE case_id IN (SELECT unnest(?::VARCHAR[]))", [announced]
        ).fetchall()
    }
    assert severities == {"critical"} and len(announced) == 2
    # The next run finds the same cases: already announced, nothing new, no mail.
    second = build_report(con, tmp_path / "out", directory=directory)
    outcome = notify_after_report(
        con, second, _config(smtp_port, min_severity="critical"), sleep=lambda s: None
    )
    assert outcome.queued is None and len(inbox.messages) == 1
    assert "no new cases" in outcome.describe()


def test_a_refused_send_is_retried_with_backoff_and_logged(
    con, seeded, directory, tmp_path, smtp_port, caplog
):
    handler = Inbox(refuse_first=2)
    controller = _start(handler, smtp_port)
    waits: list[float] = []
    try:
        result = build_report(con, tmp_path / "out", directory=directory)
        with caplog.at_level(logging.WARNING, logger="dwatch.report.notify"):
            outcome = notify_after_report(
                con, result, _config(smtp_port, attempts=3), sleep=waits.append
            )
    finally:
        controller.stop()
    assert handler.refused == 2 and len(handler.messages) == 1
    assert outcome.sent and waits == [0.5, 1.0]  # backoff doubles
    assert [
        r
        for r in caplog.records
        if "failed (attempt 1 of 3)" in r.getMessage() and "451" in r.getMessage()
    ]
    assert con.execute("SELECT status, attempts FROM notifications").fetchall() == [("sent", 3)]


def test_a_failed_delivery_stays_in_the_outbox_and_the_next_run_sends_it(
    con, seeded, directory, tmp_path, smtp_port
):
    # No server listening: every attempt fails, the report is on disk, the notification waits.
    result = build_report(con, tmp_path / "out", directory=directory)
    outcome = notify_after_report(con, result, _config(smtp_port, attempts=2), sleep=lambda s: None)
    assert outcome.pending == [outcome.queued] and not outcome.sent
    status, attempts, error, path = con.execute(
        "SELECT status, attempts, last_error, report_html_path FROM notifications"
    ).fetchall()[0]
    assert (status, attempts) == ("pending", 2) and "Connection refused" in error
    assert Path(path).is_file() and result.html_path.is_file()

    # The server comes back; the next run has no new cases but delivers the pending mail.
    handler = Inbox()
    controller = _start(handler, smtp_port)
    try:
        later = build_report(con, tmp_path / "out", directory=directory)
        again = notify_after_report(con, later, _config(smtp_port), sleep=lambda s: None)
    finally:
        controller.stop()
    assert again.queued is None and again.sent == [outcome.queued]
    assert len(handler.messages) == 1
    assert _lines(
        handler.messages[0][1].get_body(preferencelist=("html",)).get_content()
    ) == _lines(Path(path).read_text())
    assert con.execute("SELECT status, attempts FROM notifications").fetchall() == [("sent", 3)]


def test_config_from_file_and_environment(tmp_path):
    config_file = tmp_path / "notify.yaml"
    config_file.write_text(
        "smtp:\n  host: mail.agency.example\n  port: 587\n  sender: dwatch@agency.example\n"
        "  recipients: [a@agency.example]\n  starttls: true\n  min_severity: critical\n"
    )
    config = load_smtp_config(
        config_file,
        env={
            "DWATCH_SMTP_TO": "x@agency.example, y@agency.example",
            "DWATCH_SMTP_PASSWORD": "s3cret",
        },
    )
    assert config is not None
    assert (config.host, config.port, config.starttls, config.min_severity) == (
        "mail.agency.example",
        587,
        True,
        "critical",
    )
    assert config.recipients == ("x@agency.example", "y@agency.example")  # environment wins
    assert config.password == "s3cret" and "s3cret" not in repr(config)
    assert load_smtp_config(env={}) is None  # not configured: delivery off, not an error


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DWATCH_SMTP_HOST": "h", "DWATCH_SMTP_FROM": "d@x.example"}, "recipients"),
        (
            {
                "DWATCH_SMTP_HOST": "h",
                "DWATCH_SMTP_FROM": "d@x.example",
                "DWATCH_SMTP_TO": "not-an-address",
            },
            "not-an-address",
        ),
        ({"DWATCH_SMTP_HOST": "h", "DWATCH_SMTP_TO": "a@x.example"}, "sender"),
        (
            {
                "DWATCH_SMTP_HOST": "h",
                "DWATCH_SMTP_FROM": "d@x.example",
                "DWATCH_SMTP_TO": "a@x.example",
                "DWATCH_SMTP_MIN_SEVERITY": "urgent",
            },
            "unknown severity",
        ),
        (
            {
                "DWATCH_SMTP_HOST": "h",
                "DWATCH_SMTP_FROM": "d@x.example",
                "DWATCH_SMTP_TO": "a@x.example",
                "DWATCH_SMTP_PORT": "twenty-five",
            },
            "not a number",
        ),
    ],
)
def test_bad_config_is_refused_with_where_and_fix(env, message):
    with pytest.raises(ConfigError, match=message) as info:
        load_smtp_config(env=env)
    assert info.value.fix


def test_password_in_config_file_is_refused(tmp_path):
    config_file = tmp_path / "notify.yaml"
    config_file.write_text(
        "host: h\nsender: d@x.example\nrecipients: [a@x.example]\npassword: oops\n"
    )
    with pytest.raises(ConfigError, match="passwords do not belong"):
        load_smtp_config(config_file, env={})
