"""Report after report on one store, each built on what the earlier ones kept (evidence rows,
shown rows, timeline sums, case sections), is the report built from scratch on a copy of the
same store: every file, character for character but for the time it was made. Between the
reports alerts open, change, close and move between cases, events arrive, a quarantine
deletes rows and a checkpoint moves them, a list column is updated, a case is triaged, every
case stops being new (each section rendered again, its rows kept), an alert's explanation and
evidence take a TIN shape, markup, a formula and strings that are JSON themselves."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pytest
from report_seed import seed_store

from dwatch.report import data, safety, sections, timeline_days
from dwatch.report.citations import CitationDirectory
from dwatch.report.evidence_rows import SHOWN, STATE
from dwatch.report.render import LAST_REPORT_MARKER, build_report
from dwatch.report.triage import record_decision
from dwatch.store import connect

_GENERATED = re.compile(
    r"Generated \d{4}-\d\d-\d\d \d\d:\d\d UTC|<title>[^<]* \d{4}-\d\d-\d\d</title>"
)


def _files(out: Path) -> dict[str, str]:
    return {
        p.name: _GENERATED.sub("", p.read_text(encoding="utf-8"))
        for p in sorted(out.iterdir())
        if p.is_file() and not p.name.startswith(".")
    }


def _from_scratch(
    db: Path, marker: str | None, fresh_out: Path, directory: CitationDirectory
) -> None:
    """The report of a copy of the store with nothing kept, in a folder with no sections,
    "new" counted from the same last report (``marker``) as the kept one."""
    copy = db.with_name("copy.duckdb")
    shutil.copy(db, copy)
    fresh_out.mkdir()
    if marker is not None:
        (fresh_out / LAST_REPORT_MARKER).write_text(marker, encoding="utf-8")
    con = connect(copy)
    try:
        for table in (STATE, timeline_days.STATE, SHOWN):
            con.execute(f"DELETE FROM {table}")
        safety._masked.cache_clear()  # every value masked again, as in a fresh process
        build_report(con, fresh_out, directory=directory)
    finally:
        con.close()
        copy.unlink()


def _alert(con: duckdb.DuckDBPyConnection, where: str = "status = 'open'") -> str:
    row = con.execute(f"SELECT alert_id FROM alerts WHERE {where} ORDER BY alert_id").fetchone()
    assert row
    return str(row[0])


def _append_events(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        "INSERT INTO disclosure_events SELECT * REPLACE (event_id || '-n' AS event_id,"
        " occurred_at + INTERVAL 3 DAY AS occurred_at) FROM disclosure_events"
        " WHERE event_type = 'disclosure' AND rowid % 3 = 0"
    )


def _alert_lists_new_events(con: duckdb.DuckDBPyConnection) -> None:
    alert_id = _alert(con)
    con.execute(
        "UPDATE alerts SET event_ids = list_concat(event_ids, (SELECT list(event_id) FROM"
        " (SELECT event_id FROM disclosure_events WHERE event_id LIKE '%-n' LIMIT 4)))"
        " WHERE alert_id = ?",
        [alert_id],
    )


def _new_alert(con: duckdb.DuckDBPyConnection) -> None:
    alert_id = _alert(con)
    con.execute(
        "INSERT INTO alerts SELECT * REPLACE ('al_kept_runs_new' AS alert_id,"
        " 'REQ-NEW-1' AS request_id, now() AS first_detected_at) FROM alerts WHERE alert_id = ?",
        [alert_id],
    )


def _retract(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        "UPDATE alerts SET status = 'retracted', retracted_reason = 'no longer found'"
        " WHERE alert_id = ?",
        [_alert(con, "status = 'open' AND alert_id <> 'al_kept_runs_new'")],
    )


def _triage(con: duckdb.DuckDBPyConnection) -> None:
    case = con.execute("SELECT case_id FROM cases ORDER BY case_id LIMIT 1").fetchone()
    assert case
    record_decision(con, case[0], "acknowledged", decided_by="analyst", note="checking 2")


def _quarantine(con: duckdb.DuckDBPyConnection) -> None:
    # a shown evidence row and a charted one go
    con.execute(
        "DELETE FROM disclosure_events WHERE rowid IN (SELECT min(rowid) FROM disclosure_events"
        " WHERE event_id IN (SELECT unnest(event_ids) FROM alerts)"
        " UNION ALL SELECT max(rowid) FROM disclosure_events WHERE event_type = 'disclosure')"
    )


def _compact(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("DELETE FROM disclosure_events WHERE rowid < 30")
    con.execute("CHECKPOINT")


def _list_update(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        "UPDATE disclosure_events SET data_elements = list_append(data_elements, 'name')"
        " WHERE event_id IN (SELECT unnest(event_ids) FROM alerts WHERE status = 'open')"
    )


def _hostile_alert(con: duckdb.DuckDBPyConnection) -> None:
    """One alert's row changes (the rest of its case's rows are kept): a TIN shape, markup and
    a formula in its explanation; evidence with a pseudonym, a TIN shape, an escaped string
    and strings that are JSON themselves (a number, a list)."""
    evidence = {
        "note 123-45-6789": "<b>=SUM(A1)</b>",
        "ids": ["tp_0123456789abcdef0123456789abcdef", "987654321", "[1, 2]", "ev-000000416"],
        "quoted": 'say "123 45 6789"\n',
    }
    con.execute(
        "UPDATE alerts SET explanation = '=HYPERLINK(\"x\") <i>id 123456789</i>',"
        " evidence = ? WHERE alert_id = ?",
        [json.dumps(evidence), _alert(con)],
    )


def _reopen(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        "UPDATE alerts SET status = 'open', retracted_reason = NULL WHERE status = 'retracted'"
    )


CHANGES: list[tuple[str, Callable[[duckdb.DuckDBPyConnection], None]]] = [
    ("nothing", lambda con: None),
    ("events arrive", _append_events),
    ("an alert lists new events", _alert_lists_new_events),
    ("a new alert in a new case", _new_alert),
    ("an alert retracted", _retract),
    ("a case triaged", _triage),
    ("an alert's explanation and evidence hostile", _hostile_alert),
    ("a quarantine", _quarantine),
    ("more events", _append_events),
    ("a list column updated", _list_update),
    ("rows moved by a checkpoint", _compact),
    ("alerts reopened", _reopen),
    ("nothing again", lambda con: None),
]


def test_report_after_report_on_kept_state_is_the_report_from_scratch(
    db_path: Path, directory: CitationDirectory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    con = connect(db_path)
    seed_store(con)
    con.close()
    kept_out = tmp_path / "kept"
    read_back: list[int] = []  # evidence rows read back from the events, report by report
    fetch = data.fetch_by_rowid

    def spy(*args: Any, **kwargs: Any) -> int:
        read_back.append(fetch(*args, **kwargs))
        return read_back[-1]

    monkeypatch.setattr(data, "fetch_by_rowid", spy)
    rows_rendered: list[int] = []  # alerts' and events' rows rendered, report by report
    sections_rendered: list[int] = []
    keep_rows = sections.CaseSections.save

    def count_rows(self: sections.CaseSections) -> None:
        rows_rendered.append(sum(r.rendered for r in self.rows.values()))
        sections_rendered.append(self.rendered)
        keep_rows(self)

    monkeypatch.setattr(sections.CaseSections, "save", count_rows)
    seen: list[dict[str, str]] = []
    for step, (name, change) in enumerate(CHANGES):
        marker = kept_out / LAST_REPORT_MARKER
        last = marker.read_text(encoding="utf-8") if marker.exists() else None
        con = connect(db_path)
        try:
            change(con)
            fetched, rendered = len(read_back), len(rows_rendered)
            build_report(con, kept_out, directory=directory)
            read_back[fetched:] = [sum(read_back[fetched:])]
            rows_rendered[rendered:] = [sum(rows_rendered[rendered:])]
            sections_rendered[rendered:] = [sum(sections_rendered[rendered:])]
        finally:
            con.close()
        fresh_out = tmp_path / f"fresh-{step}"
        fetched, rendered = len(read_back), len(rows_rendered)
        _from_scratch(db_path, last, fresh_out, directory)
        del read_back[fetched:]
        del rows_rendered[rendered:]
        del sections_rendered[rendered:]
        kept, fresh = _files(kept_out), _files(fresh_out)
        assert kept.keys() == fresh.keys() and len(kept) == 12, name
        for file in kept:
            assert kept[file] == fresh[file], f"{name}: {file}"
        seen.append(kept)
    # the changes showed: each one that changes what the report says did
    assert seen[0] == seen[-1] or seen[-2] == seen[-1]
    assert "al_kept_runs_new" in seen[3]["report.html"]
    assert "checking 2" in seen[5]["report.html"]
    assert seen[1]["report-timeline.csv"] != seen[0]["report-timeline.csv"]
    # rows shown before are not read again; rows moved or deleted make them all read again
    assert read_back[0] > 0 and read_back[-1] == 0 and read_back[1] < read_back[0]
    assert read_back[CHANGES.index(("a quarantine", _quarantine))] >= read_back[0] - 1
    # the second report renders every section again (no case is new any more) and no row;
    # a hostile alert renders its own row, shown masked, escaped and neutralised
    assert rows_rendered[0] > 0 and rows_rendered[1] == 0 and rows_rendered[-1] == 0
    assert sections_rendered[1] == sections_rendered[0] > 0 and sections_rendered[-1] == 0
    at = CHANGES.index(("an alert's explanation and evidence hostile", _hostile_alert))
    hostile = seen[at]
    assert rows_rendered[at] == 2  # its HTML row and its Markdown row
    for name in ("report.html", "report.md", "report-alerts.csv"):
        assert "6789" not in hostile[name] and "654321" not in hostile[name], name
        assert "0123456789abcdef0123" not in hostile[name], name
    assert "<b>" not in hostile["report.html"] and "&lt;b&gt;" in hostile["report.html"]
    assert "'=HYPERLINK" in hostile["report-alerts.csv"]
