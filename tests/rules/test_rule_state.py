"""The log-order state (detectors.rule_state) kept batch by batch equals one ordered pass
over every log: appended batches, a late entry reopening its log, a reused number at the
tail, quarantined entries holding their number, and an old batch changed after judging."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pytest

from detectors import rule_state
from detectors.engine import prepare
from dwatch.policy import load_registry
from dwatch.store import connect, transaction

REGISTRY = load_registry()

BREAK_COLUMNS = (
    "source_system, sequence_no, event_id, occurred_at, ingest_run_id, source_row,"
    " prev_no, prev_at, next_no, next_event, next_at, next_run, next_row"
)


def _events(con: duckdb.DuckDBPyConnection, batch: str, rows: list[tuple[Any, ...]]) -> None:
    """rows: (source_system, sequence_no, event_id, hour of 2025-03-03 (may exceed 23))."""
    for n, (log, seq, event_id, hour) in enumerate(rows, start=1):
        con.execute(
            "INSERT INTO disclosure_events (source_system, sequence_no, event_id, occurred_at,"
            " event_type, disclosing_agency, recipient_agency, actor_id, data_elements,"
            " record_count, ingest_run_id, source_row)"
            " VALUES (?, ?, ?, TIMESTAMPTZ '2025-03-03 00:00:00+00' + to_hours(?),"
            " 'access', 'IRS', 'CA-FTB', 'a.1', ['name'], 1, ?, ?)",
            [log, seq, event_id, hour, batch, n],
        )


def _quarantined(con: duckdb.DuckDBPyConnection, batch: str, log: str, seq: int, row: int) -> None:
    con.execute(
        "INSERT INTO quarantine (ingest_run_id, source_file, source_row, reason_code, message,"
        " raw_row, stage) VALUES (?, 'f.csv', ?, 'bad_timestamp', 'test', ?, 'ingest')",
        [batch, row, f'{{"source_system": "{log}", "sequence_no": "{seq}", "event_id": "Q{seq}"}}'],
    )


def _kept(con: duckdb.DuckDBPyConnection) -> tuple[list[Any], list[Any], list[Any]]:
    breaks = con.execute(f"SELECT {BREAK_COLUMNS} FROM rule_log_breaks").fetchall()
    tails = con.execute(
        "SELECT source_system, sequence_no, event_id, prev_no, prev_at, tied, latest_at"
        " FROM rule_log_tail"
    ).fetchall()
    behind = con.execute(f"SELECT {rule_state.BEHIND_COLUMNS} FROM rule_log_behind").fetchall()
    return sorted(breaks, key=repr), sorted(tails, key=repr), sorted(behind, key=repr)


def _one_pass(con: duckdb.DuckDBPyConnection) -> tuple[list[Any], list[Any], list[Any]]:
    """What one window over every log gives now; the entries behind and each log's latest
    time by a running maximum over every entry."""
    con.execute(rule_state.log_rows_sql("dw_check"))
    breaks = con.execute(f"SELECT {BREAK_COLUMNS} FROM dw_check WHERE is_break").fetchall()
    con.execute(
        "CREATE OR REPLACE TEMP TABLE dw_check_latest AS SELECT *, max(occurred_at) OVER"
        " (PARTITION BY source_system ORDER BY sequence_no, occurred_at ROWS BETWEEN"
        " UNBOUNDED PRECEDING AND 1 PRECEDING) AS latest_before,"
        " max(occurred_at) OVER (PARTITION BY source_system) AS latest_at"
        f" FROM ({rule_state.entries_sql()})"
    )
    tails = con.execute(
        "SELECT c.source_system, c.sequence_no, c.event_id, c.prev_no, c.prev_at,"
        " coalesce(c.prev_no = c.sequence_no, false), l.latest_at FROM dw_check c"
        " JOIN (SELECT DISTINCT source_system, latest_at FROM dw_check_latest) l"
        " USING (source_system) WHERE c.next_no IS NULL"
    ).fetchall()
    behind = con.execute(
        f"SELECT {rule_state.BEHIND_COLUMNS} FROM dw_check_latest WHERE occurred_at < latest_before"
    ).fetchall()
    return sorted(breaks, key=repr), sorted(tails, key=repr), sorted(behind, key=repr)


def _full(con: duckdb.DuckDBPyConnection, run_id: str) -> None:
    with transaction(con):
        prepare(con, REGISTRY)
        assert rule_state.save_full(con, run_id, REGISTRY.version)


def _update(con: duckdb.DuckDBPyConnection, run_id: str, batches: list[str]) -> list[str]:
    with transaction(con):
        stale = rule_state.stale(con, batches, REGISTRY.version)
        lines = rule_state.update_log_order(
            con, run_id=run_id, batches=batches, rebuild=stale[rule_state.LOG_ORDER]
        )
        rule_state.finish(con, run_id, REGISTRY.version)
    return lines


@pytest.fixture
def con(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    store = connect(tmp_path / "store.duckdb")
    # log-a: a step back at 4; log-b: a gap after 3; log-c: ends on a reused number
    _events(store, "b1", [("log-a", 1, "A1", 1), ("log-a", 2, "A2", 2), ("log-a", 3, "A3", 5),
                          ("log-a", 4, "A4", 3), ("log-b", 1, "B1", 1), ("log-b", 3, "B3", 2),
                          ("log-c", 1, "C1", 1), ("log-c", 2, "C2", 2), ("log-c", 2, "C2b", 3)])  # fmt: skip
    _quarantined(store, "b1", "log-b", 2, 10)
    _full(store, "run-1")
    yield store
    store.close()


def test_state_built_whole_equals_one_pass(con: duckdb.DuckDBPyConnection) -> None:
    kept = _kept(con)
    assert kept == _one_pass(con)
    assert kept[0], "the fixture's logs break"
    assert ("log-a", 4) in {(b[0], b[1]) for b in kept[2]}, "an entry behind an earlier one"
    assert ("log-c", 2) in {(t[0], t[1]) for t in kept[1] if t[5]}, "a tied tail is marked"


def test_appended_batches_continue_from_the_tail(con: duckdb.DuckDBPyConnection) -> None:
    # log-a: the tail steps back, the next entry is later again; a gap; a new log
    _events(con, "b2", [("log-a", 5, "A5", 6), ("log-a", 7, "A7", 4), ("log-d", 1, "D1", 1),
                        ("log-d", 2, "D2", 2)])  # fmt: skip
    _quarantined(con, "b2", "log-a", 6, 3)
    lines = _update(con, "run-2", ["b2"])
    assert _kept(con) == _one_pass(con)
    assert lines[0].startswith("log order: 2 log(s) continued from their last judged entry")
    _events(con, "b3", [("log-a", 8, "A8", 9), ("log-d", 3, "D3", 3)])
    _update(con, "run-3", ["b3"])
    assert _kept(con) == _one_pass(con)


def test_a_late_entry_reopens_its_log_only(con: duckdb.DuckDBPyConnection) -> None:
    # log-b gets its missing number 2 late (it was quarantined: now a reused number);
    # log-c continues after its tied tail; log-a goes on normally
    _events(con, "b2", [("log-b", 2, "B2", 1), ("log-c", 3, "C3", 4), ("log-a", 5, "A5", 7)])
    lines = _update(con, "run-2", ["b2"])
    assert _kept(con) == _one_pass(con)
    reopened = [line for line in lines if "read whole" in line]
    assert reopened and "log-b (a new entry is numbered 2" in reopened[0], lines
    assert "log-c (its last judged number 2 is held by two entries)" in reopened[0], lines
    assert "log-a" not in reopened[0]


def test_an_old_batch_changed_after_judging_rebuilds_the_state(
    con: duckdb.DuckDBPyConnection,
) -> None:
    con.execute("DELETE FROM disclosure_events WHERE event_id = 'A2'")  # a correction
    _events(con, "b2", [("log-a", 5, "A5", 7)])
    lines = _update(con, "run-2", ["b2"])
    assert lines == [
        "log order: state rebuilt from every log whole: 1 old batch(es) changed since the"
        " state was kept (batch b1 has 8 event(s) and 1 quarantined row(s), 9 and 1 when"
        " its state was kept)"
    ]
    assert _kept(con) == _one_pass(con)
    # a batch no run judged is not new either
    _events(con, "b3", [("log-a", 6, "A6", 8)])
    _events(con, "b4", [("log-a", 7, "A7", 9)])
    lines = _update(con, "run-3", ["b4"])
    assert "batch b3 is covered by no state" in lines[0], lines
    assert _kept(con) == _one_pass(con)


def test_a_batch_judged_by_a_run_that_did_not_finish_rebuilds_the_state(
    con: duckdb.DuckDBPyConnection,
) -> None:
    """Its rows are in the state already: adding them again would count them twice."""
    _events(con, "b2", [("log-a", 5, "A5", 7)])
    _update(con, "run-2", ["b2"])
    lines = _update(con, "run-3", ["b2"])  # the pipeline offers it again
    assert lines == [
        "log order: state rebuilt from every log whole:"
        " 1 new batch(es) are in the state already (batch b2)"
    ]
    assert _kept(con) == _one_pass(con)


def _ledger(con: duckdb.DuckDBPyConnection) -> list[Any]:
    return con.execute(
        "SELECT ingest_run_id, events, quarantined FROM rule_state_batches ORDER BY ALL"
    ).fetchall()


def _every_batch_counted(con: duckdb.DuckDBPyConnection) -> list[Any]:
    return con.execute(
        "SELECT ingest_run_id, coalesce(e.n, 0), coalesce(q.n, 0)"
        " FROM (SELECT ingest_run_id, count(*) AS n FROM disclosure_events GROUP BY ALL) e"
        " FULL JOIN (SELECT ingest_run_id, count(*) AS n FROM quarantine GROUP BY ALL) q"
        " USING (ingest_run_id) ORDER BY ALL"
    ).fetchall()


def test_new_batches_are_counted_alone_when_the_totals_hold(
    con: duckdb.DuckDBPyConnection,
) -> None:
    """The ledger grows by the new batches' counts, equal to counting every batch again;
    old batches are not counted again: a ledger split otherwise with the same totals (which
    no run writes) is carried on as it was, where a recount would have replaced it."""
    _events(con, "b2", [("log-a", 5, "A5", 7), ("log-d", 1, "D1", 1)])
    _quarantined(con, "b2", "log-a", 6, 3)
    lines = _update(con, "run-2", ["b2"])
    assert not any("rebuilt" in line for line in lines), lines
    assert _ledger(con) == _every_batch_counted(con)
    con.execute("INSERT INTO rule_state_batches VALUES ('b0', 1, 0, 'run-x')")
    con.execute("UPDATE rule_state_batches SET events = events - 1 WHERE ingest_run_id = 'b1'")
    _events(con, "b3", [("log-a", 8, "A8", 9)])
    lines = _update(con, "run-3", ["b3"])
    assert not any("rebuilt" in line for line in lines), lines
    assert ("b0", 1, 0) in _ledger(con) and ("b3", 1, 0) in _ledger(con)
    assert _kept(con) == _one_pass(con)


def test_a_row_quarantined_in_an_old_batch_changes_the_totals(
    con: duckdb.DuckDBPyConnection,
) -> None:
    """Validation moving an old row to quarantine keeps the rows in all but moves a row
    between the tables: each table's total tells, and the batch is named."""
    con.execute("DELETE FROM disclosure_events WHERE event_id = 'B3'")
    _quarantined(con, "b1", "log-b", 3, 6)
    _events(con, "b2", [("log-a", 5, "A5", 7)])
    lines = _update(con, "run-2", ["b2"])
    assert lines == [
        "log order: state rebuilt from every log whole: 1 old batch(es) changed since the"
        " state was kept (batch b1 has 8 event(s) and 2 quarantined row(s), 9 and 1 when"
        " its state was kept)"
    ]
    assert _ledger(con) == _every_batch_counted(con)


