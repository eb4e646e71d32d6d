"""Small batches validated together in one GX run give exactly the one-by-one results."""

from __future__ import annotations

import json
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

import dwatch.validate.runner as runner_module
from dwatch.errors import ConfigError
from dwatch.store import connect
from dwatch.validate import ValidationConfig, load_config, validate_batches
from tests.validate.conftest import T0, InsertBatch, event_row, item_row

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


def _validate_copy(
    source_db: Path, target: Path, config: ValidationConfig, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    shutil.copy(source_db, target)
    gx_runs: list[str] = []
    real = runner_module._run_gx

    def counting(context: Any, datasource: Any, asset: str, *args: Any) -> Any:
        gx_runs.append(asset)
        return real(context, datasource, asset, *args)

    monkeypatch.setattr(runner_module, "_run_gx", counting)
    con = connect(target)
    try:
        report = validate_batches(con, config=config, build_docs=False)
        return {
            "report": report,
            "gx_runs": gx_runs,
            "results": con.execute(
                f"SELECT {RESULT_COLUMNS} FROM validation_results ORDER BY ALL"
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
                " ingest_run_id FROM coverage_gaps ORDER BY ALL"
            ).fetchall(),
        }
    finally:
        con.close()
        monkeypatch.setattr(runner_module, "_run_gx", real)


def _comparable(row: tuple) -> tuple:
    """A validation_results row without what only says how it was computed."""
    (*head, observed, message) = row
    if observed and "unexpected_rows_sql" in observed:
        observed = json.loads(observed)["unexpected_rows_sql"]
    if message:
        message = message.split(" (validated with")[0].split(" (GX counted")[0]
    return (*head, observed, message)


def test_grouped_results_equal_one_by_one(
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
    grouped = _validate_copy(db_path, tmp_path / "grouped.duckdb", vconfig, monkeypatch)
    alone = _validate_copy(
        db_path,
        tmp_path / "alone.duckdb",
        vconfig.with_overrides(group_max_batches=1),
        monkeypatch,
    )
    # One GX run per suite for the eight batches (canonical, other-log's), plus the
    # store-wide check, instead of one per batch and suite.
    assert len(grouped["gx_runs"]) == 3 and len(alone["gx_runs"]) == 8 + 3 + 1
    assert not any(b.error for b in grouped["report"].all_batches)
    assert [b.ingest_run_id for b in grouped["report"].batches] == list(runs.values())

    for table in ("quarantine", "ingest_runs", "gaps"):
        assert grouped[table] == alone[table], table
    assert sorted(map(_comparable, grouped["results"]), key=repr) == sorted(
        map(_comparable, alone["results"]), key=repr
    )

    # Each failure is on the batch it belongs to.
    def failed(run: str) -> set[str]:
        return {
            r[3]
            for r in grouped["results"]
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
        for r in grouped["results"]
        if r[0] == runs["h"]
        and r[2] == "source.other-log"
        and r[3] == "expect_column_values_to_match_regex(event_id)"
    ]
    assert (h_regex[1], h_regex[6], h_regex[7]) == ("other-log", 1, 1)  # source, rows, failing
    assert failed("f") == {"expect_column_values_to_be_between(record_count)"}
    assert failed("g") == {"expect_source_not_silent(occurred_at)"}
    moved = [(r[0], r[2]) for r in grouped["quarantine"]]  # run, source_row
    assert sorted(moved) == sorted(
        [(runs["a"], 5), (runs["e"], 1), (runs["e"], 2), (runs["f"], 21)]
    )
    # The row outcome says GX judged the batches together, and how many rows it counted.
    [(observed, message)] = [
        (r[10], r[11])
        for r in grouped["results"]
        if r[0] == runs["d"] and r[3] == "expect_sequence_no_increasing(sequence_no)"
    ]
    assert json.loads(observed) == {
        "unexpected_count_gx": 2,  # hours 50 after 102, then 40 after 50
        "unexpected_rows_sql": 2,
        "batches_validated_together": 8,
    }
    assert "validated with 7 other small batch(es) in one GX run" in message


def test_groups_are_neighbours_of_one_table_within_the_limits(
    con: duckdb.DuckDBPyConnection, insert_batch: InsertBatch, vconfig: ValidationConfig
) -> None:
    small = [insert_batch([event_row(i)]) for i in range(1, 4)]
    big = insert_batch([event_row(i) for i in range(10, 16)])
    items = insert_batch([item_row(1)], kind="request_items")
    after = [insert_batch([event_row(i)]) for i in range(20, 23)]
    batches = runner_module._select_batches(con, None)
    config = vconfig.with_overrides(group_max_batches=2, group_max_rows=5)
    groups = [
        [b.run_id for b in g] for g in runner_module._group_small_batches(con, batches, config)
    ]
    assert groups == [small[:2], [small[2]], [big], [items], after[:2], [after[2]]]
    one_by_one = vconfig.with_overrides(group_max_batches=1)
    assert all(len(g) == 1 for g in runner_module._group_small_batches(con, batches, one_by_one))


def test_a_group_that_cannot_run_is_validated_one_by_one(
    con: duckdb.DuckDBPyConnection,
    insert_batch: InsertBatch,
    vconfig: ValidationConfig,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runs = [insert_batch([event_row(i)]) for i in range(1, 4)]

    def broken(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("GX could not plan the combined query")

    monkeypatch.setattr(runner_module, "_validate_group", broken)
    report = validate_batches(con, config=vconfig, build_docs=False)
    assert [b.ingest_run_id for b in report.batches] == runs
    assert not any(b.error for b in report.batches)
    assert all(b.outcomes and not b.failed for b in report.batches)
    validated = con.execute(
        "SELECT count(DISTINCT ingest_run_id) FROM validation_results WHERE ingest_run_id IS NOT NULL"
    ).fetchone()[0]
    assert validated == 3


@pytest.mark.parametrize("value", [0, -3, "many", 2.5])
def test_group_limits_must_be_whole_numbers(tmp_path: Path, value: object) -> None:
    text = Path(runner_module.__file__).with_name("validation.yaml").read_text(encoding="utf-8")
    path = tmp_path / "validation.yaml"
    path.write_text(
        text.replace("group_max_batches: 25", f"group_max_batches: {value}"), encoding="utf-8"
    )
    with pytest.raises(ConfigError, match="group_max_batches must be a whole number") as info:
        load_config(path)
    assert "1 turns grouping off" in (info.value.fix or "")
