"""A list read from JSON text is stored as its decoded elements: an SSN spelled with JSON
escapes ('\\u0031\\u0032\\u0033...') has no digit run the row's pre-test could see, and
reached the store raw until a backslash in such a text flagged the row for the mask."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from dwatch.ingest import ingest_paths
from dwatch.store import connect

KEY = b"unit-test-pseudonym-key"
SSN = "123-45-6789"
ESCAPED = '["' + "".join(f"\\u{ord(c):04x}" for c in SSN) + '", "name"]'
EVENT = {
    "event_id": "e1",
    "source_system": "irs-disclosure-ledger",
    "sequence_no": "1",
    "occurred_at": "2025-08-07T10:00:00Z",
    "event_type": "disclosure",
    "disclosing_agency": "IRS",
    "recipient_agency": "CA-FTB",
    "actor_id": "u1",
    "record_count": "1",
}


def _csv(path: Path, data_elements: str) -> Path:
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow([*EVENT, "data_elements"])
        writer.writerow([*EVENT.values(), data_elements])
    return path


def _jsonl(path: Path, data_elements: str) -> Path:
    # The list as JSON inside the record, escapes and all (json.dumps keeps them escaped).
    record = json.dumps({**EVENT, "data_elements": "@@"})
    path.write_text(record.replace('"@@"', data_elements) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("write", [_csv, _jsonl], ids=["csv", "jsonl"])
def test_an_ssn_spelled_in_json_escapes_inside_a_list_is_masked(
    tmp_path: Path, write: Callable[[Path, str], Path]
) -> None:
    path = write(tmp_path / ("events.csv" if write is _csv else "events.jsonl"), ESCAPED)
    con = connect(tmp_path / "s.duckdb")
    [result] = ingest_paths(con, [path], key=KEY)
    assert result.status == "loaded" and result.rows_read == 1
    stored = con.execute("SELECT data_elements FROM disclosure_events").fetchall()
    quarantined = con.execute("SELECT raw_row, canonical_row FROM quarantine").fetchall()
    assert stored == [(["[TIN-REDACTED]", "name"],)], quarantined
    assert SSN not in str(stored) + str(quarantined)
    assert SSN.replace("-", "") not in str(stored) + str(quarantined)


def test_a_plain_list_is_not_sent_to_the_mask(tmp_path: Path) -> None:
    """The usual list carries no backslash: the row's flag stays off and the list is kept
    as written (lower-cased, trimmed)."""
    path = _csv(tmp_path / "events.csv", '["Name", "address"]')
    con = connect(tmp_path / "s.duckdb")
    ingest_paths(con, [path], key=KEY)
    assert con.execute("SELECT data_elements FROM disclosure_events").fetchall() == [
        (["name", "address"],)
    ]
