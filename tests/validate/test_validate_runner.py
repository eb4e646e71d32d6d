"""validate_batches end to end: counts add up, gaps reach the alerts, failures never crash."""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner

import dwatch.validate.setwise as setwise_module
from detectors.alerts import ALERT_COLUMNS, make_alert_id, mark_coverage, merge_alerts
from dwatch.cli import main as cli
from dwatch.errors import ConfigError, InputError
from dwatch.ingest import ingest_paths
from dwatch.validate import ValidationConfig, validate_batches
from dwatch.validate.docs import external_assets, make_offline
from dwatch.validate.sources import load_source_suites
from dwatch.validate.suites import Check, _custom
from tests.validate.conftest import NOW, T0, InsertBatch, event_row, write_events_csv


def _counts_add_up(con: duckdb.DuckDBPyConnection, run_id: str) -> tuple[int, int, int]:
    read, loaded, quarantined = con.execute(
        "SELECT rows_read, rows_loaded, rows_quarantined FROM ingest_runs WHERE run_id = ?",
        [run_id],
    ).fetchone()
    in_table = con.execute(
        "SELECT count(*) FROM disclosure_events WHERE ingest_run_id = ?", [run_id]
    ).fetchone()[0]
    in_quarantine = con.execute(
        "SELECT count(*) FROM quarantine WHERE ingest_run_id = ?", [run_id]
    ).fetchone()[0]
    assert read == loaded + quarantined
    assert loaded == in_table
    assert quarantined == in_quarantine
    return read, in_table, in_quarantine


def test_counts_add_up_across_ingest_and_validate(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, vconfig: ValidationConfig
) -> None:
    rows = [event_row(i) for i in range(1, 11)]
    rows[3]["event_type"] = "teleport"  # ingest refuses this one
    rows[5]["occurred_at"] = NOW + timedelta(days=30)  # only validation knows the clock
    rows[7]["sequence_no"] = 7  # reuses rows[6]'s number: recorded, the row stays
    rows[8]["occurred_at"] = datetime(1970, 1, 1, tzinfo=UTC)  # before the configured floor
    rows.append(event_row(11, occurred_at=NOW + timedelta(days=31)))
    csv_path = write_events_csv(tmp_path / "ledger.csv", rows)
    [result] = ingest_paths(con, [csv_path])
    assert result.status == "loaded"
    assert result.rows_quarantined == 1

    report = validate_batches(con, config=vconfig, build_docs=False)

    assert report.rows_quarantined == 3
    read, loaded, quarantined = _counts_add_up(con, result.run_id)
    assert (read, loaded, quarantined) == (11, 7, 4)
    stages = dict(con.execute("SELECT stage, count(*) FROM quarantine GROUP BY 1").fetchall())
    assert stages == {"ingest": 1, "validate": 3}
    reasons = dict(
        con.execute(
            "SELECT reason_code || '(' || field || ')', count(*) FROM quarantine"
            " WHERE stage = 'validate' GROUP BY 1"
        ).fetchall()
    )
    assert reasons == {"expect_column_values_to_be_between(occurred_at)": 3}
    reused = con.execute(
        "SELECT success, unexpected_count FROM validation_results"
        " WHERE expectation = 'expect_sequence_no_unique_per_source(sequence_no)'"
    ).fetchall()
    assert reused == [(False, 1)]


def test_quarantined_row_is_json_with_identifiers_masked(
    con: duckdb.DuckDBPyConnection, insert_batch: InsertBatch, vconfig: ValidationConfig
) -> None:
    insert_batch([event_row(1), event_row(2, description="taxpayer 123-45-6789 called")])
    validate_batches(con, config=vconfig, build_docs=False)
    raw, message, source_file = con.execute(
        "SELECT raw_row, message, source_file FROM quarantine"
    ).fetchone()
    row = json.loads(raw)
    assert "123-45-6789" not in raw
    assert "[TIN-REDACTED]" in row["description"]
    assert row["event_id"] == "ev-2" and row["source_system"] == "state-exchange-log"
    assert "expect_column_values_to_not_match_regex(description)" in message
    assert source_file.endswith(".csv")


def _alert(alert_id: str, source: str, start: Any, end: Any) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(ALERT_COLUMNS)
    row.update(
        alert_id=alert_id,
        detector_id="test-volume",
        detector_kind="rule",
        detector_version="1",
        severity="high",
        entity_type="source",
        entity_id=source,
        source_system=source,
        window_start=start,
        window_end=end,
        explanation="volume spike",
        coverage_incomplete=False,
    )
    return row


