"""The Prefect ``report`` flow end to end: files, artifacts in the Prefect API, the e-mail."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.testing.utilities import prefect_test_harness
from test_notify import Inbox, _free_port

from dwatch.report.artifacts import summary_markdown
from dwatch.report.render import build_report
from flows.report import report_flow, write_report


@pytest.fixture(scope="module")
def prefect_api() -> Iterator[None]:
    with prefect_test_harness(server_startup_timeout=120):
        yield


def _artifacts(key: str) -> list:
    with get_client(sync_client=True) as client:
        return client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
        )


def test_report_flow_writes_files_publishes_artifacts_and_mails(
    prefect_api, con, seeded, db_path, tmp_path, monkeypatch
):
    port = _free_port()
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    monkeypatch.setenv("DWATCH_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("DWATCH_SMTP_PORT", str(port))
    monkeypatch.setenv("DWATCH_SMTP_FROM", "dwatch@agency.example")
    monkeypatch.setenv("DWATCH_SMTP_TO", "compliance@agency.example")
    monkeypatch.setenv("DWATCH_SMTP_MIN_SEVERITY", "high")
    try:
        summary = report_flow(db=str(db_path), out_dir=str(tmp_path / "out"))
    finally:
        controller.stop()
    assert summary["cases_needing_attention"] >= 3
    assert (tmp_path / "out" / "report.html").is_file() and (
        tmp_path / "out" / "report-cases.csv"
    ).is_file()
    assert len(inbox.messages) == 1
    markdown = _artifacts("dwatch-report-summary")
    table = _artifacts("dwatch-open-cases")
    assert markdown and table
    assert f"**{summary['cases_needing_attention']} case(s) need attention**" in markdown[0].data
    assert "critical" in str(table[0].data)
    assert con.execute("SELECT status FROM notifications").fetchall() == [("sent",)]


def test_write_report_task_logic_runs_without_prefect(con, seeded, db_path, tmp_path):
    report = write_report.fn(str(db_path), str(tmp_path / "out"), ["md"], None, False)
    assert report["files"] == [str(tmp_path / "out" / "report.md")]
    assert report["queued_notification"] is None
    assert all(
        row["severity"] in ("critical", "high", "medium", "low", "info") for row in report["table"]
    )


def test_summary_markdown_escapes_log_values(con, seeded, directory, tmp_path):
    result = build_report(con, tmp_path / "o", formats=["html"], directory=directory)
    result.data.attention[0].title = "<img src=x onerror=alert(1)> | [a](http://evil)"
    text = summary_markdown(result.data, [Path("reports/report.html")])
    assert "<img" not in text and "&lt;img" in text and r"\| \[a\](http://evil)" in text


def test_notify_task_raises_for_a_retry_and_keeps_the_mail_pending(
    con, seeded, db_path, tmp_path, monkeypatch
):
    from flows.report import DeliveryPending, notify

    config = tmp_path / "notify.yaml"
    config.write_text(
        f"host: 127.0.0.1\nport: {_free_port()}\nsender: dwatch@agency.example\n"
        "recipients: [compliance@agency.example]\nattempts: 1\nbackoff_seconds: 0\n"
    )
    monkeypatch.setenv("DWATCH_NOTIFY_CONFIG", str(config))
    report = write_report.fn(str(db_path), str(tmp_path / "out"), ["html"], None, True)
    assert report["queued_notification"]  # queued before any attempt to send
    with pytest.raises(DeliveryPending, match="not sent") as info:
        notify.fn(str(db_path))  # no server on that port
    assert "next run retries" in (info.value.fix or "")
    assert con.execute("SELECT status, attempts FROM notifications").fetchall() == [("pending", 1)]
