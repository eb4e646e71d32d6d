"""What a run judging new batches reads instead of every event: each log's size kept with
the log-order state (rule_log_sizes, migration 0034), new events found from their first
row id, and finding events read only from the logs the findings name."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from detectors import rule_state
from detectors.evidence import logs_of
from detectors.scoped import _new_events
from dwatch.store import connect
from tests.rules.test_rule_state import _events, _full, _quarantined, _update

MIGRATION = Path(__file__).parents[2] / "dwatch" / "migrations" / "0034_rule_log_sizes.sql"


@pytest.fixture
def judged(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """Three logs judged in full (log-b's number 2 quarantined)."""
    store = connect(tmp_path / "store.duckdb")
    _events(store, "b1", [("log-a", 1, "A1", 1), ("log-a", 2, "A2", 2), ("log-a", 3, "A3", 5),
                          ("log-a", 4, "A4", 3), ("log-b", 1, "B1", 1), ("log-b", 3, "B3", 2),
                          ("log-c", 1, "C1", 1), ("log-c", 2, "C2", 2), ("log-c", 2, "C2b", 3)])  # fmt: skip
    _quarantined(store, "b1", "log-b", 2, 10)
    _full(store, "run-1")
    yield store
    store.close()


def _sizes(con: duckdb.DuckDBPyConnection) -> list[Any]:
    return con.execute("SELECT source_system, entries FROM rule_log_sizes ORDER BY ALL").fetchall()


def _counted(con: duckdb.DuckDBPyConnection, batches: str = "true") -> list[Any]:
    return con.execute(
        "SELECT source_system, count(*) FROM disclosure_events"
        f" WHERE sequence_no IS NOT NULL AND ({batches}) GROUP BY ALL ORDER BY ALL"
    ).fetchall()


def test_log_sizes_follow_every_batch_as_a_count_of_each_log_does(
    judged: duckdb.DuckDBPyConnection,
) -> None:
    con = judged
    assert _sizes(con) == _counted(con) == [("log-a", 4), ("log-b", 2), ("log-c", 3)]
    # appended entries, a new log, a quarantined entry (not an event), a late entry
    _events(con, "b2", [("log-a", 5, "A5", 7), ("log-d", 1, "D1", 1), ("log-b", 2, "B2", 1)])
    _quarantined(con, "b2", "log-a", 6, 4)
    lines = _update(con, "run-2", ["b2"])
    assert any("read whole" in line for line in lines), "log-b is reopened"
    assert _sizes(con) == _counted(con)
    assert con.execute("SELECT * FROM dw_log_sizes ORDER BY ALL").fetchall() == _counted(con)
    # an old batch changed: the state, sizes with it, is rebuilt whole
    con.execute("DELETE FROM disclosure_events WHERE event_id = 'A2'")
    _events(con, "b3", [("log-a", 8, "A8", 9)])
    lines = _update(con, "run-3", ["b3"])
    assert "rebuilt" in lines[0], lines
    assert _sizes(con) == _counted(con)


def test_the_migration_counts_only_the_batches_the_state_covers(
    judged: duckdb.DuckDBPyConnection,
) -> None:
    """A store judged before the table existed: the batches not judged yet are added by
    the run that judges them, not counted twice."""
    con = judged
    _events(con, "b2", [("log-a", 5, "A5", 7), ("log-d", 1, "D1", 1)])
    con.execute("DELETE FROM rule_log_sizes")
    con.execute(MIGRATION.read_text(encoding="utf-8"))
    assert _sizes(con) == _counted(con, "ingest_run_id = 'b1'")
    _update(con, "run-2", ["b2"])
    assert _sizes(con) == _counted(con)


def test_new_events_are_read_from_their_first_row_even_behind_a_judged_batch(
    judged: duckdb.DuckDBPyConnection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A new batch loaded before one already judged (a run that failed after loading it):
    the bound is the first new row, and the judged batch after it is not new."""
    con = judged
    monkeypatch.setattr(rule_state, "_ROW_GROUP", 1)  # the fixture is one small row group
    _events(con, "b2", [("log-a", 5, "A5", 7), ("log-d", 1, "D1", 1)])
    _events(con, "bj", [("log-e", 1, "E1", 1)])
    con.execute("INSERT INTO rule_state_batches VALUES ('bj', 1, 0, 'run-x')")
    _events(con, "b3", [("log-a", 6, "A6", 8)])
    con.execute(
        "CREATE OR REPLACE TEMP TABLE dw_new_batches AS SELECT unnest(['b2', 'b3']) AS ingest_run_id"
    )
    first = con.execute(
        "SELECT min(rowid) FROM disclosure_events WHERE ingest_run_id = 'b2'"
    ).fetchone()
    assert first and first[0] > 0
    assert rule_state.find_new_rows(con, ["b2", "b3"]) == first[0]
    new = _new_events(con)
    assert f"e.rowid >= {first[0]}" in new
    rows = con.execute(f"SELECT e.event_id FROM disclosure_events e WHERE {new} ORDER BY 1")
    assert rows.fetchall() == [("A5",), ("A6",), ("D1",)]


def test_finding_events_are_read_from_the_logs_the_keys_name(
    judged: duckdb.DuckDBPyConnection,
) -> None:
    con = judged
    keys = "SELECT * FROM (VALUES ('log-b'), ('log-a'), ('log-a')) t(source_system)"
    where, params = logs_of(con, keys)
    assert where == "e.source_system IN ($log0, $log1)"
    assert params == {"log0": "log-a", "log1": "log-b"}
    found = con.execute(
        f"SELECT DISTINCT source_system FROM disclosure_events e WHERE {where} ORDER BY 1", params
    ).fetchall()
    assert found == [("log-a",), ("log-b",)]
    # a key naming no log may match an event of any log: nothing is left out
    assert logs_of(con, "SELECT NULL::VARCHAR AS source_system UNION ALL " + keys) == ("true", {})
    assert logs_of(con, "SELECT 'x' AS source_system WHERE false") == ("true", {})
