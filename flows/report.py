"""Prefect flow ``report``: cases, report files, Prefect artifacts, then e-mail. Thin: logic is dwatch.report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from dwatch.errors import DWatchError
from dwatch.masking import mask_json, mask_text
from dwatch.report.artifacts import case_table, summary_markdown
from dwatch.report.notify import deliver_pending, load_smtp_config, notify_after_report
from dwatch.report.render import build_report, parse_formats
from dwatch.store import connect, default_db_path


class DeliveryPending(DWatchError):
    """A report e-mail could not be sent yet; it stays in the outbox for the next try."""


@task
def write_report(
    db: str, out_dir: str, formats: list[str], data_docs: str | None, notify: bool
) -> dict[str, Any]:
    """Refresh cases, write the report files, and queue the e-mail before any attempt to send."""
    con = connect(db)
    try:
        result = build_report(
            con, Path(out_dir), formats=formats, data_docs=Path(data_docs) if data_docs else None
        )
        queued = None
        if notify:
            queued = notify_after_report(con, result, deliver=False).queued
        return {
            "markdown": summary_markdown(result.data, result.files),
            "table": case_table(result.data),
            "summary": result.data.summary,
            "files": [str(p) for p in result.files],
            "queued_notification": queued,
        }
    finally:
        con.close()


@task
def publish_artifacts(report: dict[str, Any]) -> None:
    """Show the summary and the open cases in the Prefect UI."""
    create_markdown_artifact(
        markdown=mask_text(report["markdown"]),  # last line (dwatch.masking)
        key="dwatch-report-summary",
        description="Disclosure Watch: cases needing attention",
    )
    create_table_artifact(
        table=mask_json(report["table"], None)
        or [{"case_id": "", "severity": "", "title": "no open cases"}],
        key="dwatch-open-cases",
        description="Open cases, highest severity and risk first",
    )


@task(retries=2, retry_delay_seconds=[30, 120])
def notify(db: str) -> list[str]:
    """Send pending report e-mails (I/O: retried); raise if any is still pending."""
    config = load_smtp_config()
    if config is None:
        get_run_logger().info("e-mail not configured; nothing sent")
        return []
    con = connect(db)
    try:
        outcome = deliver_pending(con, config)
    finally:
        con.close()
    if outcome.pending:
        raise DeliveryPending(
            f"{len(outcome.pending)} report e-mail(s) not sent: "
            + "; ".join(f"{k}: {v}" for k, v in outcome.errors.items()),
            where=f"SMTP {config.host}:{config.port}",
            fix="the report files are written and the e-mail stays in the notifications outbox; the next run retries",
        )
    return outcome.sent


@flow(name="report", log_prints=False)
def report_flow(
    db: str | None = None,
    out_dir: str = "reports",
    formats: str = "html,csv,md",
    data_docs: str | None = None,
    send: bool = True,
) -> dict[str, Any]:
    """Write the compliance report, publish its summary as artifacts, and e-mail new cases."""
    store = str(db or default_db_path())
    report = write_report(store, out_dir, parse_formats(formats), data_docs, send)
    publish_artifacts(report)
    if send:
        state = notify(store, return_state=True)
        if state.is_failed():
            get_run_logger().error("report e-mail still pending after retries: %s", state.message)
    get_run_logger().info("report summary\n%s", report["markdown"])
    return report["summary"]
