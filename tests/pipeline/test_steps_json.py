"""runs.steps: the steps' details stored as valid JSON, strings masked, numbers kept."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb

from dwatch.pipeline import steps_json

KEY = b"k" * 32


def test_a_nine_digit_count_stays_a_number_and_the_store_accepts_the_row() -> None:
    # 123456789 has the shape of an SSA-issuable number; as a count or rowid it is a number.
    steps = [
        {"step": "publish", "detail": {"rowid_start": 123456789, "rows": 223456789}},
        {"step": "ingest", "detail": {"rate": float("nan"), "left": float("inf")}},
    ]
    text = steps_json(steps, KEY)
    con = duckdb.connect()
    back = json.loads(con.execute("SELECT ?::JSON", [text]).fetchone()[0])
    assert back[0]["detail"] == {"rowid_start": 123456789, "rows": 223456789}
    assert back[1]["detail"] == {"rate": None, "left": None}


def test_strings_and_paths_are_still_masked() -> None:
    steps = [{"step": "ingest", "detail": {"file": Path("/in/123-45-6789.csv"), "n": 1}}]
    text = steps_json(steps, KEY)
    assert "123-45-6789" not in text and "123456789" not in text
    assert json.loads(text)[0]["detail"]["n"] == 1
    assert json.loads(text)[0]["detail"]["file"].startswith("/in/")
