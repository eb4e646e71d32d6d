"""The timeline's sums kept between reports (dwatch.report.timeline_days) are the sums read
from scratch, after rows are appended, deleted (quarantine), updated as lists (a delete and
an insert) and moved by a compacting checkpoint."""

from __future__ import annotations

from typing import Any

import duckdb

from dwatch.report import timeline_days
from dwatch.report.data import CHARTED_EVENT_TYPES
from dwatch.report.timeline_days import FROM_SCRATCH, STATE, kept_timeline_sums

TYPES = list(CHARTED_EVENT_TYPES)


def _kept(con: duckdb.DuckDBPyConnection, types: list[str] = TYPES) -> list[tuple[Any, ...]]:
    sql, params = kept_timeline_sums(con, types)
    assert "disclosure_events" not in sql  # read from the kept sums
    return con.execute(sql, params).fetchall()


def _fresh(con: duckdb.DuckDBPyConnection, types: list[str] = TYPES) -> list[tuple[Any, ...]]:
    return con.execute(FROM_SCRATCH, [types]).fetchall()


def _state(con: duckdb.DuckDBPyConnection) -> tuple[Any, ...]:
    row = con.execute(f"SELECT last_rowid, rows_at_or_below FROM {STATE}").fetchone()
    assert row
    return row


def _append(con: duckdb.DuckDBPyConnection, where: str, changes: str) -> None:
    con.execute(
        f"INSERT INTO disclosure_events SELECT * REPLACE ({changes})"
        f" FROM disclosure_events WHERE {where}"
    )


def test_kept_sums_follow_appends_deletes_and_moves(
    con: duckdb.DuckDBPyConnection, seeded: dict[str, Any]
) -> None:
    first = _kept(con)
    assert first == _fresh(con) and len(first) > 5
    assert _kept(con) == first  # nothing new: the same sums
    # new rows: on days and recipients already summed, and on new ones
    _append(con, "event_type = 'disclosure'", "event_id || '-b' AS event_id")
    _append(
        con,
        "event_type = 'disclosure'",
        "event_id || '-c' AS event_id, occurred_at + INTERVAL 40 DAY AS occurred_at,"
        " 0::BIGINT AS record_count, 'NEW-AGENCY' AS recipient_agency,"
        " 'redisclosure' AS event_type",
    )
    _append(
        con, "event_type = 'disclosure'", "event_id || '-d' AS event_id, '' AS recipient_agency"
    )
    grown = _kept(con)
    assert grown == _fresh(con) and grown != first
    assert any(r[0] == "NEW-AGENCY" and r[3] == 0 for r in grown)
    # a quarantine deletes rows already summed: summed again
    con.execute(
        "DELETE FROM disclosure_events WHERE rowid IN"
        " (SELECT rowid FROM disclosure_events WHERE event_type = 'disclosure' LIMIT 3)"
    )
    assert _kept(con) == _fresh(con)
    # a list column updated: DuckDB deletes the row and inserts it at the end
    con.execute(
        "UPDATE disclosure_events SET data_elements = ['name'] WHERE rowid ="
        " (SELECT min(rowid) FROM disclosure_events WHERE event_type = 'disclosure')"
    )
    assert _kept(con) == _fresh(con)
    # rows deleted and the table compacted: rows after the gap take lower row ids
    con.execute("DELETE FROM disclosure_events WHERE rowid < 40")
    con.execute("CHECKPOINT")
    assert _kept(con) == _fresh(con)
    # another set of event types charted: summed again for those
    assert _kept(con, ["disclosure"]) == _fresh(con, ["disclosure"])
    assert _kept(con) == _fresh(con)


def test_only_rows_appended_since_are_read(
    con: duckdb.DuckDBPyConnection, seeded: dict[str, Any], monkeypatch: Any
) -> None:
    _kept(con)
    last, _count = _state(con)
    ranges: list[tuple[int, int]] = []
    add = timeline_days._add

    def spy(con: duckdb.DuckDBPyConnection, types: list[str], lo: int, hi: int) -> None:
        ranges.append((lo, hi))
        add(con, types, lo, hi)

    monkeypatch.setattr(timeline_days, "_add", spy)
    assert _kept(con) == _fresh(con) and ranges == []
    _append(con, "event_type = 'disclosure'", "event_id || '-b' AS event_id")
    assert _kept(con) == _fresh(con)
    assert ranges == [(last + 1, _state(con)[0])]


def test_a_store_without_the_kept_tables_sums_every_event(
    con: duckdb.DuckDBPyConnection, seeded: dict[str, Any]
) -> None:
    expected = _fresh(con)
    con.execute(f"DROP TABLE {STATE}")
    sql, params = kept_timeline_sums(con, TYPES)
    assert sql == FROM_SCRATCH and con.execute(sql, params).fetchall() == expected
