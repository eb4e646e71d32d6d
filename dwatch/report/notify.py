"""E-mail the report to compliance staff when new cases reach the configured severity.

Delivery never loses a report: the report files are written first, then a row goes into the
``notifications`` outbox naming a copy of the HTML kept under ``OUT/outbox/`` (later runs
overwrite report.html), and only then is SMTP tried, a bounded
number of times with exponential backoff. A notification still pending after that keeps its
error and attempt count, and the next run sends it before anything else.

Configuration: a YAML file (``--config``, $DWATCH_NOTIFY_CONFIG) and/or environment variables
($DWATCH_SMTP_HOST, _PORT, _FROM, _TO (comma-separated), _MIN_SEVERITY, _STARTTLS, _USER,
_PASSWORD); the environment wins. The password is read from the environment only.
"""

from __future__ import annotations

import logging
import os
import shutil
import smtplib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import yaml

from detectors.alerts import SEVERITIES
from dwatch import yamlfile
from dwatch.errors import ConfigError
from dwatch.masking import mask_document, mask_text
from dwatch.report.cases import SEVERITY_RANK
from dwatch.report.safety import terminal_text

if TYPE_CHECKING:
    from dwatch.report.render import ReportResult

log = logging.getLogger("dwatch.report.notify")
CONFIG_ENV = "DWATCH_NOTIFY_CONFIG"
_ENV = {
    "host": "DWATCH_SMTP_HOST",
    "port": "DWATCH_SMTP_PORT",
    "sender": "DWATCH_SMTP_FROM",
    "recipients": "DWATCH_SMTP_TO",
    "min_severity": "DWATCH_SMTP_MIN_SEVERITY",
    "starttls": "DWATCH_SMTP_STARTTLS",
    "username": "DWATCH_SMTP_USER",
}
PASSWORD_ENV = "DWATCH_SMTP_PASSWORD"
# Errors worth another try: the server said "later" (4xx), dropped us, or was unreachable.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (smtplib.SMTPException, OSError)


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    sender: str
    recipients: tuple[str, ...]
    port: int = 25
    min_severity: str = "high"
    starttls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout_seconds: float = 30.0
    attempts: int = 3
    backoff_seconds: float = 5.0
    subject_prefix: str = "[Disclosure Watch]"


