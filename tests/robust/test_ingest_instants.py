"""Instants at the door: no value that cannot be a disclosure's time reaches the store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from dwatch.schema import load_schema
from tests.test_ingest import assert_counts_add_up, events, load, quarantined, write_csv


def _soon(hours: float) -> str:
    return (datetime.now(UTC) + timedelta(hours=hours)).isoformat(timespec="seconds")


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("294247-01-10T04:00:54Z", "out_of_range"),  # DuckDB's last year: loaded, then broke runs
        ("1899-12-31T23:59:59Z", "out_of_range"),
        ("0001-01-01T00:00:00Z", "out_of_range"),
        ("2025-08-07T10:00:00+25:00", "bad_timestamp"),
        ("2025-08-07T10:00:00-15:00", "bad_timestamp"),
        ("2025-08-07T10:00:00+05:75", "bad_timestamp"),
        ("2025-08-07 10:00:00 +2500", "bad_timestamp"),
        ("infinity", "bad_timestamp"),
        ("-infinity", "bad_timestamp"),
        ("NaT", "bad_timestamp"),
        ("0", "bad_timestamp"),
        ("garbage", "bad_timestamp"),
        ("epoch", "bad_timestamp"),
        ("2025-08-07 10:00:00", "timestamp_without_zone"),
        ("08/07/2025 10:00", "timestamp_without_zone"),
        ("1754575200", "timestamp_without_zone"),  # Unix time: the message says how to map it
    ],
)
def test_impossible_instants_are_quarantined_with_their_reason(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, value: str, reason: str
) -> None:
    rows = events(3)
    rows[1]["occurred_at"] = value
    [result] = load(con, write_csv(tmp_path / "log.csv", rows))
    assert (result.status, result.rows_loaded, result.rows_quarantined) == ("loaded", 2, 1)
    [q] = quarantined(con)
    assert (q["reason_code"], q["field"], q["source_row"]) == (reason, "occurred_at", 2)
    assert "occurred_at" in q["message"] and value in q["message"]
    assert_counts_add_up(con, [result])


def test_the_future_is_measured_from_the_time_of_ingest(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    ahead = load_schema().instants_ahead_of_ingest
    hours = ahead.total_seconds() / 3600
    rows = events(4)
    rows[0]["occurred_at"] = _soon(hours - 1)  # inside the margin (a fast clock): loaded
    rows[1]["occurred_at"] = _soon(hours + 1)  # beyond it: a finding, kept in quarantine
    rows[2]["occurred_at"] = "1900-01-01T00:00:00Z"  # the floor itself is allowed
    [result] = load(con, write_csv(tmp_path / "future.csv", rows))
    [q] = quarantined(con)
    assert (q["reason_code"], q["source_row"]) == ("out_of_range", 2)
    assert "after the time of ingest" in q["message"]
    assert (result.rows_loaded, result.rows_quarantined) == (3, 1)


@pytest.mark.parametrize(
    "value",
    [
        "2025-08-07T10:00:00+14:00",
        "2025-08-07T10:00:00-12:00",
        "2025-08-07T10:00:00+05:45",
        "2025-08-07T10:00:00Z",
        "2025-08-07 10:00:00 -0400",
        "2025-08-07 10:00:00 EDT",
    ],
)
def test_real_offsets_still_load(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, value: str
) -> None:
    [result] = load(con, write_csv(tmp_path / "ok.csv", events(1, occurred_at=value)))
    assert (result.rows_loaded, result.rows_quarantined) == (1, 0), quarantined(con)
