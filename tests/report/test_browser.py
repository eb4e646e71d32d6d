"""The HTML report opened in headless Chromium, as a compliance analyst would open it."""

from __future__ import annotations

import struct

from browser import dump_dom, parse_dom, screenshot
from report_seed import CSV_FORMULA, XSS_IMG, XSS_SCRIPT

from dwatch.report.render import build_report


def test_the_harness_would_see_a_script_run(tmp_path):
    # Control: without this, "the title is unchanged" could just mean scripts never run here.
    page = tmp_path / "control.html"
    page.write_text(
        "<html><head><title>before</title></head><body><script>document.title='RAN'</script></body></html>"
    )
    assert parse_dom(dump_dom(page)).title == "RAN"


def test_report_reads_right_in_a_browser_and_log_markup_stays_text(
    con, seeded, directory, tmp_path
):
    result = build_report(con, tmp_path / "out", formats=["html"], directory=directory)
    dom = parse_dom(dump_dom(result.html_path))

    # No script from the logs ran: the title is the report's, and the payloads are plain text.
    assert dom.title.startswith("Disclosure Watch report")
    assert "PWNED" not in dom.title
    text = dom.visible_text
    assert XSS_SCRIPT in text
    assert XSS_IMG in text
    assert CSV_FORMULA in text
    assert (
        dom.tags.get("script", 0) == 0
        and dom.tags.get("img", 0) == 0
        and dom.tags.get("iframe", 0) == 0
    )

    # What an analyst reads first.
    for visible in (
        "Summary",
        "cases needing attention",
        "Cases by severity",
        "critical",
        "DHS-ICE, request REQ-DHS-2025-0614: 47,289 subjects, 2 alerts",
        "42,695 addresses were disclosed",
        "By court order",
        "CEDC v. Bessent",
        "Validation coverage",
        "sequence_no skips 437 values <b>bold?</b>",
        "Suppressed",
    ):
        assert visible in text, visible

    # The chart is there: an SVG with one marker per recipient-day and the order dates marked.
    points = sum(len(row.points) for row in result.data.timeline.rows)
    assert dom.tags.get("svg") == 1
    assert dom.tags.get("circle") == points > 0
    assert "CEDC v. Bessent: in force, issued 2026-02-05" in text
    for row in result.data.timeline.rows:
        assert row.recipient in text


def test_screenshot_of_the_report(con, seeded, directory, tmp_path):
    result = build_report(con, tmp_path / "out", formats=["html"], directory=directory)
    shot = screenshot(result.html_path, tmp_path / "report.png", width=1280, height=1500)
    header = shot.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", header[16:24])
    assert (width, height) == (1280, 1500)
    assert shot.stat().st_size > 50_000  # a blank page compresses to a few KB
