"""All new batches checked set-wise at once give exactly the results of one batch at a time."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

import dwatch.validate.recording as recording_module
import dwatch.validate.runner as runner_module
import dwatch.validate.setwise as setwise_module
from dwatch.store import connect
from dwatch.validate import ValidationConfig, validate_batches
from tests.validate.conftest import T0, InsertBatch, event_row

OTHER_LOG_SUITE = """
source_system: other-log
description: other-log only ever records IRS as the discloser.
expectations:
  - type: expect_column_values_to_be_in_set
    column: disclosing_agency
    value_set: [IRS]
  - type: expect_column_values_to_match_regex
    column: event_id
    regex: "^ev-[0-9]+$"
    action: record
"""

RESULT_COLUMNS = (
    "ingest_run_id, source_system, suite, expectation, scope, success, element_count,"
    " unexpected_count, window_start, window_end, observed, message"
)


def _at(hours: float) -> Any:
    return T0 + timedelta(hours=hours)


def _mixed_batches(insert_batch: InsertBatch) -> dict[str, str]:
    """Three sources, failures of every kind, and failures that depend on load order."""
    ledger = "state-exchange-log"
    other = {"source_system": "other-log"}
    sparse = {"source_system": "sparse-log"}
    runs = {
        # record_count 0 is quarantined; its event_id comes back in the next batch.
        "a": insert_batch([event_row(i) for i in (1, 3, 4, 5)] + [event_row(2, record_count=0)]),
        # ev-2 again: one by one, the first copy has left for quarantine by now, so this
        # copy is no duplicate (GX, judging both batches at once, sees two copies).
        "b": insert_batch([event_row(6), event_row(7, event_id="ev-2"), event_row(8)]),
        # sequence_no 9-11 never arrived: a gap, reported by this batch.
        "c": insert_batch([event_row(i) for i in (12, 13, 14)]),
        # a citation that does not parse (recorded) and time running backwards (recorded).
        "d": insert_batch(
            [
                event_row(101, sequence_no=1, **other),
                event_row(102, sequence_no=2, legal_authority="6103 (((", **other),
                event_row(103, sequence_no=3, occurred_at=_at(50), **other),
                event_row(104, sequence_no=4, occurred_at=_at(40), **other),
            ]
        ),
        # a later copy of d's event 101 (same source): quarantined here, not in d; and
        # a discloser other-log's own suite does not allow (quarantined).
        "e": insert_batch(
            [
                event_row(101, sequence_no=5, **other),
                event_row(106, sequence_no=6, disclosing_agency="SSA", **other),
            ]
        ),
        # sparse-log: hours 1-20, and a row at hour 150 that is quarantined (record_count 0).
        "f": insert_batch(
            [event_row(200 + i, sequence_no=i, occurred_at=_at(i), **sparse) for i in range(1, 21)]
            + [event_row(221, sequence_no=21, occurred_at=_at(150), record_count=0, **sparse)]
        ),
        # hours 300-310: 150 h after the quarantined row, 280 h after the last row that
        # stays. One by one, f's row has left when g is judged: g follows a silence.
        "g": insert_batch(
            [
                event_row(300 + i, sequence_no=22 + i, occurred_at=_at(300 + i), **sparse)
                for i in range(11)
            ]
        ),
    }
    # Two sources in one file: other-log's suite judges only its own rows of it.
    runs["h"] = insert_batch(
        [event_row(15), event_row(107, sequence_no=7, event_id="EV/107", **other)]
    )
    assert ledger
    return runs


R_COLUMNS = ", ".join(f"r.{c.strip()}" for c in RESULT_COLUMNS.split(","))


def _validate_copy(
    source_db: Path,
    target: Path,
    config: ValidationConfig,
    monkeypatch: pytest.MonkeyPatch,
    *,
    one_at_a_time: bool,
) -> dict[str, Any]:
    """Validate a copy of the store: every batch at once, or one call per batch in load order."""
    shutil.copy(source_db, target)
    queries: list[int] = []
    real = setwise_module.find

    def counting(con: Any, table: Any, run_ids: list[str], *args: Any, **kwargs: Any) -> Any:
        queries.append(len(run_ids))
        return real(con, table, run_ids, *args, **kwargs)

    monkeypatch.setattr(setwise_module, "find", counting)
    con = connect(target)
    try:
        if one_at_a_time:
            runs = [
                r[0]
                for r in con.execute(
                    "SELECT run_id FROM ingest_runs ORDER BY started_at, run_id"
                ).fetchall()
            ]
            reports = [
                validate_batches(con, ingest_run_ids=[run], config=config, build_docs=False)
                for run in runs
            ]
        else:
            reports = [validate_batches(con, config=config, build_docs=False)]
        # A batch validated again (a later batch touched its source) speaks through its
        # latest validation, as coverage_gaps does.
        latest = (
            "WITH latest AS (SELECT ingest_run_id, max_by(validation_run_id, validated_at) AS v"
            " FROM validation_results WHERE ingest_run_id IS NOT NULL GROUP BY 1)"
        )
        return {
            "reports": reports,
            "set_sizes": queries,
            "results": con.execute(
                f"{latest} SELECT {R_COLUMNS} FROM validation_results r"
                " JOIN latest l ON l.ingest_run_id = r.ingest_run_id AND l.v = r.validation_run_id"
                " WHERE r.scope = 'batch'"
                " ORDER BY ALL"
            ).fetchall(),
            "first_results": con.execute(
                "WITH first AS (SELECT ingest_run_id, min_by(validation_run_id, validated_at) AS v"
                " FROM validation_results WHERE ingest_run_id IS NOT NULL GROUP BY 1)"
                f" SELECT {R_COLUMNS} FROM validation_results r JOIN first f"
                " ON f.ingest_run_id = r.ingest_run_id AND f.v = r.validation_run_id"
                " WHERE r.scope = 'row' ORDER BY ALL"
            ).fetchall(),
            "quarantine": con.execute(
                "SELECT ingest_run_id, source_file, source_row, kind, reason_code, field, message,"
                " raw_row, stage FROM quarantine ORDER BY ALL"
            ).fetchall(),
            "ingest_runs": con.execute(
                "SELECT run_id, rows_read, rows_loaded, rows_quarantined FROM ingest_runs"
                " ORDER BY ALL"
            ).fetchall(),
            "gaps": con.execute(
                "SELECT source_system, window_start, window_end, expectation, message,"
                " ingest_run_id FROM coverage_gaps WHERE ingest_run_id IS NOT NULL ORDER BY ALL"
            ).fetchall(),
        }
    finally:
        con.close()
        monkeypatch.setattr(setwise_module, "find", real)


def test_setwise_results_equal_one_batch_at_a_time(
    con: duckdb.DuckDBPyConnection,
    db_path: Path,
    tmp_path: Path,
    insert_batch: InsertBatch,
    vconfig: ValidationConfig,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert vconfig.sources_dir is not None
    (vconfig.sources_dir / "other-log.expectations.yaml").write_text(OTHER_LOG_SUITE)
    runs = _mixed_batches(insert_batch)
    con.execute("CHECKPOINT")
    together = _validate_copy(
        db_path, tmp_path / "together.duckdb", vconfig, monkeypatch, one_at_a_time=False
    )
    alone = _validate_copy(
        db_path, tmp_path / "alone.duckdb", vconfig, monkeypatch, one_at_a_time=True
    )
    # One set-wise pass for the eight batches (plus one for the batches whose gaps new
    # rows of their source may fill), instead of one per batch.
    assert together["set_sizes"][0] == 8
    assert len(together["set_sizes"]) <= 2
    [report] = together["reports"]
    assert not any(b.error for b in report.all_batches)
    assert [b.ingest_run_id for b in report.new_batches] == list(runs.values())

    for table in ("quarantine", "ingest_runs", "gaps", "first_results"):
        assert together[table] == alone[table], table
    assert together["results"] == alone["results"]

    # Each failure is on the batch it belongs to.
    def failed(run: str) -> set[str]:
        return {
            r[3]
            for r in together["first_results"] + together["results"]
            if r[0] == runs[run] and not r[5]  # ingest_run_id, success
        }

    assert failed("a") == {"expect_column_values_to_be_between(record_count)"}
    assert failed("b") == set()  # its ev-2 is the only copy left once a's moved
    assert failed("c") == {"expect_sequence_no_without_gaps(sequence_no)"}
    assert failed("d") == {
        "expect_column_values_to_not_be_in_set(legal_authority)",
        "expect_sequence_no_increasing(sequence_no)",
    }
    assert failed("e") == {
        "expect_key_unique(source_system, event_id)",
        "expect_column_values_to_be_in_set(disclosing_agency)",
    }
    assert failed("h") == {"expect_column_values_to_match_regex(event_id)"}
    [h_regex] = [
        r
        for r in together["first_results"]
        if r[0] == runs["h"]
        and r[2] == "source.other-log"
        and r[3] == "expect_column_values_to_match_regex(event_id)"
    ]
    assert (h_regex[1], h_regex[6], h_regex[7]) == ("other-log", 1, 1)  # source, rows, failing
    assert failed("f") == {"expect_column_values_to_be_between(record_count)"}
    assert failed("g") == {"expect_source_not_silent(occurred_at)"}
    moved = [(r[0], r[2]) for r in together["quarantine"]]  # run, source_row
    assert sorted(moved) == sorted(
        [(runs["a"], 5), (runs["e"], 1), (runs["e"], 2), (runs["f"], 21)]
    )
    [(observed, message)] = [
        (r[10], r[11])
        for r in together["first_results"]
        if r[0] == runs["d"] and r[3] == "expect_sequence_no_increasing(sequence_no)"
    ]
    assert json.loads(observed) == {"unexpected_rows_sql": 2}  # hours 50 after 102, 40 after 50
    assert message.startswith("2 row(s) fail")


def test_a_run_with_nothing_new_validates_no_batch(
    con: duckdb.DuckDBPyConnection,
    insert_batch: InsertBatch,
    vconfig: ValidationConfig,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    insert_batch([event_row(i) for i in range(1, 6)])
    first = validate_batches(con, config=vconfig, build_docs=False)
    assert len(first.new_batches) == 1 and first.store_checks is not None
    before = con.execute("SELECT count(*) FROM validation_results").fetchone()[0]

    def no_checks(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("a run with nothing new must not check anything")

    monkeypatch.setattr(setwise_module, "find", no_checks)
    monkeypatch.setattr(recording_module, "start_gx", no_checks)
    monkeypatch.setattr(runner_module, "_validate_store", no_checks)
    idle = validate_batches(con, config=vconfig)  # Data Docs asked for: still nothing to do
    assert idle.batches == [] and idle.store_checks is None
    assert "0 new batch(es), 0 validated again" in idle.summary()
    assert con.execute("SELECT count(*) FROM validation_results").fetchone()[0] == before


def test_an_old_batch_is_revisited_only_for_its_open_gaps_and_says_why(
    con: duckdb.DuckDBPyConnection, insert_batch: InsertBatch, vconfig: ValidationConfig
) -> None:
    gappy = insert_batch([event_row(i) for i in (1, 2, 5, 6)])  # 3-4 missing
    validate_batches(con, config=vconfig, build_docs=False)
    other = insert_batch([event_row(1, source_system="other-log", event_id="o-1")])
    quiet = validate_batches(con, config=vconfig, build_docs=False)
    assert [b.ingest_run_id for b in quiet.batches] == [other]  # another source: no revisit
    late = insert_batch([event_row(i) for i in (3, 4)])
    report = validate_batches(con, config=vconfig, build_docs=False)
    assert [b.ingest_run_id for b in report.new_batches] == [late]
    [again] = report.revisited
    assert again.ingest_run_id == gappy
    assert "open coverage gap" in (again.revisit_reason or "") and late in again.revisit_reason
    assert {o.scope for o in again.outcomes} == {"batch"}  # its rows' verdicts stand
    assert f"validated again: {again.revisit_reason}" in report.summary()
    assert con.execute("SELECT count(*) FROM coverage_gaps").fetchone()[0] == 0


def test_a_set_that_cannot_be_checked_is_checked_one_by_one(
    con: duckdb.DuckDBPyConnection,
    insert_batch: InsertBatch,
    vconfig: ValidationConfig,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runs = [insert_batch([event_row(i)]) for i in range(1, 4)]
    real = setwise_module.find

    def broken_for_many(con: Any, table: Any, run_ids: list[str], *a: Any, **k: Any) -> Any:
        if len(run_ids) > 1:
            raise RuntimeError("DuckDB could not plan the set-wise query")
        return real(con, table, run_ids, *a, **k)

    monkeypatch.setattr(setwise_module, "find", broken_for_many)
    report = validate_batches(con, config=vconfig, build_docs=False)
    assert [b.ingest_run_id for b in report.batches] == runs
    assert not any(b.error for b in report.batches)
    assert all(b.outcomes and not b.failed for b in report.batches)
    validated = con.execute(
        "SELECT count(DISTINCT ingest_run_id) FROM validation_results WHERE ingest_run_id IS NOT NULL"
    ).fetchone()[0]
    assert validated == 3


def test_a_run_with_nothing_new_does_not_load_great_expectations(
    con: duckdb.DuckDBPyConnection,
    db_path: Path,
    insert_batch: InsertBatch,
    vconfig: ValidationConfig,
) -> None:
    insert_batch([event_row(i) for i in range(1, 4)])
    validate_batches(con, config=vconfig, build_docs=False)
    con.execute("CHECKPOINT")
    con.close()
    script = (
        "import sys\n"
        "from dwatch.store import connect\n"
        "from dwatch.validate import validate_batches\n"
        "con = connect(sys.argv[1])\n"
        "report = validate_batches(con, docs_dir=None)\n"
        "print(len(report.batches), 'great_expectations' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(db_path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    assert out.stdout.split() == ["0", "False"], out.stderr


def test_reading_batches_by_rowid_ranges_changes_no_verdict(
    con: duckdb.DuckDBPyConnection,
    db_path: Path,
    tmp_path: Path,
    insert_batch: InsertBatch,
    vconfig: ValidationConfig,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The set-wise pass reads the batches from the rowid ranges the survey found them in:
    every verdict and quarantine move is the one of reading them by run id alone."""
    assert vconfig.sources_dir is not None
    (vconfig.sources_dir / "other-log.expectations.yaml").write_text(OTHER_LOG_SUITE)
    _mixed_batches(insert_batch)
    con.execute("CHECKPOINT")
    seen: list[tuple[tuple[int, int], ...]] = []
    real = setwise_module.merged_ranges

    def recorded(ranges: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
        seen.append(real(ranges))
        return seen[-1]

    monkeypatch.setattr(setwise_module, "merged_ranges", recorded)
    ranged = _validate_copy(db_path, tmp_path / "ranged.duckdb", vconfig, monkeypatch, one_at_a_time=False)  # fmt: skip
    assert seen and all(seen)
    monkeypatch.setattr(setwise_module, "merged_ranges", lambda ranges: ())
    plain = _validate_copy(db_path, tmp_path / "plain.duckdb", vconfig, monkeypatch, one_at_a_time=False)  # fmt: skip
    for table in ("quarantine", "ingest_runs", "gaps", "first_results", "results"):
        assert ranged[table] == plain[table], table


def test_rowid_ranges_merge_into_few_spans_covering_every_batch() -> None:
    merge = setwise_module.merged_ranges
    group = setwise_module.ROW_GROUP
    assert merge([]) == ()
    assert merge([(10, 20), (0, 9), (21, 30)]) == ((0, 30),)
    far = 5 * group
    assert merge([(0, 5), (far, far + 5)]) == ((0, 5), (far, far + 5))
    many = [(i * far, i * far + 1) for i in range(setwise_module.MAX_RANGES + 1)]
    assert merge(many) == ((0, setwise_module.MAX_RANGES * far + 1),)