def test_new_rows_are_found_at_the_end_of_the_table(
    con: duckdb.DuckDBPyConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The new batches' rows are the table's last: their first row id is found reading a
    tail that holds all of them (checked against the ledger), so later reads skip the
    row groups before it; a ledger that does not add up leaves every row to be read."""
    monkeypatch.setattr(rule_state, "_ROW_GROUP", 1)  # the fixture is one small row group
    _events(con, "b2", [("log-a", 5, "A5", 7), ("log-d", 1, "D1", 1)])
    first = con.execute(
        "SELECT min(rowid) FROM disclosure_events WHERE ingest_run_id = 'b2'"
    ).fetchone()[0]
    assert rule_state.find_new_rows(con, ["b2"]) == first > 0
    assert rule_state.new_rows_from(con) == first
    lines = _update(con, "run-2", ["b2"])
    assert not any("rebuilt" in line for line in lines), lines
    assert _ledger(con) == _every_batch_counted(con)
    assert _kept(con) == _one_pass(con)
    con.execute("UPDATE rule_state_batches SET events = events + 1 WHERE ingest_run_id = 'b1'")
    _events(con, "b3", [("log-a", 8, "A8", 9)])
    assert rule_state.find_new_rows(con, ["b3"]) == 0


def test_entries_behind_the_latest_time_of_their_log(con: duckdb.DuckDBPyConnection) -> None:
    """An entry is behind when timed before the latest entry before it, not only before its
    predecessor: after a dip, later entries timed before that latest time are behind (read
    through the stretch after the dip); a batch after the tail is judged against the log's
    latest time kept with the tail, which may be an earlier entry's (and a quarantined entry
    between has no time)."""
    # log-a's tail is A4 at 3, the log's latest time A3's 5: A5 at 4 is behind it, not A4;
    # then the tail is A7, after a quarantined entry: A8 at 4 is behind A3 still
    _events(con, "b2", [("log-a", 5, "A5", 4), ("log-a", 7, "A7", 4), ("log-e", 1, "E1", 10),
                        ("log-e", 2, "E2", 2), ("log-e", 3, "E3", 3), ("log-e", 5, "E5", 4),
                        ("log-e", 6, "E6", 11)])  # fmt: skip
    _quarantined(con, "b2", "log-a", 6, 9)
    _quarantined(con, "b2", "log-e", 4, 10)
    _update(con, "run-2", ["b2"])
    assert _kept(con) == _one_pass(con)
    _events(con, "b3", [("log-a", 8, "A8", 4), ("log-a", 9, "A9", 6)])
    _update(con, "run-3", ["b3"])
    kept = _kept(con)
    assert kept == _one_pass(con)
    behind = {b[2]: b[6].hour for b in kept[2]}
    assert behind == {"A4": 5, "A5": 5, "A7": 5, "A8": 5, "E2": 10, "E3": 10, "E5": 10}
    latest = {t[0]: t[6].hour for t in kept[1]}
    assert latest["log-a"] == 6 and latest["log-e"] == 11
