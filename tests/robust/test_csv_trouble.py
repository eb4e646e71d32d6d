"""CSV files the reader cannot parse on its own: the error names the line, or the broken
lines are quarantined with theirs and the rest loads."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from tests.test_ingest import assert_counts_add_up, events, load, quarantined, write_csv


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


@pytest.mark.parametrize("kind", [None, "events"])
def test_unclosed_quote_fails_naming_its_line(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, kind: str | None
) -> None:
    path = write_csv(tmp_path / "log.csv", events(100, description="monthly, as agreed"))
    lines = _lines(path)
    assert lines[51].endswith('"monthly, as agreed",success')
    lines[51] = lines[51].replace('"monthly, as agreed"', '"monthly, as agreed')  # line 52
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    [result] = load(con, path, kind=kind)
    assert result.status == "failed"
    assert "line 52 opens a quote" in result.message and str(path) in result.message
    assert "cannot tell whether this is events" not in result.message
    assert con.execute("SELECT count(*) FROM disclosure_events").fetchone() == (0,)
    assert quarantined(con) == []


def test_line_with_extra_fields_is_quarantined_with_its_line_and_the_rest_loads(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "log.csv", events(6))
    lines = _lines(path)
    lines[2] = lines[2] + ",extra,fields,here"  # record 2, line 3: too many fields
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    [result] = load(con, path)
    assert result.status == "loaded", result.message
    assert (result.rows_loaded, result.rows_quarantined) == (5, 1)
    [q] = quarantined(con)
    assert (q["source_line"], q["source_row"], q["reason_code"]) == (3, 2, "malformed_row")
    assert_counts_add_up(con, [result])


def test_field_over_the_reader_limit_fails_naming_its_line(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    rows = events(60)
    rows[50]["description"] = "x" * 17_000_000  # record 51, line 52
    path = write_csv(tmp_path / "big.csv", rows)
    [result] = load(con, path)
    assert result.status == "failed"
    assert "line 52 is longer than the CSV reader's limit" in result.message
    assert "Line: 1" not in result.message
    assert con.execute("SELECT count(*) FROM disclosure_events").fetchone() == (0,)
