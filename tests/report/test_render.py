"""The report's content and safety in HTML, CSV and Markdown."""

from __future__ import annotations

import csv
import re
from datetime import date, timedelta
from pathlib import Path

import pytest
from report_seed import BULK_REQUEST, CSV_FORMULA, XSS_IMG, XSS_SCRIPT

from dwatch.errors import InputError
from dwatch.report.citations import CitationDirectory
from dwatch.report.render import build_report, parse_formats, write_csv
from dwatch.report.safety import csv_cell, markdown_text
from dwatch.report.suppressions import add_suppression

FULL_PSEUDONYM = re.compile(r"tp_[0-9a-f]{32}")


@pytest.fixture
def report(con, seeded, directory, tmp_path):
    add_suppression(
        con,
        criteria={"detector_id": "iforest_recipient_mix", "recipient_agency": "CA-FTB"},
        reason="annual re-extract agreed with the state",
        owner="j.doe",
        expires_on=date.today() + timedelta(days=30),
    )
    (tmp_path / "out" / "validation").mkdir(parents=True)
    (tmp_path / "out" / "validation" / "index.html").write_text("<html>data docs</html>")
    return build_report(con, tmp_path / "out", directory=directory)


def _all_text(result) -> dict[Path, str]:
    return {p: p.read_text(encoding="utf-8") for p in result.files}


def test_all_formats_are_written(report):
    names = {p.name for p in report.files}
    assert {
        "report.html",
        "report.md",
        "report-cases.csv",
        "report-alerts.csv",
        "report-evidence-events.csv",
        "report-coverage.csv",
        "report-suppressed.csv",
        "report-timeline.csv",
    } <= names
    assert not (report.out_dir / "outbox").exists()  # copies are kept only for e-mailed reports


def test_html_is_self_contained_and_has_every_section(report):
    html = report.html_path.read_text(encoding="utf-8")
    for heading in (
        "Summary",
        "Cases by severity",
        "Disclosures per recipient over time",
        "By court order",
        "By authority",
        "Evidence and explanation, case by case",
        "Validation coverage",
        "Suppressed",
        "Resolved, suppressed and retracted cases",
    ):
        assert f">{heading}</h2>" in html, heading
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)  # no external assets
    assert "<link" not in html and "<script" not in html.lower()
    assert "42,695" in html and "47,289" in html
    assert "CEDC v. Bessent" in html and "D. Mass., 25-cv-12822" in html
    assert "in force, issued 2026-02-05" in html  # order date marked on the chart
    assert 'href="validation/index.html"' in html
    assert "sequence_no skips 437 values &lt;b&gt;bold?&lt;/b&gt;" in html
    assert "annual re-extract agreed with the state" in html


def test_chart_has_a_marker_per_recipient_day(report):
    html = report.html_path.read_text(encoding="utf-8")
    svg = html[html.index("<svg") : html.index("</svg>")]
    points = sum(len(row.points) for row in report.data.timeline.rows)
    assert points > 40
    assert svg.count("<circle") == points
    assert svg.count('stroke-dasharray="4 3"') == 2  # two court orders, each one line


def test_log_values_are_escaped_in_html(report):
    html = report.html_path.read_text(encoding="utf-8")
    assert "&lt;script&gt;document.title=&#39;PWNED&#39;&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=&#34;document.title=&#39;PWNED&#39;&#34;&gt;" in html
    assert XSS_SCRIPT not in html and "<img" not in html


def test_taxpayer_refs_are_masked_everywhere(report, con):
    assert (
        con.execute(
            "SELECT count(*) FROM disclosure_events WHERE taxpayer_ref LIKE 'tp_%'"
        ).fetchone()[0]
        > 0
    )
    for path, text in _all_text(report).items():
        assert not FULL_PSEUDONYM.search(text), path
    assert "tp_" in report.html_path.read_text() and "…" in report.html_path.read_text()


def test_every_csv_cell_is_neutralised(report):
    found_formula = False
    for path in report.files:
        if path.suffix != ".csv":
            continue
        with path.open(encoding="utf-8", newline="") as handle:
            for row in csv.reader(handle):
                for cell in row:
                    assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), (path.name, cell)
                    found_formula |= cell == "'" + CSV_FORMULA
    assert found_formula, "the formula-shaped actor id should appear, neutralised"


@pytest.mark.parametrize(
    "value", ["=1+1", "+1", "-2", "@SUM(A1)", "\tx", "\rx", "=cmd|' /C calc'!A0"]
)
def test_csv_cell_prefixes_formula_starts(value, tmp_path):
    assert csv_cell(value) == "'" + value
    path = tmp_path / "x.csv"
    write_csv(path, ["v"], [[value]])
    with path.open(newline="") as handle:
        assert list(csv.reader(handle))[1] == ["'" + value]


def test_csv_numbers_and_plain_text_are_untouched():
    assert csv_cell(-5) == -5 and csv_cell(3.5) == 3.5 and csv_cell("DHS-ICE") == "DHS-ICE"