def _merge(con: duckdb.DuckDBPyConnection, alerts: list[dict[str, Any]]) -> None:
    table = pa.Table.from_pylist(
        alerts,
        schema=pa.schema(
            [
                (c, pa.timestamp("us", tz="UTC"))
                if c in ("window_start", "window_end")
                else (c, pa.bool_())
                if c == "coverage_incomplete"
                else (c, pa.string())
                for c in ALERT_COLUMNS
            ]
        ),
    )
    merge_alerts(con, table, detector_ids=["test-volume"], run_id="det-1", retract_reason="gone")


def test_sequence_gap_makes_alerts_in_that_source_and_window_coverage_incomplete(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, vconfig: ValidationConfig
) -> None:
    rows = [event_row(i) for i in range(1, 21) if i not in (8, 9, 10)]
    rows += [event_row(i, source_system="other-log") for i in range(1, 21)]
    [result] = ingest_paths(con, [write_events_csv(tmp_path / "two-sources.csv", rows)])

    report = validate_batches(con, config=vconfig, build_docs=False)

    [gap] = report.coverage_gaps
    assert gap.source_system == "state-exchange-log"
    assert gap.ingest_run_id == result.run_id
    assert gap.window_start == T0 + timedelta(hours=7)
    assert gap.window_end == T0 + timedelta(hours=11)
    assert json.loads(gap.observed) == {"missing_from": 8, "missing_to": 10, "missing_count": 3}

    # The detection run that follows merges its alerts, then marks coverage.
    inside = make_alert_id("test-volume", "inside")
    same_source_later = make_alert_id("test-volume", "later")
    other_source = make_alert_id("test-volume", "other")
    _merge(
        con,
        [
            _alert(inside, "state-exchange-log", T0 + timedelta(hours=6), T0 + timedelta(hours=9)),
            _alert(
                same_source_later,
                "state-exchange-log",
                T0 + timedelta(hours=15),
                T0 + timedelta(hours=18),
            ),
            _alert(other_source, "other-log", T0 + timedelta(hours=6), T0 + timedelta(hours=9)),
        ],
    )
    assert mark_coverage(con) == 1
    flagged = dict(con.execute("SELECT alert_id, coverage_incomplete FROM alerts").fetchall())
    assert flagged == {inside: True, same_source_later: False, other_source: False}


def test_validate_marks_existing_alerts_too(
    con: duckdb.DuckDBPyConnection, insert_batch: InsertBatch, vconfig: ValidationConfig
) -> None:
    alert_id = make_alert_id("test-volume", "x")
    _merge(con, [_alert(alert_id, "state-exchange-log", T0, T0 + timedelta(hours=3))])
    insert_batch([event_row(1), event_row(4)])
    report = validate_batches(con, config=vconfig, build_docs=False)
    assert report.alerts_flagged == 1
    assert con.execute("SELECT coverage_incomplete FROM alerts").fetchone()[0] is True


def test_gap_against_the_previous_batch_and_a_late_batch_closing_nothing(
    con: duckdb.DuckDBPyConnection, insert_batch: InsertBatch, vconfig: ValidationConfig
) -> None:
    first = insert_batch([event_row(i) for i in range(1, 6)])
    validate_batches(con, config=vconfig, build_docs=False)
    second = insert_batch([event_row(i) for i in range(9, 12)])
    report = validate_batches(con, config=vconfig, build_docs=False)
    assert [b.ingest_run_id for b in report.batches] == [second]  # first was done already
    [gap] = report.coverage_gaps
    assert json.loads(gap.observed)["missing_from"] == 6
    assert json.loads(gap.observed)["missing_to"] == 8
    assert first != second


