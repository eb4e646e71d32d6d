"""Quarantine moves the same rows with the same reasons when each condition runs once, and
the impossible-instant pre-check lets through every batch that holds one."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import duckdb
import pytest

from dwatch.validate import ValidationConfig, validate_batches
from tests.validate.conftest import NOW, InsertBatch, event_row


def _moved(con: duckdb.DuckDBPyConnection) -> list[tuple[Any, ...]]:
    return con.execute(
        "SELECT ingest_run_id, source_row, reason_code, field, message, stage FROM quarantine"
        " ORDER BY ingest_run_id, source_row"
    ).fetchall()


def test_rows_failing_several_checks_move_once_with_the_first_reason_and_every_message(
    con: duckdb.DuckDBPyConnection, insert_batch: InsertBatch, vconfig: ValidationConfig
) -> None:
    first = insert_batch([event_row(i) for i in range(1, 6)])
    second = insert_batch(
        [
            event_row(6, description="ssn 123-45-6789", event_type="bogus"),
            # A later copy of ev-2 (a duplicate), also out of bounds and with a TIN.
            event_row(2, sequence_no=7, record_count=0, purpose="ref 12-3456789"),
            event_row(8),
            event_row(9, occurred_at=NOW + timedelta(hours=3)),
        ]
    )
    validate_batches(con, config=vconfig, build_docs=False)
    rows = _moved(con)
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        (second, 1, "expect_column_values_to_be_in_set", "event_type"),
        (second, 2, "expect_column_values_to_not_match_regex", "purpose"),
        (second, 4, "expect_column_values_to_be_between", "occurred_at"),
    ]
    duplicate = rows[1][4]
    for part in (
        "expect_column_values_to_not_match_regex(purpose)",
        "expect_column_values_to_be_between(record_count)",
        "expect_key_unique(source_system, event_id)",
    ):
        assert part in duplicate
    assert duplicate.startswith("validation: ")
    assert all(r[5] == "validate" for r in rows)
    assert con.execute(
        "SELECT rows_loaded, rows_quarantined FROM ingest_runs WHERE run_id = ?", [second]
    ).fetchone() == (1, 3)
    assert first not in {r[0] for r in rows}


@pytest.mark.parametrize(
    "instant",
    [
        "infinity",
        "-infinity",
        "294247-01-10 04:00:54+00",
        "1899-12-31 00:00:00+00",
        "2100-01-01 00:00:00+00",
    ],
)
def test_impossible_instants_still_move_first(
    con: duckdb.DuckDBPyConnection,
    insert_batch: InsertBatch,
    vconfig: ValidationConfig,
    instant: str,
) -> None:
    clean = insert_batch([event_row(i) for i in range(1, 4)])
    poisoned = insert_batch([event_row(4), event_row(5, occurred_at=instant), event_row(6)])
    validate_batches(con, config=vconfig, build_docs=False)
    rows = _moved(con)
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        (poisoned, 2, "out_of_range", "occurred_at")
    ]
    assert clean != poisoned


def test_a_batch_ingested_after_now_keeps_instants_within_its_own_window(
    con: duckdb.DuckDBPyConnection, insert_batch: InsertBatch, vconfig: ValidationConfig
) -> None:
    # Ingested 30 days after the validation clock: an event 10 days after that clock lies
    # within its window (measured from its ingest), though past now + the lead.
    insert_batch(
        [event_row(1), event_row(2, occurred_at=NOW + timedelta(days=10))],
        started=NOW + timedelta(days=30),
    )
    validate_batches(con, config=vconfig, build_docs=False)
    assert [r[2] for r in _moved(con)] == ["expect_column_values_to_be_between"]


def test_a_copy_whose_first_copy_left_with_an_earlier_batch_stays(
    con: duckdb.DuckDBPyConnection, insert_batch: InsertBatch, vconfig: ValidationConfig
) -> None:
    # ev-1's first copy leaves with the first batch (a TIN): the second batch's ev-1 is
    # then the first copy and stays; its ev-2 and its reused sequence_no 3 still fail.
    first = insert_batch([event_row(1, description="ssn 123-45-6789"), event_row(2), event_row(3)])
    second = insert_batch(
        [
            event_row(1, sequence_no=11),
            event_row(2, sequence_no=12),
            event_row(13, sequence_no=3),
            event_row(14),
        ]
    )
    validate_batches(con, config=vconfig, build_docs=False)
    assert [(r[0], r[1], r[2]) for r in _moved(con)] == [
        (first, 1, "expect_column_values_to_not_match_regex"),
        (second, 2, "expect_key_unique"),
    ]
    counts = dict(
        con.execute(
            "SELECT expectation, unexpected_count FROM validation_results"
            " WHERE ingest_run_id = ? AND expectation LIKE 'expect_%unique%'",
            [second],
        ).fetchall()
    )
    assert counts == {
        "expect_key_unique(source_system, event_id)": 1,
        "expect_sequence_no_unique_per_source(sequence_no)": 1,
    }


def test_a_duplicate_check_for_one_batch_reads_only_rows_keyed_like_it() -> None:
    from dwatch.schema import load_schema
    from dwatch.validate.checks import RUN_TOKEN, BatchFacts
    from dwatch.validate.config import load_config
    from dwatch.validate.setwise import canonical_checks

    table = load_schema().events
    facts = BatchFacts("ing_a", None, NOW, run_ids=("ing_a", "ing_b"))
    checks = canonical_checks(table, load_schema().vocabularies, facts, load_config())
    unique = [c for c in checks if c.cross_batch]
    assert {c.check_id for c in unique} == {"unique_key", "sequence_unique"}
    for check in unique:
        narrowed = check.predicate_for("ing_b")
        assert narrowed is not None and RUN_TOKEN not in narrowed
        assert "WHERE ingest_run_id = 'ing_b')" in narrowed
        assert check.predicate is not None
        assert "WHERE ingest_run_id = 'ing_b')" not in check.predicate
    plain = next(c for c in checks if c.check_id == "not_null")
    assert plain.predicate_for("ing_b") == plain.predicate
