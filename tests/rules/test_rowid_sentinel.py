"""detectors.rowid_sentinel: the custody state trusts the row ids it kept only while the
store's rows are where they were (DuckDB renumbers rows when a checkpoint compacts row groups
emptied by deletes)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from detectors import rowid_sentinel, rule_state
from dwatch.errors import RuleError
from dwatch.policy import load_registry
from dwatch.store import connect

ROWS = 400_000  # a few row groups


def _fill(con: duckdb.DuckDBPyConnection, start: int, count: int) -> None:
    con.execute(
        "INSERT INTO disclosure_events (source_system, event_id, occurred_at, event_type,"
        " disclosing_agency, recipient_agency, actor_id, data_elements, record_count,"
        " ingest_run_id, source_row)"
        " SELECT 'log-a', 'E' || i, TIMESTAMPTZ '2025-03-03 00:00:00+00' + to_seconds(i),"
        " 'access', 'IRS', 'CA-FTB', 'a.1', ['name'], 1, 'b1', i"
        f" FROM range({start}, {start + count}) t(i)"
    )


@pytest.fixture
def con(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    store = connect(tmp_path / "store.duckdb")
    _fill(store, 0, ROWS)
    store.execute("CHECKPOINT")
    yield store
    store.close()


def _event_at(con: duckdb.DuckDBPyConnection, rowid: int) -> list[tuple[object, ...]]:
    return con.execute("SELECT event_id FROM disclosure_events WHERE rowid = ?", [rowid]).fetchall()


def test_nothing_captured_is_not_trusted(con: duckdb.DuckDBPyConnection) -> None:
    assert not rowid_sentinel.holds(con)
    rowid_sentinel.capture(con, "run-1")
    assert rowid_sentinel.holds(con)


def test_appends_and_deletes_that_move_nothing_keep_the_row_ids(
    con: duckdb.DuckDBPyConnection,
) -> None:
    rowid_sentinel.capture(con)
    _fill(con, ROWS, 1_000)
    con.execute("DELETE FROM disclosure_events WHERE source_row % 1000 = 7")  # a few rows
    con.execute("CHECKPOINT")
    assert _event_at(con, 123_456) == [("E123456",)]  # nothing moved
    assert rowid_sentinel.holds(con)


def test_a_compacting_checkpoint_is_caught(con: duckdb.DuckDBPyConnection) -> None:
    rowid_sentinel.capture(con)
    assert _event_at(con, 39_990) == [("E39990",)]
    con.execute("DELETE FROM disclosure_events WHERE source_row % 10 <> 0")  # 90% of every group
    con.execute("CHECKPOINT")
    # DuckDB moved the rows that were left down into fewer row groups: row ids changed
    assert _event_at(con, 3_999) == [("E39990",)]
    assert not rowid_sentinel.holds(con)
    with pytest.raises(RuleError) as info:
        rowid_sentinel.require(con, "before judging")
    assert "row ids moved before judging" in str(info.value)
    assert "rebuilds the custody state" in str(info.value)


def test_the_state_is_rebuilt_when_its_row_ids_moved(con: duckdb.DuckDBPyConnection) -> None:
    registry = load_registry()
    con.execute(
        "INSERT INTO rule_state VALUES ('custody', ?, ?, 'run-1')",
        [registry.version, rule_state.custody_state.CODE_VERSION],
    )
    con.execute("INSERT INTO rule_state_batches VALUES ('b1', ?, 0, 'run-1')", [ROWS])
    rowid_sentinel.capture(con, "run-1")
    assert rule_state.stale(con, [], registry.version)["custody"] is None
    con.execute("UPDATE rule_state_rowids SET event_id = 'E1'")  # the last row is another now
    reason = rule_state.stale(con, [], registry.version)["custody"]
    assert reason is not None and reason.startswith("row ids in disclosure_events moved")
