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
