"""The report's evidence rows are read back by row id; when DuckDB has given rows new row ids
(a checkpoint compacting row groups emptied by deletes), the report finds them again instead
of showing other events."""

from __future__ import annotations

from typing import Any

import duckdb
import pytest

from dwatch.report import data
from dwatch.report.cases import alert_rows, build_cases
from dwatch.report.citations import CitationDirectory


@pytest.fixture
def case_ids(
    con: duckdb.DuckDBPyConnection, seeded: dict[str, Any], directory: CitationDirectory
) -> list[str]:
    build_cases(con, directory=directory)
    ids = [r[0] for r in con.execute("SELECT case_id FROM cases ORDER BY case_id").fetchall()]
    assert ids
    return ids


def _shown(views: dict[str, list[data.EventView]]) -> dict[str, list[tuple[str, str]]]:
    return {c: [(v.source_system, v.event_id) for v in vs] for c, vs in views.items()}


def test_rows_found_by_moved_row_ids_are_found_again(
    con: duckdb.DuckDBPyConnection, case_ids: list[str]
) -> None:
    expected, totals = data._event_views(con, case_ids, alert_rows(con))
    assert any(expected.values())
    # every row id now names the next row: what a compaction does to the rows after a gap
    table = alert_rows(con)
    con.execute(f"UPDATE {table} SET row_id = row_id + 1")
    assert data._shown_rows(con, case_ids, table) is None  # the moved ids are noticed
    views, moved_totals = data._event_views(con, case_ids, table)
    assert _shown(views) == _shown(expected) and moved_totals == totals


def test_rows_where_they_were_are_read_once(
    con: duckdb.DuckDBPyConnection, case_ids: list[str]
) -> None:
    rows = data._shown_rows(con, case_ids, alert_rows(con))
    assert rows is not None and rows
    found = {(r["source_system"], r["event_id"]) for r in rows}
    stored = set(con.execute("SELECT source_system, event_id FROM disclosure_events").fetchall())
    assert found <= stored