def _bool(value: object, where: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off", ""}:
        return False
    raise ConfigError(f"{value!r} is not true or false", where=where, fix="write true or false")


def load_smtp_config(
    path: Path | None = None, env: dict[str, str] | None = None
) -> SmtpConfig | None:
    """The delivery config, or None when no SMTP host is configured (delivery off)."""
    env = dict(os.environ if env is None else env)
    chosen = path or (Path(env[CONFIG_ENV]) if env.get(CONFIG_ENV) else None)
    raw: dict[str, Any] = {}
    where = "environment"
    if chosen is not None:
        where = str(chosen)
        try:
            loaded = yamlfile.safe_load(chosen.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(
                f"cannot read the notification config: {exc}",
                where=where,
                fix="check the path and the YAML syntax",
            ) from exc
        raw = dict(loaded.get("smtp", loaded)) if isinstance(loaded, dict) else {}
        unknown = sorted(
            set(raw) - {f.name for f in SmtpConfig.__dataclass_fields__.values()} - {"password"}
        )
        if unknown:
            raise ConfigError(
                f"unknown settings: {', '.join(unknown)}",
                where=where,
                fix=f"use {', '.join(SmtpConfig.__dataclass_fields__)}",
            )
        if "password" in raw:
            raise ConfigError(
                "passwords do not belong in the config file",
                where=f"{where}: password",
                fix=f"set {PASSWORD_ENV} in the environment instead",
            )
    for key, var in _ENV.items():
        if env.get(var):
            raw[key] = env[var]
    if env.get(PASSWORD_ENV):
        raw["password"] = env[PASSWORD_ENV]
    if not raw.get("host"):
        return None
    recipients = raw.get("recipients") or []
    if isinstance(recipients, str):
        recipients = [r.strip() for r in recipients.split(",")]
    recipients = tuple(r for r in (str(x).strip() for x in recipients) if r)
    bad = [r for r in recipients if "@" not in r]
    if not recipients or bad:
        raise ConfigError(
            f"recipients must be e-mail addresses{': ' + ', '.join(bad) if bad else ' (none given)'}",
            where=f"{where}: recipients",
            fix=f"list addresses, e.g. {_ENV['recipients']}=compliance@agency.example,lead@agency.example",
        )
    sender = str(raw.get("sender") or "")
    if "@" not in sender:
        raise ConfigError(
            "the sender address is missing or not an address",
            where=f"{where}: sender",
            fix=f"set {_ENV['sender']}=dwatch@agency.example",
        )
    min_severity = str(raw.get("min_severity") or "high").lower()
    if min_severity not in SEVERITIES:
        raise ConfigError(
            f"unknown severity {min_severity!r}",
            where=f"{where}: min_severity",
            fix=f"use one of {', '.join(SEVERITIES)}",
        )
    try:
        numbers = {k: float(raw[k]) for k in ("timeout_seconds", "backoff_seconds") if k in raw}
        port = int(raw.get("port") or 25)
        attempts = int(raw.get("attempts") or 3)
    except ValueError as exc:
        raise ConfigError(
            f"not a number: {exc}", where=where, fix="port and attempts are whole numbers"
        ) from exc
    if not 1 <= attempts <= 10:
        raise ConfigError(
            f"attempts must be 1-10, not {attempts}",
            where=f"{where}: attempts",
            fix="retries are bounded; the next run retries what is still pending",
        )
    return SmtpConfig(
        host=str(raw["host"]),
        sender=sender,
        recipients=recipients,
        port=port,
        min_severity=min_severity,
        starttls=_bool(raw.get("starttls", False), f"{where}: starttls"),
        username=str(raw["username"]) if raw.get("username") else None,
        password=str(raw["password"]) if raw.get("password") else None,
        attempts=attempts,
        subject_prefix=str(raw.get("subject_prefix") or "[Disclosure Watch]"),
        **numbers,
    )


@dataclass
class NotifyOutcome:
    configured: bool
    queued: str | None = None  # notification id queued this run
    announced_case_ids: list[str] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        if not self.configured:
            return "e-mail: not configured (set DWATCH_SMTP_HOST or DWATCH_NOTIFY_CONFIG)"
        parts = []
        parts.append(
            f"queued {self.queued} for {len(self.announced_case_ids)} new case(s)"
            if self.queued
            else "no new cases at or above the configured severity"
        )
        if self.sent:
            parts.append(f"sent {len(self.sent)}")
        if self.pending:
            parts.append(
                f"{len(self.pending)} still pending (will retry next run): "
                + "; ".join(f"{k}: {v}" for k, v in self.errors.items())
            )
        return "e-mail: " + ", ".join(parts)


def cases_to_announce(
    con: duckdb.DuckDBPyConnection, min_severity: str
) -> list[tuple[str, str, str]]:
    """Open, untriaged cases at or above ``min_severity`` that no notification has announced."""
    wanted = [s for s in SEVERITIES if SEVERITY_RANK[s] >= SEVERITY_RANK[min_severity]]
    return [
        (r[0], r[1], r[2])
        for r in con.execute(
            """
            SELECT c.case_id, c.severity, c.title FROM cases c JOIN case_triage_state t USING (case_id)
            WHERE c.status = 'open' AND t.triage_state = 'new'
              AND c.severity IN (SELECT unnest(?::VARCHAR[]))
              AND c.case_id NOT IN (SELECT unnest(case_ids) FROM notifications)
            ORDER BY list_position(?::VARCHAR[], c.severity) DESC, c.risk_score DESC
            """,
            [wanted, list(SEVERITIES)],
        ).fetchall()
    ]


def queue_notification(
    con: duckdb.DuckDBPyConnection,
    config: SmtpConfig,
    html_path: Path,
    cases: list[tuple[str, str, str]],
) -> str:
    """Record the notification in the outbox before any attempt to send it."""
    notification_id = "nt_" + uuid.uuid4().hex[:16]
    top = cases[0][1]
    subject = (
        f"{config.subject_prefix} {len(cases)} new case(s) at or above {config.min_severity}"
        f" (highest: {top})"
    )
    con.execute(
        "INSERT INTO notifications (notification_id, status, subject, recipients, case_ids, report_html_path)"
        " VALUES (?, 'pending', ?, ?, ?, ?)",
        [notification_id, subject, list(config.recipients), [c[0] for c in cases], str(html_path)],
    )
    return notification_id


def build_message(
    config: SmtpConfig, notification: dict[str, Any], html: str, summary_lines: list[str]
) -> EmailMessage:
    """Plain-text summary, the report inline as the HTML part, and the report attached."""
    message = EmailMessage()
    # Everything mailed passes the masking policy once more (dwatch.masking), last line.
    html = mask_document(html)
    summary_lines = [mask_text(line) for line in summary_lines]
    message["Subject"] = mask_text(notification["subject"])
    message["From"] = config.sender
    message["To"] = ", ".join(notification["recipients"])
    message["Message-ID"] = make_msgid(
        idstring=notification["notification_id"], domain="dwatch.invalid"
    )
    message["X-Dwatch-Notification"] = notification["notification_id"]
    text = "\n".join(
        [
            "New cases need a compliance decision. The full report is attached and shown below.",
            "",
            *summary_lines,
            "",
            "Record decisions with: dwatch alerts resolve CASE_ID --as violation|authorised|data_error|false_positive --note ...",
        ]
    )
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    name = Path(notification["report_html_path"]).name
    message.add_attachment(html.encode("utf-8"), maintype="text", subtype="html", filename=name)
    return message


def _send_once(config: SmtpConfig, message: EmailMessage) -> None:
    with smtplib.SMTP(config.host, config.port, timeout=config.timeout_seconds) as smtp:
        smtp.ehlo()
        if config.starttls:
            smtp.starttls()
            smtp.ehlo()
        if config.username:
            smtp.login(config.username, config.password or "")
        smtp.send_message(message)


def send_with_retry(
    config: SmtpConfig,
    message: EmailMessage,
    *,
    sleep: Callable[[float], None] = time.sleep,
    on_failure: Callable[[int, BaseException], None] | None = None,
) -> tuple[bool, int, str | None]:
    """Try up to ``config.attempts`` times, waiting backoff x 2^n between tries.

    Returns (sent, attempts made, last error).
    """
    last_error: str | None = None
    for attempt in range(1, config.attempts + 1):
        try:
            _send_once(config, message)
            return True, attempt, None
        except TRANSIENT_ERRORS as exc:
            last_error = f"{type(exc).__name__}: {exc}"
            log.warning(
                "SMTP delivery to %s:%s failed (attempt %d of %d): %s",
                config.host,
                config.port,
                attempt,
                config.attempts,
                last_error,
            )
            if on_failure:
                on_failure(attempt, exc)
            if attempt < config.attempts:
                sleep(config.backoff_seconds * 2 ** (attempt - 1))
    return False, config.attempts, last_error


def _summary_lines(con: duckdb.DuckDBPyConnection, case_ids: list[str]) -> list[str]:
    rows = con.execute(
        "SELECT case_id, severity, risk_score, title FROM cases WHERE case_id IN (SELECT unnest(?::VARCHAR[]))"
        " ORDER BY risk_score DESC",
        [case_ids],
    ).fetchall()
    return [f"- {r[1].upper():<8} risk {r[2]:>7.2f}  {r[0]}  {terminal_text(r[3])}" for r in rows]


def deliver_pending(
    con: duckdb.DuckDBPyConnection,
    config: SmtpConfig,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> NotifyOutcome:
    """Send every pending notification, oldest first; record each outcome in the outbox."""
    outcome = NotifyOutcome(configured=True)
    cursor = con.execute(
        "SELECT notification_id, subject, recipients, case_ids, report_html_path FROM notifications"
        " WHERE status = 'pending' ORDER BY created_at, notification_id"
    )
    names = [d[0] for d in cursor.description]
    pending = [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]
    for notification in pending:
        nid = notification["notification_id"]
        path = Path(notification["report_html_path"])
        try:
            html = path.read_text(encoding="utf-8")
        except OSError as exc:
            sent, attempts, error = False, 0, f"report file unreadable: {exc}"
            log.error("notification %s cannot be sent: %s", nid, error)
        else:
            message = build_message(
                config, notification, html, _summary_lines(con, notification["case_ids"])
            )
            sent, attempts, error = send_with_retry(config, message, sleep=sleep)
        con.execute(
            "UPDATE notifications SET status = CASE WHEN ? THEN 'sent' ELSE 'pending' END,"
            " attempts = attempts + ?, last_attempt_at = now(), last_error = ?,"
            " sent_at = CASE WHEN ? THEN now() END WHERE notification_id = ?",
            [sent, attempts, error, sent, nid],
        )
        if sent:
            log.info("notification %s sent to %s", nid, ", ".join(notification["recipients"]))
            outcome.sent.append(nid)
        else:
            outcome.pending.append(nid)
            outcome.errors[nid] = error or "unknown error"
    return outcome


def notify_after_report(
    con: duckdb.DuckDBPyConnection,
    result: ReportResult,
    config: SmtpConfig | None = None,
    *,
    deliver: bool = True,
    sleep: Callable[[float], None] = time.sleep,
) -> NotifyOutcome:
    """Queue a notification for new cases at/above the severity, then deliver what is pending."""
    config = config or load_smtp_config()
    if config is None:
        return NotifyOutcome(configured=False)
    queued = None
    cases = cases_to_announce(con, config.min_severity)
    if cases and result.html_path is not None:
        # The mail announces this report: keep this exact file for the send and any retry.
        outbox = result.out_dir / "outbox"
        outbox.mkdir(exist_ok=True)
        copy = outbox / f"report-{result.data.generated_at:%Y%m%dT%H%M%S%fZ}.html"
        shutil.copyfile(result.html_path, copy)
        queued = queue_notification(con, config, copy, cases)
    outcome = (
        deliver_pending(con, config, sleep=sleep) if deliver else NotifyOutcome(configured=True)
    )
    outcome.queued = queued
    outcome.announced_case_ids = [c[0] for c in cases] if queued else []
    return outcome
