"""dwatch.rowfetch: rows read back by row id are exactly the rows asked for."""

from __future__ import annotations

import itertools
import random

import duckdb
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dwatch.rowfetch import ROW_GROUP, fetch_by_rowid, rowid_ranges


@given(
    st.lists(st.integers(min_value=0, max_value=40 * ROW_GROUP), max_size=300),
    st.integers(min_value=1, max_value=20),
)
def test_every_rowid_lies_in_exactly_one_range(rowids: list[int], most: int) -> None:
    ranges = rowid_ranges(rowids, max_ranges=most)
    assert len(ranges) <= most
    assert ranges == sorted(ranges)
    assert all(lo <= hi for lo, hi in ranges)
    assert all(a[1] < b[0] for a, b in itertools.pairwise(ranges))  # disjoint
    for rowid in rowids:
        assert sum(lo <= rowid <= hi for lo, hi in ranges) == 1
    if rowids:
        assert ranges[0][0] == min(rowids) and ranges[-1][1] == max(rowids)


@pytest.fixture(scope="module")
def con() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    rows = 5 * ROW_GROUP + 777
    con.execute(
        "CREATE TABLE ev AS SELECT i AS n, 'E' || i AS event_id, [i % 7, i % 11] AS parts"
        f" FROM range({rows}) t(i)"
    )
    con.execute("DELETE FROM ev WHERE n % 1000 = 3")  # deleted rows are not read back
    return con


@pytest.mark.parametrize("most", [1, 2, 128])
def test_fetch_reads_the_rows_a_plain_filter_reads(
    con: duckdb.DuckDBPyConnection, most: int
) -> None:
    rng = random.Random(most)
    total = con.execute("SELECT max(rowid) FROM ev").fetchone()[0]
    wanted = sorted([*rng.sample(range(total + 1), 400), 3, 1003, total])  # some deleted
    con.execute("CREATE OR REPLACE TEMP TABLE want AS SELECT unnest(?::BIGINT[]) AS r", [wanted])
    got = fetch_by_rowid(con, "ev", "SELECT r FROM want", "fetched", max_ranges=most)
    expected = con.execute(
        "SELECT rowid, * FROM ev WHERE rowid IN (SELECT r FROM want) ORDER BY 1"
    ).fetchall()
    fetched = con.execute("SELECT * FROM fetched ORDER BY dw_rowid").fetchall()
    assert fetched == expected and got == len(expected)
    assert len(expected) < len(set(wanted))  # the deleted ones are missing from both


def test_nothing_wanted_gives_an_empty_table_with_the_columns(
    con: duckdb.DuckDBPyConnection,
) -> None:
    assert fetch_by_rowid(con, "ev", "SELECT NULL::BIGINT WHERE false", "fetched_none") == 0
    columns = [d[0] for d in con.execute("SELECT * FROM fetched_none").description]
    assert columns == ["dw_rowid", "n", "event_id", "parts"]


def test_only_the_columns_asked_for_are_read_back(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("CREATE OR REPLACE TEMP TABLE want AS SELECT unnest([5, 130000, 500000]) AS r")
    got = fetch_by_rowid(con, "ev", "SELECT r FROM want", "fetched_cols", columns="event_id")
    cursor = con.execute("SELECT * FROM fetched_cols ORDER BY dw_rowid")
    assert [d[0] for d in cursor.description] == ["dw_rowid", "event_id"]
    fetched = cursor.fetchall()
    expected = con.execute(
        "SELECT rowid, event_id FROM ev WHERE rowid IN (5, 130000, 500000) ORDER BY 1"
    ).fetchall()
    assert fetched == expected and got == 3
