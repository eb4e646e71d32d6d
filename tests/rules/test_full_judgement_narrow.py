"""A full judgement sorts and keeps narrow rows, and gives what the wide rows gave.

- The log-order window sorts each entry's log, number, time and row id only
  (:mod:`detectors.log_rows`), and fetches ids, batches and rows for the rows it keeps:
  its rows equal the wide window's (:func:`detectors.rule_state.log_rows_sql`), whole or
  for some logs, quarantined entries included.
- Custody keeps no use (:mod:`detectors.custody_state`): receipts and disposals whole,
  each holder's reach, and an emptied use read back whole from the store: the alert
  names the use's own events and actor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pytest

from detectors import log_rows, rule_state
from detectors.engine import load_case, load_rules, prepare, run_rules
from dwatch.policy import load_registry
from dwatch.store import connect, transaction
from tests.rules.test_rule_state import _events, _quarantined

REGISTRY = load_registry()
COLUMNS = f"{rule_state.COLUMNS}, last_at, coming_at, is_break"


@pytest.fixture
def logs(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    store = connect(tmp_path / "store.duckdb")
    # log-a: a step back in time at 4, then a gap; log-b: a gap, then a number used twice
    # and by a quarantined entry; log-c: one entry; log-d: its first number quarantined
    _events(store, "b1", [("log-a", 1, "A1", 1), ("log-a", 2, "A2", 2), ("log-a", 3, "A3", 5),
                          ("log-a", 4, "A4", 3), ("log-b", 1, "B1", 1), ("log-b", 3, "B3", 2),
                          ("log-c", 7, "C7", 1)])  # fmt: skip
    _events(store, "b2", [("log-a", 9, "A9", 9), ("log-b", 3, "B3b", 4), ("log-d", 2, "D2", 1),
                          ("log-d", 3, "D3", 2)])  # fmt: skip
    _quarantined(store, "b1", "log-b", 3, 10)
    _quarantined(store, "b2", "log-d", 1, 11)
    yield store
    store.close()


def _rows(con: duckdb.DuckDBPyConnection, table: str) -> list[tuple[Any, ...]]:
    return sorted(con.execute(f"SELECT {COLUMNS} FROM {table}").fetchall(), key=repr)


def test_narrow_window_gives_the_wide_windows_rows(logs: duckdb.DuckDBPyConnection) -> None:
    logs.execute(rule_state.log_rows_sql("dw_wide"))
    log_rows.build(logs, "dw_narrow")
    wide = _rows(logs, "dw_wide")
    assert wide == _rows(logs, "dw_narrow")
    kept = {(r[0], r[1], r[2]) for r in wide}
    assert ("log-b", 3, "Q3") in kept, "a quarantined entry holds its number"
    assert ("log-a", 4, "A4") in kept, "a step back in time"
    assert {r[2] for r in wide if r[8] is None} == {"A9", "Q3", "C7", "D3"}, "each log's last"
    assert not any(n.startswith("dw_log_") for (n,) in logs.execute("SHOW TABLES").fetchall())


def test_narrow_window_in_pieces_of_whole_logs(logs: duckdb.DuckDBPyConnection) -> None:
    logs.execute(rule_state.log_rows_sql("dw_wide"))
    logs.execute(
        "CREATE TEMP TABLE dw_log_quarantined AS SELECT 'log-b' AS source_system"
    )  # what pieces() counts beside the events: one quarantined entry of log-b
    assert log_rows.pieces(logs, "true", 100) == ["true"]
    assert log_rows.pieces(logs, "true", 5) == [
        "source_system BETWEEN 'log-a' AND 'log-a'",  # 5 entries
        "source_system BETWEEN 'log-b' AND 'log-c'",  # 3 and 1 quarantined, and 1
        "source_system BETWEEN 'log-d' AND 'log-d'",
    ]
    logs.execute("DROP TABLE dw_log_quarantined")
    for size in (1, 5, 8):  # a log bigger than a piece is a piece of its own
        log_rows.build(logs, "dw_narrow", piece_entries=size)
        assert _rows(logs, "dw_narrow") == _rows(logs, "dw_wide")


def test_narrow_window_of_some_logs(logs: duckdb.DuckDBPyConnection) -> None:
    chosen = "('log-b', 'log-d')"
    logs.execute(
        rule_state.log_rows_sql(
            "dw_wide",
            rule_state.entries_sql(
                events=f"source_system IN {chosen}", logs=f"j ->> 'source_system' IN {chosen}"
            ),
        )
    )
    log_rows.build(
        logs,
        "dw_narrow",
        events=f"source_system IN {chosen}",
        logs=f"j ->> 'source_system' IN {chosen}",
    )
    narrow = _rows(logs, "dw_narrow")
    assert narrow == _rows(logs, "dw_wide")
    assert {r[0] for r in narrow} == {"log-b", "log-d"}


def test_entries_equal_in_number_and_time_are_ordered_by_row(tmp_path: Path) -> None:
    con = connect(tmp_path / "store.duckdb")
    _events(con, "b1", [("log-a", 1, "A1", 1), ("log-a", 2, "X", 2), ("log-a", 2, "Y", 2)])
    for _ in range(3):  # the same rows every time
        log_rows.build(con, "dw_narrow")
        rows = con.execute(
            "SELECT event_id, next_event FROM dw_narrow ORDER BY event_id"
        ).fetchall()
        assert rows == [("X", "Y"), ("Y", None)]  # X then Y: the order they lie in
    con.close()


USE_AFTER_DISPOSAL = next(r for r in load_rules() if r.id == "use_after_disposal")


def test_uses_after_an_emptying_are_read_back_whole(tmp_path: Path) -> None:
    con = connect(tmp_path / "store.duckdb")
    case = USE_AFTER_DISPOSAL.cases[0]  # an access after the logged disposal: A2, A3
    load_case(con, case)
    with transaction(con):
        run_rules(con, REGISTRY, run_id="full", rules=[USE_AFTER_DISPOSAL])
    kept = con.execute(
        "SELECT event_type, event_id, actor_id, request_id, event_row, custody_key"
        " FROM rule_custody_events ORDER BY occurred_at"
    ).fetchall()
    # receipts and disposals whole; no use is kept, only how far the holder's log reaches
    assert kept == [
        ("receipt", "R1", "case.actor", "F-1", None, "F-1"),
        ("disposal", "X1", "ftb.2", "F-1", None, "F-1"),
    ]
    reach = con.execute("SELECT count(*), max(log_last_at) FROM rule_custody_reach").fetchone()
    last = con.execute("SELECT max(occurred_at) FROM disclosure_events").fetchone()
    assert reach == (1, last[0] if last else None)
    alert = con.execute(
        "SELECT entity_id, list_sort(event_ids), request_id FROM alerts WHERE status = 'open'"
    ).fetchall()
    assert alert == [("ftb.9", ["A2", "A3"], "F-1")]
    with transaction(con):
        prepare(con, REGISTRY, log_order=False)
        emptied = con.execute(
            "SELECT event_id, actor_id, source_system, request_id, disposal_event_id"
            " FROM dw_custody_emptied ORDER BY event_id"
        ).fetchall()
    assert emptied == [
        ("A2", "ftb.9", "case-log", "F-1", "X1"),
        ("A3", "ftb.9", "case-log", "F-1", "X1"),
    ]
    con.close()
