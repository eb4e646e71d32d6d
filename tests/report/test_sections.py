"""Case sections kept beside the HTML report (dwatch.report.sections): an unchanged case is
not rendered again, a changed one always is, and the report is byte for byte the report
rendered from scratch (but for the time it was made)."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path
from typing import Any

import duckdb
import pytest

from dwatch.report import safety
from dwatch.report.citations import CitationDirectory
from dwatch.report.data import gather
from dwatch.report.render import (
    LAST_REPORT_MARKER,
    TEMPLATES,
    _markdown_sections,
    build_report,
    html_environment,
    markdown_environment,
    render_html,
    render_markdown,
)
from dwatch.report.sections import KEPT_FILE, CaseSections
from dwatch.report.triage import record_decision

_GENERATED = re.compile(r"Generated \d{4}-\d\d-\d\d \d\d:\d\d UTC|<title>[^<]*</title>")


def _html(out: Path) -> str:
    """report.html and report.md, but for the time they were made."""
    return "\n".join(
        _GENERATED.sub("", (out / name).read_text(encoding="utf-8"))
        for name in ("report.html", "report.md")
    )


def _kept_and_fresh(
    con: duckdb.DuckDBPyConnection, directory: CitationDirectory, tmp_path: Path, name: str
) -> str:
    """The report built on the sections kept so far equals one rendered from scratch."""
    kept_out = tmp_path / "kept"  # the same folder every time: its sections are kept
    fresh_out = tmp_path / f"fresh-{name}"
    fresh_out.mkdir()
    marker = kept_out / LAST_REPORT_MARKER  # "new since the last report" alike in both
    if marker.exists():
        shutil.copy(marker, fresh_out / LAST_REPORT_MARKER)
    build_report(con, kept_out, directory=directory, formats=["html", "md"])
    build_report(con, fresh_out, directory=directory, formats=["html", "md"])
    kept, fresh = _html(kept_out), _html(fresh_out)
    assert kept == fresh
    return kept


def _sections(
    con: duckdb.DuckDBPyConnection, directory: CitationDirectory, out: Path
) -> tuple[CaseSections, CaseSections]:
    """Render the HTML and Markdown reports once with the sections kept in ``out``; return
    what each did."""
    data = gather(con, directory, out_dir=out)
    sections = CaseSections(html_environment(), TEMPLATES, out)
    render_html(data, sections)
    sections.save()
    md_sections = _markdown_sections(markdown_environment(), out)
    render_markdown(data, md_sections)
    md_sections.save()
    return sections, md_sections


def _a_case_alert(con: duckdb.DuckDBPyConnection) -> tuple[str, str]:
    row = con.execute(
        "SELECT ca.case_id, ca.alert_id FROM case_alerts ca JOIN alerts a USING (alert_id)"
        " WHERE a.status = 'open' ORDER BY ca.case_id, ca.alert_id LIMIT 1"
    ).fetchone()
    assert row
    return row[0], row[1]


def test_each_change_to_a_case_renders_it_again_and_matches_a_fresh_report(
    con: duckdb.DuckDBPyConnection,
    seeded: dict[str, Any],
    directory: CitationDirectory,
    tmp_path: Path,
) -> None:
    first = _kept_and_fresh(con, directory, tmp_path, "first")
    case_id, alert_id = _a_case_alert(con)
    con.execute("UPDATE alerts SET status = 'retracted' WHERE alert_id = ?", [alert_id])
    retracted = _kept_and_fresh(con, directory, tmp_path, "status")
    assert retracted != first
    con.execute(
        "INSERT INTO alerts SELECT * REPLACE ('al_added' AS alert_id, 'open' AS status)"
        " FROM alerts WHERE alert_id = ?",
        [alert_id],
    )
    added = _kept_and_fresh(con, directory, tmp_path, "added")
    assert "al_added" in added
    record_decision(con, case_id, "acknowledged", decided_by="analyst", note="looking")
    decided = _kept_and_fresh(con, directory, tmp_path, "decision")
    assert "looking" in decided and "looking" not in added


def test_a_registry_label_and_version_show_as_in_a_fresh_report(
    con: duckdb.DuckDBPyConnection,
    seeded: dict[str, Any],
    directory: CitationDirectory,
    tmp_path: Path,
) -> None:
    before = _kept_and_fresh(con, directory, tmp_path, "before")
    cited = next(c for c, info in directory.entries.items() if info.name and info.name in before)
    renamed = dataclasses.replace(directory.entries[cited], name="Renamed In Registry")
    changed = dataclasses.replace(
        directory, entries={**directory.entries, cited: renamed}, version="test-2026.03"
    )
    after = _kept_and_fresh(con, changed, tmp_path, "after")
    assert "Renamed In Registry" in after and "test-2026.03" in after


def test_a_new_masking_policy_shows_in_kept_cases(
    con: duckdb.DuckDBPyConnection,
    seeded: dict[str, Any],
    directory: CitationDirectory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = _kept_and_fresh(con, directory, tmp_path, "before")
    # both forms of the policy (safety masks values with mask_document)
    for name in ("mask_text", "mask_document"):
        policy_now = getattr(safety.masking, name)
        monkeypatch.setattr(
            safety.masking,
            name,
            lambda v, policy=policy_now: policy(v).replace("IRS", "[MASKED]"),
        )
    safety._masked.cache_clear()
    try:
        after = _kept_and_fresh(con, directory, tmp_path, "after")
    finally:
        safety._masked.cache_clear()
    # log values in the kept cases' sections are masked by the new policy
    section = after[after.index('<h2 id="details">') :]
    assert "[MASKED]" in section and "[MASKED]" not in before


def test_only_the_changed_case_is_rendered_again(
    con: duckdb.DuckDBPyConnection,
    seeded: dict[str, Any],
    directory: CitationDirectory,
    tmp_path: Path,
) -> None:
    from dwatch.report.cases import build_cases

    build_cases(con, directory=directory)
    cases = con.execute("SELECT count(*) FROM cases").fetchone()
    assert cases and cases[0] > 2
    first = _sections(con, directory, tmp_path)
    assert [s.rendered for s in first] == [cases[0], cases[0]]
    # the same content written another way: a report that writes the file shows
    kept = json.loads((tmp_path / KEPT_FILE).read_text(encoding="utf-8"))
    (tmp_path / KEPT_FILE).write_text(json.dumps(kept, indent=1), encoding="utf-8")
    marked = (tmp_path / KEPT_FILE).read_bytes()
    again = _sections(con, directory, tmp_path)
    assert [s.rendered for s in again] == [0, 0]
    # nothing changed: the kept file is not written again
    assert (tmp_path / KEPT_FILE).read_bytes() == marked
    case_id, _alert_id = _a_case_alert(con)
    record_decision(con, case_id, "acknowledged", decided_by="analyst", note="one case")
    assert [s.rendered for s in _sections(con, directory, tmp_path)] == [1, 1]


def test_sections_kept_for_another_template_are_not_used(
    con: duckdb.DuckDBPyConnection,
    seeded: dict[str, Any],
    directory: CitationDirectory,
    tmp_path: Path,
) -> None:
    from dwatch.report.cases import build_cases

    build_cases(con, directory=directory)
    first, _md = _sections(con, directory, tmp_path)
    kept = json.loads((tmp_path / KEPT_FILE).read_text(encoding="utf-8"))
    assert kept["fingerprint"] == first.fingerprint and kept["sections"]
    # a section kept by another template, under the key it would have now
    kept["fingerprint"] = "another template"
    kept["sections"] = dict.fromkeys(kept["sections"], "<section>stale</section>")
    (tmp_path / KEPT_FILE).write_text(json.dumps(kept), encoding="utf-8")
    again, md_again = _sections(con, directory, tmp_path)
    assert again.rendered == first.rendered and md_again.rendered == 0
    html = render_html(gather(con, directory, out_dir=tmp_path), again)
    assert "stale" not in html


def test_the_kept_sections_fingerprint_is_the_same_in_another_process() -> None:
    """Sections are kept for the next run's process: nothing in the fingerprint may differ
    between processes (a function's repr holds its address)."""
    import subprocess
    import sys

    from dwatch.report.sections import MARKDOWN_TEMPLATE, _fingerprint

    def here() -> list[str]:
        return [
            _fingerprint(html_environment(), TEMPLATES / "case_section.html.j2"),
            _fingerprint(markdown_environment(), TEMPLATES / MARKDOWN_TEMPLATE),
        ]

    script = (
        "from dwatch.report.render import TEMPLATES, html_environment, markdown_environment\n"
        "from dwatch.report.sections import MARKDOWN_TEMPLATE, _fingerprint\n"
        "print(_fingerprint(html_environment(), TEMPLATES / 'case_section.html.j2'))\n"
        "print(_fingerprint(markdown_environment(), TEMPLATES / MARKDOWN_TEMPLATE))\n"
    )
    other = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout.split()
    assert other == here()


# ---------------------------------------------------------------------------- kept rows


def _inline_template(section: str) -> str:
    """The section template with each row template's text written into its loop, as the
    section template held it before rows were kept (the comment at a row template's top
    left out)."""
    from dwatch.report.sections import ROW_KINDS, row_template

    text = (TEMPLATES / section).read_text(encoding="utf-8")
    for kind, _name in ROW_KINDS:
        row = (TEMPLATES / row_template(section, kind)).read_text(encoding="utf-8")
        row = row[row.index("-#}\n") + len("-#}\n") :]
        if section.endswith(".html.j2"):
            row = row.removesuffix("\n")  # the HTML environment drops one trailing newline
        assert f"{{{{ {kind}(" in text
        text = re.sub(r"\{\{ " + kind + r"\([ae]\) \}\}", lambda _m, r=row: r, text)
    return text


@pytest.mark.parametrize("markdown", [False, True])
def test_a_section_with_kept_rows_is_the_section_rendered_with_its_rows_inline(
    con: duckdb.DuckDBPyConnection,
    seeded: dict[str, Any],
    directory: CitationDirectory,
    tmp_path: Path,
    markdown: bool,
) -> None:
    """Each section, rendered from scratch, from kept rows, and from kept rows after every
    case stopped being new, is ``mask_document`` of the section template with the rows'
    text written inline (the seeded store holds markup, formulas and TIN shapes)."""
    from dwatch import masking
    from dwatch.report.cases import build_cases
    from dwatch.report.sections import MARKDOWN_TEMPLATE

    build_cases(con, directory=directory)
    env = markdown_environment() if markdown else html_environment()
    name = MARKDOWN_TEMPLATE if markdown else "case_section.html.j2"
    inline = env.from_string(_inline_template(name))

    def sections(out: Path | None) -> CaseSections:
        if markdown:
            return _markdown_sections(env, out)
        return CaseSections(env, TEMPLATES, out)

    data = gather(con, directory, out_dir=tmp_path)
    assert data.cases and any(c.events for c in data.cases)
    # values the gathering would have masked, left raw: the rows' own masking is the last line
    shown = next(c for c in data.cases if c.events and c.alerts)
    shown.alerts[0].explanation = '<b>id 123-45-6789</b> =HYPERLINK("x") | *a*'
    shown.alerts[0].evidence = [("ssn", "987 65 4321"), ("tp_", "12-3456789")]
    shown.events[0].description = "<img src=x onerror=alert(1)> 123456789"
    expected = [masking.mask_document(inline.render(c=c)) for c in data.cases]
    section = expected[data.cases.index(shown)]
    assert section.count("TIN-REDACTED") >= 4 and "6789" not in section
    scratch = sections(None)
    assert [str(scratch(c)) for c in data.cases] == expected
    first = sections(tmp_path)
    assert [str(first(c)) for c in data.cases] == expected
    first.save()
    rows = sum(len(c.alerts) + len(c.events) for c in data.cases)
    assert sum(r.rendered for r in first.rows.values()) <= rows
    # every case changes (no longer new): sections rendered again, their rows kept
    for case in data.cases:
        case.is_new = not case.is_new
    expected = [masking.mask_document(inline.render(c=c)) for c in data.cases]
    again = sections(tmp_path)
    assert [str(again(c)) for c in data.cases] == expected
    assert again.rendered == len(data.cases)
    assert [r.rendered for r in again.rows.values()] == [0, 0]


def test_rows_of_kept_sections_stay_kept(
    con: duckdb.DuckDBPyConnection,
    seeded: dict[str, Any],
    directory: CitationDirectory,
    tmp_path: Path,
) -> None:
    """A report that renders no section keeps the rows of the sections it showed: when every
    case then stops being new, each section is rendered again and no row is; an alert that
    changes renders its row alone."""
    from datetime import UTC, datetime

    from dwatch.report.cases import build_cases

    def report(new_since: datetime | None) -> list[CaseSections]:
        data = gather(con, directory, out_dir=tmp_path, new_since=new_since)
        made = []
        for env, render in ((html_environment(), render_html), (markdown_environment(), None)):
            if render is None:
                kept = _markdown_sections(env, tmp_path)
                render_markdown(data, kept)
            else:
                kept = CaseSections(env, TEMPLATES, tmp_path)
                render(data, kept)
            kept.save()
            made.append(kept)
        return made

    build_cases(con, directory=directory)
    cases = con.execute("SELECT count(*) FROM cases").fetchone()
    assert cases and cases[0] > 2
    first = report(None)
    assert all(sum(r.rendered for r in s.rows.values()) > cases[0] for s in first)
    assert [s.rendered for s in report(None)] == [0, 0]
    later = datetime.now(UTC)  # every case stops being new
    after = report(later)
    assert [s.rendered for s in after] == [cases[0], cases[0]]
    assert [sum(r.rendered for r in s.rows.values()) for s in after] == [0, 0]
    _case_id, alert_id = _a_case_alert(con)
    con.execute("UPDATE alerts SET explanation = 'explained again' WHERE alert_id = ?", [alert_id])
    changed = report(later)
    assert [s.rendered for s in changed] == [1, 1]
    assert [s.rows["case_alert_row"].rendered for s in changed] == [1, 1]
    assert [s.rows["case_event_row"].rendered for s in changed] == [0, 0]
    kept = json.loads((tmp_path / KEPT_FILE).read_text(encoding="utf-8"))
    assert kept["rows"]["case_alert_row"] and kept["rows"]["case_event_row"]
    assert "explained again" in _kept_and_fresh(con, directory, tmp_path, "rows")