def test_a_late_batch_that_fills_a_gap_closes_it(
    con: duckdb.DuckDBPyConnection, insert_batch: InsertBatch, vconfig: ValidationConfig
) -> None:
    insert_batch([event_row(i) for i in range(1, 6)])
    gappy = insert_batch([event_row(i) for i in range(9, 12)])
    first = validate_batches(con, config=vconfig, build_docs=False)
    assert first.open_coverage_gaps == 1
    late = insert_batch([event_row(i) for i in range(6, 9)])

    report = validate_batches(con, config=vconfig, build_docs=False)

    assert [(b.ingest_run_id, b.revalidated) for b in report.batches] == [
        (late, False),
        (gappy, True),
    ]
    assert report.coverage_gaps == []
    assert report.open_coverage_gaps == 0
    assert con.execute("SELECT count(*) FROM coverage_gaps").fetchone()[0] == 0
    # History is kept: the first validation's failed outcome is still recorded.
    assert (
        con.execute(
            "SELECT count(*) FROM validation_results WHERE ingest_run_id = ? AND NOT success",
            [gappy],
        ).fetchone()[0]
        == 1
    )


def test_a_sparse_source_is_not_silent_within_its_own_rhythm(
    con: duckdb.DuckDBPyConnection, insert_batch: InsertBatch, vconfig: ValidationConfig
) -> None:
    # A few events a month: gaps of 8-16 days are this source's normal, not missing logs.
    days = [12 * i + (4 if i % 2 else 0) for i in range(30)]
    start = T0 - timedelta(days=700)
    insert_batch(
        [event_row(i + 1, occurred_at=start + timedelta(days=d)) for i, d in enumerate(days)]
    )
    report = validate_batches(con, config=vconfig, build_docs=False)
    assert report.coverage_gaps == []
    # A stop far beyond its rhythm is a silence (the stop itself counts in the mean gap,
    # which keeps the check conservative).
    insert_batch([event_row(31, occurred_at=start + timedelta(days=days[-1] + 300))])
    report = validate_batches(con, config=vconfig, build_docs=False)
    assert [o.expectation for o in report.coverage_gaps] == [
        "expect_source_not_silent(occurred_at)"
    ]


def test_a_bursty_source_is_not_silent_in_its_usual_quiet_weeks(
    con: duckdb.DuckDBPyConnection, insert_batch: InsertBatch, vconfig: ValidationConfig
) -> None:
    # An access audit written in bursts (40 events in an afternoon) with 8-13 quiet days
    # between them: its mean gap is hours, its quiet weeks are its rhythm, not lost logs.
    start = T0 - timedelta(days=400)
    bursts, day = [], 0
    for k in range(25):
        bursts.append(day)
        day += 9 + (k * 7) % 5
    rows = [
        event_row(40 * b + j + 1, occurred_at=start + timedelta(days=d, minutes=5 * j))
        for b, d in enumerate(bursts)
        for j in range(40)
    ]
    insert_batch(rows)
    report = validate_batches(con, config=vconfig, build_docs=False)
    assert [o.expectation for o in report.coverage_gaps] == []
    # Two months without a burst is beyond any quiet spell it has had.
    n = len(rows)
    insert_batch([event_row(n + 1, occurred_at=start + timedelta(days=bursts[-1] + 60))])
    report = validate_batches(con, config=vconfig, build_docs=False)
    gaps = [
        o for o in report.coverage_gaps if o.expectation.startswith("expect_source_not_silent(")
    ]
    assert len(gaps) == 1 and "quiet spell" in gaps[0].message


@pytest.mark.parametrize("seed", range(3))
def test_a_bursty_audit_with_random_quiet_weeks_is_not_silent(
    con: duckdb.DuckDBPyConnection,
    insert_batch: InsertBatch,
    vconfig: ValidationConfig,
    seed: int,
) -> None:
    """Quiet spells of a bursty audit drawn at random (a day plus an exponential of mean a
    week, 80 of them: the longest is often 1.5x the third-longest and more) are its habit;
    half a year without a burst is not (the tail its spells allow is about 2.5 months)."""
    rng = np.random.default_rng(seed)
    start = T0 - timedelta(days=1000)  # the silence ends before the pinned clock
    day, rows = 0.0, []
    for _ in range(80):
        n = len(rows)
        rows += [
            event_row(n + j + 1, occurred_at=start + timedelta(days=day, minutes=5 * j))
            for j in range(int(rng.integers(5, 40)))
        ]
        day += 1.0 + rng.exponential(7.0)
    insert_batch(rows)
    report = validate_batches(con, config=vconfig, build_docs=False)
    assert [o.message for o in report.coverage_gaps] == []
    insert_batch([event_row(len(rows) + 1, occurred_at=start + timedelta(days=day + 180))])
    report = validate_batches(con, config=vconfig, build_docs=False)
    gaps = [
        o for o in report.coverage_gaps if o.expectation.startswith("expect_source_not_silent(")
    ]
    assert len(gaps) == 1 and "quiet spell" in gaps[0].message