def test_markdown_has_the_same_content_and_no_live_markup(report, con):
    md = (report.out_dir / "report.md").read_text(encoding="utf-8")
    assert "## Cases by severity" in md and "## Validation coverage" in md and "## Suppressed" in md
    assert "42,695" in md and BULK_REQUEST in md and "CEDC v. Bessent" in md
    assert "<script" not in md and "<img" not in md
    assert "&lt;script&gt;" in md and "&lt;img src=x onerror" in md
    assert "validation/index.html" in md


def test_markdown_table_cells_cannot_break_out(con, seeded, directory, tmp_path):
    con.execute(
        "UPDATE alerts SET explanation = 'a | b [link](http://x) **bold**' WHERE alert_id = ?",
        [seeded["bulk_alert_id"]],
    )
    result = build_report(con, tmp_path / "md", formats=["md"], directory=directory)
    md = (tmp_path / "md" / "report.md").read_text(encoding="utf-8")
    assert r"a \| b \[link\](http://x) \*\*bold\*\*" in md
    assert result.files == [tmp_path / "md" / "report.md"]
    assert markdown_text("<b>x</b>") == "&lt;b&gt;x&lt;/b&gt;"


def test_without_a_registry_the_report_shows_raw_ids_and_says_why(con, seeded, tmp_path):
    directory = CitationDirectory(
        note="policy registry not loaded (test). Citations are shown as raw registry ids."
    )
    result = build_report(con, tmp_path / "raw", formats=["html"], directory=directory)
    html = result.html_path.read_text(encoding="utf-8")
    assert "Policy registry not available: policy registry not loaded (test)" in html
    assert "26 USC 6103(i)(2)" in html and "order-dmass-25-12822-2026-02-05" in html


def test_new_cases_are_new_only_on_the_first_report(con, seeded, directory, tmp_path):
    first = build_report(con, tmp_path / "a", formats=["html"], directory=directory)
    second = build_report(con, tmp_path / "a", formats=["html"], directory=directory)
    assert first.data.summary["cases_new"] == first.cases.cases > 0
    assert second.data.summary["cases_new"] == 0


def test_bad_format_list_is_refused():
    assert parse_formats("html, CSV") == ["html", "csv"]
    with pytest.raises(InputError, match="pdf"):
        parse_formats("html,pdf")


def test_xss_img_value_reaches_the_report_as_text(report):
    assert any(XSS_IMG in a.actor_id for c in report.data.cases for a in c.alerts)


def test_new_means_new_since_the_last_report_not_since_cases_were_listed(
    con, seeded, directory, tmp_path
):
    from report_seed import retracted_candidate, to_arrow

    from detectors.alerts import merge_alerts
    from dwatch.report.cases import build_cases

    build_cases(con, directory=directory)  # e.g. `dwatch alerts list` before any report
    first = build_report(con, tmp_path / "r", formats=["md"], directory=directory)
    assert first.data.summary["cases_new"] == first.data.summary["cases_total"]
    # A finding first detected after the first report: its case alone is new in the next one.
    fresh = dict(
        retracted_candidate(),
        alert_id="al_fresh",
        request_id="NY-REQ-0010",
        entity_id="NY-REQ-0010",
    )
    merge_alerts(
        con,
        to_arrow([fresh]),
        detector_ids=["unapproved_channel"],
        run_id="detect-9",
        retract_reason="x",
    )
    second = build_report(con, tmp_path / "r", formats=["md"], directory=directory)
    assert [c.request_id for c in second.data.cases if c.is_new] == ["NY-REQ-0010"]
    assert second.data.summary["cases_new"] == 1


def test_an_empty_store_gives_a_plain_report_not_an_error(con, tmp_path):
    result = build_report(con, tmp_path / "empty", directory=CitationDirectory())
    html = result.html_path.read_text(encoding="utf-8")
    assert "No open cases." in html and "No disclosure events in the store." in html
    assert "No validation results in the store: coverage is unknown." in html
    assert result.data.summary["cases_total"] == 0
    md = (tmp_path / "empty" / "report.md").read_text(encoding="utf-8")
    assert "No open cases." in md


def test_expired_allowlist_entries_are_listed_as_expired_and_hide_nothing(
    con, seeded, directory, tmp_path
):
    yesterday = date.today() - timedelta(days=1)
    add_suppression(
        con,
        criteria={"recipient_agency": "SSA"},
        reason="wage file re-run",
        owner="j.doe",
        expires_on=yesterday,
        today=yesterday - timedelta(days=5),
    )
    result = build_report(con, tmp_path / "x", formats=["html", "csv"], directory=directory)
    html = result.html_path.read_text(encoding="utf-8")
    assert "expired: no longer suppresses" in html and "wage file re-run" in html
    assert result.data.suppressed == []
    assert any(c.recipient_agency == "SSA" and c.needs_attention for c in result.data.cases)
    rows = (tmp_path / "x" / "report-suppressions.csv").read_text(encoding="utf-8")
    assert "wage file re-run" in rows and "False" in rows
