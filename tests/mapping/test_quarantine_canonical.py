"""A quarantined row speaks in canonical terms; sequence numbers are optional.

Issue 15 items 2-3 and issue 13 item 6: a malformed row of a mapped log still holds its
sequence number (it was logged), a log without numbers loads and is reported as not
checkable for gaps, and rows whose number cannot be read make their file coverage
incomplete instead of raising gap alerts."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from detectors.engine import detect_rules
from dwatch.ingest import ingest_paths

MAPPING = """source_system: case-ledger
kind: events
timezone: America/New_York
timestamp_format: "%m/%d/%Y %H:%M"
match_files: ["ledger*.csv"]
columns: {event_id: Entry, sequence_no: Seq, occurred_at: When, actor_id: Clerk}
constants: {disclosing_agency: IRS, recipient_agency: SSA, data_elements: name,
            record_count: "1", event_type: disclosure}
"""


@pytest.fixture(autouse=True)
def _mapping(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "sources"
    folder.mkdir()
    (folder / "case-ledger.yaml").write_text(MAPPING)
    monkeypatch.setenv("DWATCH_SOURCES_DIR", str(folder))


def _ledger(tmp_path: Path, rows: list[str], header: str = "Entry,Seq,When,Clerk") -> Path:
    path = tmp_path / "ledger.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def _gap_alerts(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
    detect_rules(con)
    return con.execute(
        "SELECT detector_id, explanation FROM alerts WHERE detector_id = 'sequence_gap'"
    ).fetchall()


def test_quarantined_row_keeps_its_converted_fields_under_canonical_names(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    rows = [f"E{i},{i},06/0{i}/2025 10:00,clerk{i}" for i in range(1, 6)]
    rows[2] = "E3,3,not a date,clerk3"  # malformed time: quarantined, number readable
    [r] = ingest_paths(con, [_ledger(tmp_path, rows)])
    assert (r.rows_loaded, r.rows_quarantined) == (4, 1)
    raw, canonical = con.execute("SELECT raw_row, canonical_row FROM quarantine").fetchone()
    assert json.loads(raw)["Seq"] == "3"  # the raw form, as written
    fields = json.loads(canonical)
    assert fields["sequence_no"] == 3 and fields["event_id"] == "E3"
    assert fields["source_system"] == "case-ledger" and fields["occurred_at"] is None
    # Present, only malformed: its number is not missing from the log.
    assert _gap_alerts(con) == []
    assert con.execute("SELECT count(*) FROM coverage_gaps").fetchone()[0] == 0


def test_mass_quarantine_without_readable_numbers_is_coverage_not_gaps(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    rows = [f"E{i},{i},06/01/2025 10:0{i},clerk" for i in range(1, 10)]
    for i in range(1, 8):  # a block of rows whose numbers were garbled
        rows[i] = f"E{i + 1},#{i + 1}?,06/01/2025 10:0{i + 1},clerk"
    [r] = ingest_paths(con, [_ledger(tmp_path, rows)])
    assert (r.rows_loaded, r.rows_quarantined) == (2, 7)
    assert _gap_alerts(con) == []
    [(expectation, message)] = con.execute(
        "SELECT expectation, message FROM coverage_gaps"
    ).fetchall()
    assert expectation == "quarantined_unnumbered" and message.startswith("7 quarantined")


def test_gap_beyond_what_quarantine_can_fill_is_still_reported(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    rows = ["E1,1,06/01/2025 10:01,c", "E2,x,06/01/2025 10:02,c", "E9,9,06/01/2025 10:09,c"]
    ingest_paths(con, [_ledger(tmp_path, rows)])
    [(_rule, explanation)] = _gap_alerts(con)
    assert "skips 7 sequence number(s) between 1 and 9" in explanation


def test_log_without_sequence_numbers_loads_in_file_order_and_is_not_checkable(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    rows = [f"E{i},06/01/2025 10:0{i},clerk" for i in (3, 1, 2)]
    [r] = ingest_paths(con, [_ledger(tmp_path, rows, header="Entry,When,Clerk")])
    assert (r.rows_loaded, r.rows_quarantined) == (3, 0), r.quarantined_by_reason
    order = con.execute(
        "SELECT event_id FROM disclosure_events WHERE sequence_no IS NULL ORDER BY source_row"
    ).fetchall()
    assert order == [("E3",), ("E1",), ("E2",)]
    assert _gap_alerts(con) == []
    [(source, expectation, message)] = con.execute(
        "SELECT source_system, expectation, message FROM coverage_gaps"
    ).fetchall()
    assert (source, expectation) == ("case-ledger", "sequence_not_checkable")
    assert "3 event(s) of case-ledger carry no sequence number" in message
