"""JSON Lines staging: the strict fast scan, and the tolerant rescan keeping bad lines."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb

from dwatch.ingest import ingest_paths

EVENT = {
    "event_id": "e1", "source_system": "log", "sequence_no": 1,
    "occurred_at": "2025-06-01T10:00:00Z", "event_type": "disclosure",
    "disclosing_agency": "IRS", "recipient_agency": "SSA", "actor_id": "a1",
    "data_elements": ["name"], "record_count": 1,
}  # fmt: skip


def _lines(n: int) -> list[bytes]:
    return [
        json.dumps({**EVENT, "event_id": f"e{i}", "sequence_no": i}).encode()
        for i in range(1, n + 1)
    ]


def test_invalid_utf8_line_is_quarantined_and_row_numbers_hold(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    lines = _lines(4)
    lines[1] = lines[1].replace(b'"a1"', b'"a\xe91"')
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    [r] = ingest_paths(con, [path])
    assert (r.rows_read, r.rows_loaded, r.rows_quarantined) == (4, 3, 1), r.message
    assert con.execute("SELECT reason_code, source_line FROM quarantine").fetchall() == [
        ("invalid_utf8", 2)
    ]
    rows = con.execute("SELECT event_id, source_row FROM disclosure_events ORDER BY 2").fetchall()
    assert rows == [("e1", 1), ("e3", 3), ("e4", 4)]


def test_clean_file_takes_the_strict_scan(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    path = tmp_path / "clean.jsonl"
    path.write_bytes(b"\n".join(_lines(3)) + b"\n")
    [r] = ingest_paths(con, [path])
    assert (r.rows_loaded, r.rows_quarantined) == (3, 0)
    rows = con.execute("SELECT event_id, source_row FROM disclosure_events ORDER BY 2").fetchall()
    assert rows == [("e1", 1), ("e2", 2), ("e3", 3)]