def test_store_wide_silence_clears_when_the_source_resumes(
    con: duckdb.DuckDBPyConnection, insert_batch: InsertBatch, vconfig: ValidationConfig
) -> None:
    insert_batch([event_row(1), event_row(2, source_system="busy-log")])
    insert_batch([event_row(i, source_system="busy-log") for i in range(3, 300)])
    silent = validate_batches(con, config=vconfig, build_docs=False)
    assert [o.source_system for o in silent.coverage_gaps] == ["state-exchange-log"]
    insert_batch([event_row(i) for i in range(2, 300)])
    resumed = validate_batches(con, config=vconfig, build_docs=False)
    assert resumed.open_coverage_gaps == 0


def test_a_sparse_log_is_not_judged_on_a_spell_its_few_events_cannot_rule_out(
    con: duckdb.DuckDBPyConnection, insert_batch: InsertBatch, vconfig: ValidationConfig
) -> None:
    """A case-driven receipt log, 66 events in clusters: quiet spells of days to weeks
    (3rd-longest 35 days, 20 spells in all) and one of 168 days. Its spread, read from its 20 longest gaps, is itself
    uncertain, so the allowance is predictive (about 9.6 spreads, not 7.6): the long spell
    is within what its own history allows. 300 days without an event is not."""
    gaps = [168.0, 40.0, 35.0] + list(np.linspace(33.0, 2.2, 17)) + [0.2] * 45
    start = T0 - timedelta(days=900)
    day, rows = 0.0, [event_row(1, occurred_at=start)]
    for i, gap in enumerate(np.random.default_rng(0).permutation(gaps)):
        day += float(gap)
        rows.append(event_row(i + 2, occurred_at=start + timedelta(days=day)))
    insert_batch(rows)
    report = validate_batches(con, config=vconfig, build_docs=False)
    assert [o.message for o in report.coverage_gaps] == []
    insert_batch([event_row(len(rows) + 1, occurred_at=start + timedelta(days=day + 300))])
    report = validate_batches(con, config=vconfig, build_docs=False)
    gaps_found = [
        o for o in report.coverage_gaps if o.expectation.startswith("expect_source_not_silent(")
    ]
    assert len(gaps_found) == 1 and "quiet spell" in gaps_found[0].message


@pytest.mark.parametrize("flow_goes_on", [False, True])
def test_a_receipt_log_is_silent_until_now_only_while_its_flow_goes_on(
    con: duckdb.DuckDBPyConnection,
    insert_batch: InsertBatch,
    vconfig: ValidationConfig,
    flow_goes_on: bool,
) -> None:
    """A case's receipt log stops with the case (no more is sent to DOJ-ATF in any log):
    quiet, not lost, while another source's unrelated traffic runs on. While the ledger
    goes on sending to DOJ-ATF, the same stop is a log gone silent."""
    start = T0 - timedelta(days=300)
    receipts = [
        event_row(i + 1, source_system="atf-receipts", event_type="receipt",
                  recipient_agency="DOJ-ATF", occurred_at=start + timedelta(days=3 * i, hours=2))
        for i in range(30)
    ]  # fmt: skip
    sent = 60 + (100 if flow_goes_on else 0)
    ledger = [
        event_row(i + 1, source_system="ledger", recipient_agency="DOJ-ATF",
                  occurred_at=start + timedelta(days=1.5 * i))
        for i in range(sent)
    ]  # fmt: skip
    other = [
        event_row(i + 1, source_system="state-log", occurred_at=start + timedelta(days=i))
        for i in range(300)
    ]
    insert_batch(receipts)
    insert_batch(ledger)
    insert_batch(other)
    report = validate_batches(con, config=vconfig, build_docs=False)
    silent = [
        o for o in report.coverage_gaps if o.expectation.startswith("expect_source_not_silent_")
    ]
    if flow_goes_on:
        assert [o.source_system for o in silent] == ["atf-receipts"]
        assert "while other logs record its flows until" in silent[0].message
    else:
        assert silent == []


def test_sequence_numbers_of_quarantined_rows_are_not_gaps(
    con: duckdb.DuckDBPyConnection, insert_batch: InsertBatch, vconfig: ValidationConfig
) -> None:
    insert_batch([event_row(1), event_row(2, record_count=0), event_row(3)])
    report = validate_batches(con, config=vconfig, build_docs=False)
    assert report.rows_quarantined == 1
    insert_batch([event_row(4)])
    report = validate_batches(con, config=vconfig, build_docs=False)
    assert report.coverage_gaps == []


