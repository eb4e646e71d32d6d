"""A touched partition is read from the store by several predicates, each scanned alone
(detectors.scoped._partition_base): the rows are those the predicates joined by OR select,
in the store's order, each once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from detectors.engine import RuleCase, load_case
from detectors.scoped import _PARTITION_ROWS, _partition_base, _partition_filter
from dwatch.store import connect

EVENTS = [
    {"event_id": "E1", "recipient_agency": "ftb", "actor_id": "a1", "request_id": "R1"},
    # the carrier of an item of R2, with no request id of its own
    {"event_id": "E2", "recipient_agency": "Cal FTB", "actor_id": "a4", "request_id": None},
    {"event_id": "E3", "recipient_agency": " tx-cpa ", "actor_id": "a2", "request_id": "R3"},
    {"event_id": "E4", "recipient_agency": "TX-CPA", "actor_id": "a1", "request_id": "R1"},
    {"event_id": "E5", "recipient_agency": "other", "actor_id": "a3", "request_id": "R4",
     "source_system": "log-b"},
    {"event_id": "E6", "recipient_agency": "other", "actor_id": "a3", "request_id": None},
]  # fmt: skip
PARTS = [  # partition column, touched parts, the rows read
    ("recipient_code", ["CA-FTB", "TX-CPA"], ["E1", "E2", "E3", "E4"]),
    ("actor_id", ["a1"], ["E1", "E4"]),
    ("request_id", ["R2", "R1"], ["E1", "E2", "E4"]),
    ("request_id", [None], ["E2", "E6"]),
    ("source_system", ["log-b"], ["E5"]),
]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    con = connect(tmp_path / "store.duckdb")
    events = [{"source_system": "log-a", **e} for e in EVENTS]
    load_case(con, RuleCase(name="parts", alerts=0, events=events,
                            request_items=[{"event_id": "E2", "request_id": "R2"}]))  # fmt: skip
    con.execute(
        "CREATE TEMP TABLE dw_agencies AS SELECT * FROM (VALUES ('ftb', 'CA-FTB'),"
        " ('Cal FTB', 'CA-FTB'), ('TX-CPA', 'TX-CPA')) t(agency, code)"
    )
    con.execute("CREATE TEMP TABLE dw_new_batches (ingest_run_id VARCHAR)")
    yield con
    con.close()


@pytest.mark.parametrize(("by", "parts", "expected"), PARTS)
def test_a_partition_reads_the_rows_any_of_its_predicates_selects(
    store: duckdb.DuckDBPyConnection, by: str, parts: list[str | None], expected: list[str]
) -> None:
    store.execute("CREATE OR REPLACE TEMP TABLE dw_parts AS SELECT unnest($p::VARCHAR[]) AS part",
                  {"p": parts})  # fmt: skip
    events, _ = _partition_base(store, by)
    read = store.execute("SELECT * FROM dw_part_events").fetchall()
    one_scan = store.execute(
        f"SELECT e.* FROM disclosure_events e WHERE {_partition_filter(by)}"
    ).fetchall()
    assert read == one_scan
    assert [r[0] for r in read] == expected and events == len(expected)


def test_the_request_partition_has_a_predicate_per_way_a_row_belongs() -> None:
    assert len(_PARTITION_ROWS["request_id"]) == 3  # its id, no id (a NULL part), an item


def test_carriers_are_read_in_the_logs_their_items_name(tmp_path: Path) -> None:
    """An item naming its log rides on the event of that id in that log (dw_items joins
    them so): the request partition and a new batch's delta read the carrier there, and an
    event of a log no item names sharing its id, no carrier, is not read; while an item
    names no log, every log is read."""
    from detectors.scoped import _delta

    con = connect(tmp_path / "store.duckdb")
    try:
        events = [
            {"event_id": "E1", "source_system": "log-a", "request_id": None},
            {"event_id": "E1", "source_system": "log-c", "request_id": "R9"},  # same id
            {"event_id": "E2", "source_system": "log-b", "request_id": None},
        ]
        items = [
            {"event_id": "E1", "request_id": "R1", "source_system": "log-a"},
            {"event_id": "E2", "request_id": "R2", "source_system": "log-b"},
        ]
        load_case(con, RuleCase(name="carriers", alerts=0, events=events, request_items=items))
        con.execute("UPDATE disclosure_events SET ingest_run_id = 'old'")
        con.execute("UPDATE request_items SET ingest_run_id = 'new'")
        con.execute("CREATE TEMP TABLE dw_new_batches AS SELECT 'new' AS ingest_run_id")
        con.execute("CREATE TEMP TABLE dw_parts AS SELECT unnest(['R1', 'R2']) AS part")
        _partition_base(con, "request_id")
        read = con.execute("SELECT source_system, event_id FROM dw_part_events ORDER BY ALL")
        assert read.fetchall() == [("log-a", "E1"), ("log-b", "E2")]
        assert _delta(con, ["new"]) == (2, 2)
        delta = con.execute("SELECT source_system, event_id FROM dw_delta_events ORDER BY ALL")
        assert delta.fetchall() == [("log-a", "E1"), ("log-b", "E2")]
        # an item naming no log: its id is read in every log
        con.execute("UPDATE request_items SET source_system = NULL WHERE event_id = 'E2'")
        _partition_base(con, "request_id")
        read = con.execute("SELECT source_system, event_id FROM dw_part_events ORDER BY ALL")
        assert read.fetchall() == [("log-a", "E1"), ("log-b", "E2"), ("log-c", "E1")]
        assert _delta(con, ["new"]) == (3, 2)
    finally:
        con.close()
