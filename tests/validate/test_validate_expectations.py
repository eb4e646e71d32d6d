"""Each expectation of the derived suites has a fixture that fails it, and a clean batch passes.

Cases are generated from the canonical schema where the expectation is (required fields,
free-text fields), so a field added to schemas/canonical.yaml gets its case without
editing this file; ``test_every_derived_expectation_has_a_case`` fails when a new kind of
derived check has no failing fixture.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import pytest

from dwatch.schema import TableSpec, load_schema
from dwatch.validate import ValidationConfig, validate_batches
from dwatch.validate.suites import (
    BatchFacts,
    checks_for_tin,
    derive_checks,
    trailing_silence_check,
)
from tests.validate.conftest import NOW, T0, InsertBatch, event_row, item_row

SCHEMA = load_schema()
TIN_TEXT = "caller gave SSN 123-45-6789 on the phone"


@dataclass
class Case:
    expectation: str
    batches: list[list[dict[str, Any]]]
    quarantined: int  # rows this expectation moves to quarantine
    kind: str = "events"
    suite: str = "canonical.disclosure_events"
    setup: Callable[[duckdb.DuckDBPyConnection], None] | None = None
    label: str = ""
    extra_checks: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.label or self.expectation


def _drop_not_null(table: str, column: str) -> Callable[[duckdb.DuckDBPyConnection], None]:
    def setup(con: duckdb.DuckDBPyConnection) -> None:
        con.execute(f"ALTER TABLE {table} ALTER COLUMN {column} DROP NOT NULL")

    return setup


def _retype(table: str, column: str, sql_type: str) -> Callable[[duckdb.DuckDBPyConnection], None]:
    def setup(con: duckdb.DuckDBPyConnection) -> None:
        con.execute(f"ALTER TABLE {table} ALTER COLUMN {column} TYPE {sql_type}")

    return setup


def _generated_cases(
    table: TableSpec, kind: str, make: Callable[..., dict[str, Any]]
) -> list[Case]:
    suite = f"canonical.{table.name}"
    cases = []
    for f in table.input_fields:
        if f.required:
            cases.append(
                Case(
                    f"expect_column_values_to_not_be_null({f.name})",
                    [[make(1), make(2, **{f.name: None})]],
                    1,
                    kind=kind,
                    suite=suite,
                    setup=_drop_not_null(table.name, f.name),
                )
            )
        if checks_for_tin(f):
            cases.append(
                Case(
                    f"expect_column_values_to_not_match_regex({f.name})",
                    [[make(1), make(2, **{f.name: TIN_TEXT})]],
                    1,
                    kind=kind,
                    suite=suite,
                )
            )
    return cases


EVENT_CASES: list[Case] = [
    *_generated_cases(SCHEMA.events, "events", event_row),
    Case(
        "expect_column_values_to_be_in_set(event_type)",
        [[event_row(1), event_row(2, event_type="teleport")]],
        1,
    ),
    Case(
        "expect_column_values_to_be_in_set(channel)",
        [[event_row(1), event_row(2, channel="carrier_pigeon")]],
        1,
    ),
    Case(
        "expect_column_values_to_be_between(record_count)",
        [[event_row(1), event_row(2, record_count=0)]],
        1,
    ),
    Case(
        "expect_column_value_lengths_to_be_between(data_elements)",
        [[event_row(1), event_row(2, data_elements=[])]],
        1,
    ),
    Case(
        "expect_column_values_to_be_between(occurred_at)",
        [[event_row(1), event_row(2, occurred_at=NOW + timedelta(days=1))]],
        1,
        label="occurred_at in the future beyond the clock skew",
    ),
    Case(
        "expect_column_values_to_be_between(occurred_at)",
        [[event_row(1), event_row(2, occurred_at=datetime(1970, 1, 1, tzinfo=UTC))]],
        1,
        label="occurred_at before the floor",
    ),
    Case(
        "expect_key_unique(source_system, event_id)",
        [[event_row(1), event_row(2, event_id="ev-1")]],
        1,
        label="event_id repeated within a batch",
    ),
    Case(
        "expect_key_unique(source_system, event_id)",
        [[event_row(1), event_row(2)], [event_row(3, event_id="ev-2")]],
        1,
        label="event_id repeated by a later batch",
    ),
    Case(
        "expect_column_values_to_not_be_in_set(legal_authority)",
        [[event_row(1), event_row(2, legal_authority="6103((((")]],
        0,  # action 'record': the row stays for the detectors
    ),
    Case(
        "expect_sequence_no_unique_per_source(sequence_no)",
        [[event_row(1), event_row(2), event_row(3, sequence_no=2)]],
        0,  # action 'record': the duplicate_events rule reads reused numbers from the table
    ),
    Case(
        "expect_sequence_no_without_gaps(sequence_no)",
        [[event_row(1), event_row(2), event_row(5)]],
        0,
        extra_checks={"observed": {"missing_from": 3, "missing_to": 4, "missing_count": 2}},
    ),
    Case(
        "expect_sequence_no_increasing(sequence_no)",
        [[event_row(1), event_row(2, occurred_at=T0 - timedelta(hours=5)), event_row(3)]],
        0,  # action 'record', and no coverage gap: nothing is missing, the order is suspect
    ),
    Case(
        "expect_source_not_silent(occurred_at)",
        # Hourly for two days, then nothing for 18 days: longer than the 7-day window and
        # than 8x the source's mean gap (about 10 hours).
        [
            [
                *(event_row(i) for i in range(1, 49)),
                event_row(49, occurred_at=T0 + timedelta(days=20)),
            ]
        ],
        0,
    ),
    Case(
        "expect_columns_of_canonical_type",
        [[event_row(1), event_row(2)]],
        0,
        setup=_retype("disclosure_events", "encrypted", "VARCHAR"),
        extra_checks={"observed": {"field": "encrypted"}},
    ),
    Case(
        "expect_source_not_silent_until_now(occurred_at)",
        [
            [event_row(i) for i in range(1, 4)],
            [
                event_row(
                    i,
                    source_system="busy-log",
                    occurred_at=T0 + timedelta(days=i),
                )
                for i in range(1, 21)
            ],
        ],
        0,
        suite="store.disclosure_events",
    ),
]

ITEM_CASES: list[Case] = [
    *_generated_cases(SCHEMA.items, "request_items", item_row),
    Case(
        "expect_key_unique(request_id, event_id, item_no)",
        [[item_row(1), item_row(2), item_row(2, supplied_name="B Person")]],
        1,
        kind="request_items",
        suite="canonical.request_items",
    ),
    Case(
        "expect_columns_of_canonical_type",
        [[item_row(1, tax_periods="2024")]],
        0,
        kind="request_items",
        suite="canonical.request_items",
        setup=_retype("request_items", "tax_periods", "BIGINT"),
    ),
]

CASES = EVENT_CASES + ITEM_CASES


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_fixture_fails_its_expectation(
    case: Case,
    con: duckdb.DuckDBPyConnection,
    insert_batch: InsertBatch,
    vconfig: ValidationConfig,
) -> None:
    if case.setup:
        case.setup(con)
    for rows in case.batches:
        insert_batch(rows, kind=case.kind)
    inserted = sum(len(rows) for rows in case.batches)
    table = "disclosure_events" if case.kind == "events" else "request_items"

    report = validate_batches(con, config=vconfig, build_docs=False)

    assert not any(b.error for b in report.all_batches), [b.error for b in report.all_batches]
    failed = con.execute(
        "SELECT scope, unexpected_count, observed, message, window_start, source_system"
        " FROM validation_results WHERE suite = ? AND expectation = ? AND NOT success",
        [case.suite, case.expectation],
    ).fetchall()
    assert failed, f"{case.expectation} did not fail on its fixture"
    scope, unexpected, _, message, _, _ = failed[0]
    assert message
    assert unexpected is not None and unexpected >= 1
    if scope == "row":
        counts = [json.loads(row[2]) for row in failed]
        # The recorded count is the rows the same SQL picks (and moves, when quarantined).
        assert all(
            c["unexpected_rows_sql"] == row[1] >= 1 for c, row in zip(counts, failed, strict=True)
        )
    for key, value in case.extra_checks.get("observed", {}).items():
        assert any(json.loads(row[2])[key] == value for row in failed), failed

    expectation_type, _, fld = case.expectation.partition("(")
    moved = con.execute(
        "SELECT count(*) FROM quarantine WHERE stage = 'validate' AND reason_code = ?"
        " AND field = ?",
        [expectation_type, fld.rstrip(")")],
    ).fetchone()[0]
    assert moved == case.quarantined
    remaining = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    total_moved = con.execute("SELECT count(*) FROM quarantine").fetchone()[0]
    assert remaining + total_moved == inserted
    if scope == "batch":
        gaps = con.execute(
            "SELECT count(*) FROM coverage_gaps WHERE expectation = ?", [case.expectation]
        ).fetchone()[0]
        assert gaps >= 1


def test_clean_batches_pass_every_expectation(
    con: duckdb.DuckDBPyConnection, insert_batch: InsertBatch, vconfig: ValidationConfig
) -> None:
    insert_batch([event_row(i) for i in range(1, 25)])
    insert_batch([event_row(i) for i in range(25, 40)])
    insert_batch([item_row(i) for i in range(1, 6)], kind="request_items")

    report = validate_batches(con, config=vconfig, build_docs=False)

    outcomes = con.execute(
        "SELECT suite, expectation, success, message FROM validation_results"
    ).fetchall()
    assert [o for o in outcomes if not o[2]] == []
    recorded = {(o[0], o[1]) for o in outcomes}
    assert recorded >= {(c.suite, c.expectation) for c in CASES}
    assert report.rows_quarantined == 0
    assert con.execute("SELECT count(*) FROM coverage_gaps").fetchone()[0] == 0


def _derived_names(vconfig: ValidationConfig) -> set[tuple[str, str]]:
    facts = BatchFacts("r", T0, NOW, ("x",), {"*": vconfig.silence_window})
    names = set()
    for table in (SCHEMA.events, SCHEMA.items):
        for check in derive_checks(
            table,
            SCHEMA.vocabularies,
            facts,
            clock_skew=vconfig.clock_skew,
            occurred_at_floor=vconfig.occurred_at_floor,
            sequence_time_tolerance=vconfig.sequence_time_tolerance,
            action_for=vconfig.action_for,
        ):
            names.add((f"canonical.{table.name}", check.name))
    check = trailing_silence_check("disclosure_events", {"*": vconfig.silence_window})
    names.add(("store.disclosure_events", check.name))
    return names


def test_every_derived_expectation_has_a_case(vconfig: ValidationConfig) -> None:
    covered = {(c.suite, c.expectation) for c in CASES}
    assert _derived_names(vconfig) - covered == set()


def test_suites_follow_the_schema(vconfig: ValidationConfig) -> None:
    names = {n for suite, n in _derived_names(vconfig) if suite == "canonical.disclosure_events"}
    for f in SCHEMA.events.input_fields:
        assert (f"expect_column_values_to_not_be_null({f.name})" in names) == f.required
    for column in ("event_type", "channel"):
        assert f"expect_column_values_to_be_in_set({column})" in names
    facts = BatchFacts("r", T0, NOW, (), {})
    checks = derive_checks(
        SCHEMA.events,
        SCHEMA.vocabularies,
        facts,
        clock_skew=vconfig.clock_skew,
        occurred_at_floor=vconfig.occurred_at_floor,
        sequence_time_tolerance=vconfig.sequence_time_tolerance,
        action_for=vconfig.action_for,
    )
    in_set = {c.field: c.build() for c in checks if c.expectation_type.endswith("_be_in_set")}
    assert list(in_set["event_type"].value_set) == list(SCHEMA.vocabularies["event_type"])
    assert list(in_set["channel"].value_set) == list(SCHEMA.vocabularies["channel"])
    between = [
        c.build() for c in checks if c.name.endswith("(occurred_at)") and "between" in c.name
    ]
    assert between[0].max_value == NOW + vconfig.clock_skew
    assert between[0].min_value == vconfig.occurred_at_floor