def test_unknown_run_id_is_a_clear_error(
    con: duckdb.DuckDBPyConnection, vconfig: ValidationConfig
) -> None:
    with pytest.raises(InputError, match="no loaded ingest run ing_nope"):
        validate_batches(con, ingest_run_ids=["ing_nope"], config=vconfig, build_docs=False)


def test_explicit_run_id_revalidates(
    con: duckdb.DuckDBPyConnection, insert_batch: InsertBatch, vconfig: ValidationConfig
) -> None:
    run_id = insert_batch([event_row(1)])
    validate_batches(con, config=vconfig, build_docs=False)
    assert validate_batches(con, config=vconfig, build_docs=False).batches == []
    again = validate_batches(con, ingest_run_ids=[run_id], config=vconfig, build_docs=False)
    assert [b.ingest_run_id for b in again.batches] == [run_id]
    runs = con.execute(
        "SELECT count(DISTINCT validation_run_id) FROM validation_results WHERE ingest_run_id = ?",
        [run_id],
    ).fetchone()[0]
    assert runs == 2


def test_a_check_that_cannot_be_evaluated_fails_loudly_and_the_run_goes_on(
    con: duckdb.DuckDBPyConnection,
    insert_batch: InsertBatch,
    vconfig: ValidationConfig,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = setwise_module.derive_checks

    def with_broken(*args: Any, **kwargs: Any) -> list[Check]:
        broken = _custom(
            "expect_broken_query",
            None,
            "batch",
            "a query that cannot run",
            "WITH b AS (SELECT * FROM __dwatch_batch__) SELECT no_such_column FROM b",
        )
        return [*real(*args, **kwargs), broken]

    monkeypatch.setattr(setwise_module, "derive_checks", with_broken)
    insert_batch([event_row(1), event_row(2, record_count=0)])

    report = validate_batches(con, config=vconfig, build_docs=False)

    [batch] = report.batches
    assert batch.error is None
    broken = [o for o in batch.outcomes if o.expectation == "expect_broken_query"]
    assert broken and not broken[0].success
    assert "could not be evaluated" in (broken[0].message or "")
    # Unknown coverage is a gap for the batch's source and window, not a pass.
    assert broken[0].source_system == "state-exchange-log"
    assert broken[0].window_start == T0 + timedelta(hours=1)
    assert report.rows_quarantined == 1  # the other checks still did their work


def test_a_batch_that_cannot_be_validated_is_a_gap_and_others_still_run(
    con: duckdb.DuckDBPyConnection,
    insert_batch: InsertBatch,
    vconfig: ValidationConfig,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bad = insert_batch([event_row(1), event_row(2)])
    good = insert_batch([event_row(3)])
    real = setwise_module.find

    def flaky(con: Any, table: Any, run_ids: list[str], *args: Any, **kwargs: Any) -> Any:
        if bad in run_ids:
            raise RuntimeError("DuckDB blew up")
        return real(con, table, run_ids, *args, **kwargs)

    monkeypatch.setattr(setwise_module, "find", flaky)
    report = validate_batches(con, config=vconfig, build_docs=False)

    by_run = {b.ingest_run_id: b for b in report.batches}
    assert "DuckDB blew up" in (by_run[bad].error or "")
    assert by_run[good].error is None and by_run[good].outcomes
    gap = con.execute(
        "SELECT expectation, source_system, window_start, window_end FROM coverage_gaps"
        " WHERE ingest_run_id = ?",
        [bad],
    ).fetchall()
    assert gap == [
        (
            "validation_could_not_run",
            "state-exchange-log",
            T0 + timedelta(hours=1),
            T0 + timedelta(hours=2),
        )
    ]


SOURCE_SUITE = """
source_system: state-exchange-log
description: The state exchange log only ever records IRS as the discloser.
silence_window: 2 hours
expectations:
  - type: expect_column_values_to_be_in_set
    column: disclosing_agency
    value_set: [IRS]
  - type: expect_column_values_to_match_regex
    column: event_id
    regex: "^ev-[0-9]+$"
    action: record
  - type: expect_column_values_to_not_be_null
    column: agreement_id
    action: record
"""


def test_per_source_suite_applies_to_its_source_only(
    con: duckdb.DuckDBPyConnection, insert_batch: InsertBatch, vconfig: ValidationConfig
) -> None:
    assert vconfig.sources_dir is not None
    (vconfig.sources_dir / "state-exchange-log.expectations.yaml").write_text(SOURCE_SUITE)
    insert_batch(
        [
            event_row(1, agreement_id="cma-1"),
            event_row(2, disclosing_agency="SSA", agreement_id="cma-1"),
            event_row(
                3, event_id="EV/3", agreement_id="cma-1", occurred_at=T0 + timedelta(hours=8)
            ),
            event_row(1, source_system="other-log", disclosing_agency="SSA", event_id="x"),
        ]
    )

    # Factor 1: the source's own rhythm (mean gap 3.5 hours) does not lift the limit.
    config = vconfig.with_overrides(silence_rhythm_factor=1.0)
    report = validate_batches(con, config=config, build_docs=False)

    failed = {(o.suite, o.expectation) for o in report.failed}
    assert (
        "source.state-exchange-log",
        "expect_column_values_to_be_in_set(disclosing_agency)",
    ) in failed
    assert ("source.state-exchange-log", "expect_column_values_to_match_regex(event_id)") in failed
    assert (
        "source.state-exchange-log",
        "expect_column_values_to_not_be_null(agreement_id)",
    ) not in failed
    moved = con.execute("SELECT raw_row FROM quarantine").fetchall()
    assert [json.loads(r[0])["event_id"] for r in moved] == ["ev-2"]
    # The per-source silence window (2 hours, not the default 7 days) applies to it.
    assert ("canonical.disclosure_events", "expect_source_not_silent(occurred_at)") in failed


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "source_system: state-exchange-log\nexpectations:\n  - type: expect_magic\n    column: x\n",
            "unsupported expectation",
        ),
        ("source_system: other\nexpectations: []\n", "does not match the file name"),
        (
            "source_system: state-exchange-log\nexpectations:\n  - type: expect_column_values_to_be_in_set\n    column: event_id\n",
            "missing value_set",
        ),
        (
            "source_system: state-exchange-log\nexpectations:\n  - type: expect_column_values_to_not_be_null\n    column: nope\n",
            "unknown column",
        ),
        ("source_system: state-exchange-log\nsilence_window: soon\n", "not a duration"),
    ],
)
def test_bad_source_suite_names_file_and_fix(tmp_path: Path, body: str, message: str) -> None:
    from dwatch.schema import load_schema

    path = tmp_path / "state-exchange-log.expectations.yaml"
    path.write_text(body)
    with pytest.raises(ConfigError, match=message) as err:
        load_source_suites(tmp_path, load_schema().events)
    assert str(path) in err.value.render()


