"""The report of a daily run, built on what earlier runs kept (each alert's evidence rows,
each case's rendered sections), is the report built from scratch on the same store."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pipeline_helpers import make_config

from dwatch.pipeline import run_pipeline
from dwatch.report import evidence_rows
from dwatch.report.render import LAST_REPORT_MARKER, build_report
from dwatch.store import connect


def _between(text: str, start: str, end: str) -> str:
    return text[text.index(start) : text.index(end)]


def _case_parts(out: Path) -> dict[str, str]:
    """What the kept rows and sections go into: the case sections and the case CSVs."""
    html = (out / "report.html").read_text(encoding="utf-8")
    md = (out / "report.md").read_text(encoding="utf-8")
    parts = {
        "html": _between(html, '<h2 id="details">', '<h2 id="coverage">'),
        "md": _between(md, "## Evidence and explanation", "## Validation coverage"),
    }
    for name in ("cases", "alerts", "evidence-events"):
        parts[name] = (out / f"report-{name}.csv").read_text(encoding="utf-8")
    return parts


def test_a_daily_runs_report_on_kept_rows_and_sections_is_the_report_from_scratch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dwatch.generate import generate

    raw = tmp_path / "raw"
    generate(raw, events=600, seed=5)
    files = sorted(p for p in raw.rglob("*") if p.is_file())
    later = {p for p in files if p.name.startswith("events-")}
    later = set(sorted(later)[::3])  # a third of the logs arrive the next day
    inbox = tmp_path / "inbox"
    for path in files:
        if path not in later:
            target = inbox / path.relative_to(raw)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, target)
    db, config = tmp_path / "store.duckdb", make_config(tmp_path)
    held: list[int | None] = []
    still_holds = evidence_rows.still_holds

    def spy(con):  # type: ignore[no-untyped-def]
        held.append(still_holds(con))
        return held[-1]

    monkeypatch.setattr(evidence_rows, "still_holds", spy)
    first = run_pipeline(db, [inbox], config=config, trigger="test")
    assert first.ok, first.describe()
    previous = (config.reports_dir / LAST_REPORT_MARKER).read_text(encoding="utf-8")
    for path in later:
        shutil.copy(path, inbox / path.relative_to(raw))
    second = run_pipeline(db, [inbox], config=config, trigger="test")
    assert second.ok, second.describe()
    assert held[0] is None and held[-1] is not None  # the second run's report used kept rows
    kept = _case_parts(config.reports_dir)
    assert kept["html"].count("<section") > 1 and kept["evidence-events"].count("\n") > 2

    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / LAST_REPORT_MARKER).write_text(previous, encoding="utf-8")  # "new" alike
    con = connect(db)
    try:
        con.execute(f"DELETE FROM {evidence_rows.STATE}")  # every alert searched again
        build_report(con, fresh)
    finally:
        con.close()
    assert _case_parts(fresh) == kept