def test_committed_source_suites_load() -> None:
    from dwatch.schema import load_schema
    from dwatch.validate.sources import SOURCES_DIR

    suites = load_source_suites(SOURCES_DIR, load_schema().events)
    assert suites, "expected at least one schemas/sources/*.expectations.yaml"
    for suite in suites.values():
        assert suite.checks(load_schema().events, "quarantine")


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._in_title = tag == "title"
        for name, value in attrs:
            if name in ("href", "src") and value:
                self.refs.append(value)

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data


def test_data_docs_are_built_and_open_with_no_network(
    con: duckdb.DuckDBPyConnection,
    insert_batch: InsertBatch,
    vconfig: ValidationConfig,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    insert_batch([event_row(1), event_row(3, channel="carrier_pigeon")])
    docs = tmp_path / "validation-docs"
    attempts: list[object] = []

    def refuse(self: socket.socket, address: object) -> None:
        attempts.append(address)
        raise OSError("network unavailable in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    report = validate_batches(con, config=vconfig, docs_dir=docs)
    monkeypatch.undo()
    assert attempts == []

    assert report.docs_error is None
    assert report.docs_index == docs / "index.html"
    assert report.docs_url and report.docs_url.startswith("file://")
    assert external_assets(docs) == {}
    pages = list(docs.rglob("*.html"))
    assert len(pages) >= 3  # index, suite pages, validation pages
    index = _Links()
    index.feed((docs / "index.html").read_text(encoding="utf-8"))
    local = [r for r in index.refs if not r.startswith(("#", "mailto:"))]
    assert local, "the index links to nothing"
    for ref in local:
        assert (docs / ref.split("#")[0]).exists(), ref
    validation_pages = [p for p in pages if "validations" in p.parts]
    # The index lists every validation page as plain HTML (GX's own list needs a CDN script).
    for page in validation_pages:
        assert page.relative_to(docs).as_posix() in local
    index_html = (docs / "index.html").read_text(encoding="utf-8")
    assert '<td class="failed">failed</td>' in index_html  # the carrier_pigeon batch
    text = "".join(p.read_text(encoding="utf-8") for p in validation_pages)
    # Each expectation is rendered with the description the suite gave it.
    assert "channel is one of the accepted channel values" in text
    assert "carrier_pigeon" not in text  # counts only: no sample values copied into HTML
    # GX renders the run's verdicts as its own results: the failing count is on the page.
    assert "1 unexpected values found" in text


def test_make_offline_strips_every_kind_of_internet_asset() -> None:
    page = (
        "<html><head><link rel='stylesheet' href='https://cdn.example/b.css'>"
        '<link href="//cdn.example/x.css" rel="stylesheet">'
        '<script src="https://cdn.example/j.js"></script>'
        "<style>@import url('https://fonts.example/f.css'); .a{background:url(https://x/y.png)}</style>"
        '</head><body><img src="https://s3.example/logo.png"><a href="https://gx.example/docs">docs</a>'
        '<a href="local.html">local</a><script>var x = 1;</script></body></html>'
    )
    out = make_offline(page)
    assert "http" not in out and "//cdn" not in out
    assert '<a href="local.html">local</a>' in out
    assert ">docs</a>" in out and "var x = 1;" in out
    assert 'id="dwatch-offline"' in out


def test_cli_prints_summary_and_docs_url(
    con: duckdb.DuckDBPyConnection,
    insert_batch: InsertBatch,
    db_path: Path,
    tmp_path: Path,
) -> None:
    run_id = insert_batch([event_row(1), event_row(2)])
    con.close()
    docs = tmp_path / "cli-docs"
    result = CliRunner().invoke(
        cli, ["--db", str(db_path), "validate", "--run-id", run_id, "--docs", str(docs)]
    )
    assert result.exit_code == 0, result.output
    assert run_id in result.output
    assert f"Data Docs: {(docs / 'index.html').resolve().as_uri()}" in result.output
    bad = CliRunner().invoke(cli, ["--db", str(db_path), "validate", "--run-id", "ing_nope"])
    assert bad.exit_code == 2
    assert "no loaded ingest run ing_nope" in bad.output


def test_flow_task_runs_without_prefect_server(
    con: duckdb.DuckDBPyConnection, insert_batch: InsertBatch, db_path: Path, tmp_path: Path
) -> None:
    from flows.validate import validate_store

    run_id = insert_batch([event_row(1)])
    con.close()
    report = validate_store.fn(str(db_path), [run_id], str(tmp_path / "flow-docs"))
    assert [b.ingest_run_id for b in report.batches] == [run_id]
    assert report.docs_index is not None and report.docs_index.is_file()


def test_time_running_backwards_is_recorded_but_is_no_coverage_gap(
    con: duckdb.DuckDBPyConnection, insert_batch: InsertBatch, vconfig: ValidationConfig
) -> None:
    insert_batch([event_row(1), event_row(2, occurred_at=T0 - timedelta(days=3)), event_row(3)])
    report = validate_batches(con, config=vconfig, build_docs=False)
    [failed] = report.failed
    assert (failed.expectation, failed.scope, failed.unexpected_count) == (
        "expect_sequence_no_increasing(sequence_no)",
        "row",
        1,
    )
    assert report.open_coverage_gaps == 0
    assert con.execute("SELECT count(*) FROM disclosure_events").fetchone()[0] == 3


def test_flow_module_turns_telemetry_off_before_prefect_loads() -> None:
    import os
    import subprocess
    import sys

    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"PREFECT_SERVER_ANALYTICS_ENABLED", "DO_NOT_TRACK", "GX_ANALYTICS_ENABLED"}
    }
    code = (
        "import flows.validate, os\n"
        "from prefect.settings import get_current_settings\n"
        "print(get_current_settings().server.analytics_enabled, os.environ['DO_NOT_TRACK'],"
        " os.environ['GX_ANALYTICS_ENABLED'])\n"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["False", "1", "false"]
