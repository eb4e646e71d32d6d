"""Duplicate checks read only stored batches whose key ranges overlap the new ones'."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest

import dwatch.validate.setwise as setwise_module
from dwatch.store import connect
from dwatch.validate import ValidationConfig, validate_batches
from dwatch.validate.keyranges import runs_to_read
from tests.validate.conftest import InsertBatch, event_row

KEY = "expect_key_unique(source_system, event_id)"
SEQ = "expect_sequence_no_unique_per_source(sequence_no)"


def _event_ranges(con: duckdb.DuckDBPyConnection, run_id: str) -> None:
    """What ingest records for a batch it loads (insert_batch writes rows straight)."""
    con.execute(
        "INSERT INTO ingest_key_ranges SELECT ingest_run_id, source_system, min(event_id),"
        " max(event_id) FROM disclosure_events WHERE ingest_run_id = ? GROUP BY ALL",
        [run_id],
    )


def _failures(con: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, int]:
    return {
        name: int(n)
        for name, n in con.execute(
            "SELECT expectation, unexpected_count FROM validation_results"
            " WHERE ingest_run_id = ? AND NOT success AND scope = 'row'",
            [run_id],
        ).fetchall()
    }


def _old_batch(
    con: duckdb.DuckDBPyConnection, insert_batch: InsertBatch, config: ValidationConfig
) -> str:
    """A validated batch of state-exchange-log (ev-1..ev-5, numbers 1-5), beside one of
    another log (never overlapping: when every stored batch is to be read anyway, the
    whole table is read without a list of runs)."""
    old = insert_batch([event_row(i) for i in range(1, 6)])
    other = insert_batch([event_row(i, source_system="far-log") for i in range(1, 6)])
    for run in (old, other):
        _event_ranges(con, run)
    validate_batches(con, config=config, build_docs=False)
    return old


def test_validation_records_each_batchs_sequence_range(
    con: duckdb.DuckDBPyConnection, insert_batch: InsertBatch, vconfig: ValidationConfig
) -> None:
    old = _old_batch(con, insert_batch, vconfig)
    new = insert_batch([event_row(i, source_system="other-log") for i in (7, 9)])
    validate_batches(con, config=vconfig, build_docs=False)
    assert con.execute(
        "SELECT * FROM validation_sequence_ranges ORDER BY ALL"
    ).fetchall() == sorted(
        [(old, "state-exchange-log", 1, 5), (new, "other-log", 7, 9)]
        + [
            (r[0], "far-log", 1, 5)
            for r in con.execute(
                "SELECT DISTINCT ingest_run_id FROM disclosure_events WHERE source_system = 'far-log'"
            ).fetchall()
        ]
    )


def test_duplicates_of_an_old_batch_are_found_when_ranges_overlap(
    con: duckdb.DuckDBPyConnection, insert_batch: InsertBatch, vconfig: ValidationConfig
) -> None:
    old = _old_batch(con, insert_batch, vconfig)
    # ev-3 again (numbered 7), and number 4 again (as ev-8): both overlap the old ranges.
    new = insert_batch([event_row(6), event_row(7, event_id="ev-3"), event_row(8, sequence_no=4)])
    _event_ranges(con, new)
    assert runs_to_read(con, "disclosure_events", [new], [(new, "state-exchange-log", 4, 8)]) == {
        "unique_key": tuple(sorted([old, new])),
        "sequence_unique": tuple(sorted([old, new])),
    }
    validate_batches(con, config=vconfig, build_docs=False)
    failures = _failures(con, new)
    assert failures[KEY] == 1
    assert failures[SEQ] == 1
    assert _failures(con, old) == {}


def test_batches_whose_ranges_do_not_overlap_are_not_read(
    con: duckdb.DuckDBPyConnection, insert_batch: InsertBatch, vconfig: ValidationConfig
) -> None:
    old = _old_batch(con, insert_batch, vconfig)
    # Numbers 7-8 and ids ev-7, ev-8 lie outside the old batch's ranges (1-5, ev-1..ev-5)...
    new = insert_batch([event_row(7), event_row(8)])
    _event_ranges(con, new)
    seq = [(new, "state-exchange-log", 7, 8)]
    assert runs_to_read(con, "disclosure_events", [new], seq) == {
        "unique_key": (new,),
        "sequence_unique": (new,),
    }
    # ...so if its recorded ranges lied, a real duplicate in it would go unseen: the
    # ranges, not the table, decide what is read.
    con.execute(
        "UPDATE disclosure_events SET event_id = 'ev-8', sequence_no = 8"
        " WHERE ingest_run_id = ? AND event_id = 'ev-5'",
        [old],
    )
    validate_batches(con, config=vconfig, build_docs=False)
    assert _failures(con, new) == {}


def test_a_batch_with_no_known_range_is_always_read(
    con: duckdb.DuckDBPyConnection, insert_batch: InsertBatch, vconfig: ValidationConfig
) -> None:
    old = _old_batch(con, insert_batch, vconfig)
    loaded_not_ranged = insert_batch([event_row(20, source_system="other-log")])
    new = insert_batch([event_row(7)])
    _event_ranges(con, new)
    seq = [(new, "state-exchange-log", 7, 7)]
    found = runs_to_read(con, "disclosure_events", [new], seq)
    assert found == {
        "unique_key": tuple(sorted([loaded_not_ranged, new])),
        "sequence_unique": tuple(sorted([loaded_not_ranged, new])),
    }
    assert old not in found["unique_key"]
    # A new batch whose own event ids ingest did not record: the whole table is read.
    unranged_new = insert_batch([event_row(30)])
    found = runs_to_read(
        con, "disclosure_events", [new, unranged_new], [*seq, (unranged_new, "x", 30, 30)]
    )
    assert "unique_key" not in found
    assert "sequence_unique" in found


def _results(db: Path) -> list[tuple[Any, ...]]:
    con = connect(db)
    try:
        return con.execute(
            "SELECT ingest_run_id, source_system, expectation, success, unexpected_count,"
            " message FROM validation_results ORDER BY ALL"
        ).fetchall()
    finally:
        con.close()


def test_bounded_reads_give_the_verdicts_of_reading_the_whole_table(
    db_path: Path,
    tmp_path: Path,
    insert_batch: InsertBatch,
    con: duckdb.DuckDBPyConnection,
    vconfig: ValidationConfig,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = insert_batch([event_row(i) for i in range(1, 11)])
    far = insert_batch([event_row(i, source_system="far-log") for i in range(1, 11)])
    for run in (first, far):
        _event_ranges(con, run)
    validate_batches(con, config=vconfig, build_docs=False)
    batches = [
        [event_row(11), event_row(12, event_id="ev-4"), event_row(13, sequence_no=2)],
        [event_row(14), event_row(15, source_system="other-log", sequence_no=3)],
        [event_row(16, event_id="ev-11"), event_row(17, sequence_no=14)],
    ]
    for rows in batches:
        _event_ranges(con, insert_batch(rows))
    con.close()
    bounded, whole = tmp_path / "bounded.duckdb", tmp_path / "whole.duckdb"
    for target in (bounded, whole):
        shutil.copy(db_path, target)
    reads: list[dict[str, tuple[str, ...]]] = []
    real = setwise_module.runs_to_read

    def recorded(*args: Any) -> dict[str, tuple[str, ...]]:
        reads.append(real(*args))
        return reads[-1]

    monkeypatch.setattr(setwise_module, "runs_to_read", recorded)
    c = connect(bounded)
    validate_batches(c, config=vconfig, build_docs=False)
    c.close()
    assert reads and all(r.get("unique_key") for r in reads)  # bounded reads happened
    monkeypatch.setattr(setwise_module, "runs_to_read", lambda *_args: {})
    c = connect(whole)
    validate_batches(c, config=vconfig, build_docs=False)
    c.close()
    got, expected = _results(bounded), _results(whole)
    assert got == expected
    assert sum(1 for r in got if r[2] in (KEY, SEQ) and not r[3]) >= 3


def test_migration_records_the_ranges_of_rows_already_stored(
    db_path: Path, insert_batch: InsertBatch, con: duckdb.DuckDBPyConnection
) -> None:
    run = insert_batch([event_row(i) for i in (3, 4, 9)])
    con.execute("DROP TABLE validation_sequence_ranges")
    con.execute("DELETE FROM schema_migrations WHERE version = 33")
    con.close()
    again = connect(db_path)
    try:
        assert again.execute("SELECT * FROM validation_sequence_ranges").fetchall() == [
            (run, "state-exchange-log", 3, 9)
        ]
    finally:
        again.close()


def _later_copies(con: duckdb.DuckDBPyConnection, key: str, runs: list[str]) -> dict[str, int]:
    """Per batch of ``runs``, its rows holding a key an earlier loaded row holds (by batch
    start, run id, row): every key of the table ranked, as the check defines it."""
    return {
        r: int(n)
        for r, n in con.execute(
            f"SELECT ingest_run_id, count(*) FROM (SELECT e.ingest_run_id, row_number() OVER"
            f" (PARTITION BY e.source_system, e.{key} ORDER BY r.started_at, e.ingest_run_id,"
            f" e.rowid) AS copy_no FROM disclosure_events e JOIN ingest_runs r"
            f" ON r.run_id = e.ingest_run_id WHERE e.{key} IS NOT NULL)"
            " WHERE copy_no > 1 AND ingest_run_id IN (SELECT unnest(?::VARCHAR[])) GROUP BY 1",
            [runs],
        ).fetchall()
    }


def _validated_against_ranking(
    con: duckdb.DuckDBPyConnection, vconfig: ValidationConfig, runs: list[str]
) -> tuple[dict[str, int], dict[str, int]]:
    """Validate ``runs`` (their key ranges recorded) and check each batch's duplicate-key and
    duplicate-number failures equal the later copies of every key ranked; returns those."""
    for run in runs:
        _event_ranges(con, run)
    keys = _later_copies(con, "event_id", runs)
    numbers = _later_copies(con, "sequence_no", runs)
    validate_batches(con, config=vconfig, build_docs=False)
    for run in runs:
        failures = _failures(con, run)
        assert failures.get(KEY, 0) == keys.get(run, 0)
        assert failures.get(SEQ, 0) == numbers.get(run, 0)
    return keys, numbers


def test_keys_probed_by_hash_give_every_later_copy(
    con: duckdb.DuckDBPyConnection, insert_batch: InsertBatch, vconfig: ValidationConfig
) -> None:
    """Stored rows are probed with the checked rows' key hashes, not grouped all: the same
    later copies, whatever the stored rows hold (copies among themselves, copies of new
    keys, a key held three times), with key ranges overlapping (pseudonymised ids)."""
    history = [event_row(i, event_id=f"tp_{i % 7}", sequence_no=i % 9) for i in range(1, 40)]
    old = insert_batch(history)
    far = insert_batch([event_row(i, source_system="far-log") for i in range(1, 6)])
    for run in (old, far):
        _event_ranges(con, run)
    validate_batches(con, config=vconfig, build_docs=False)
    assert _failures(con, old)  # history holds copies of its own keys
    first = insert_batch(
        [
            event_row(50, event_id="tp_3", sequence_no=3),  # a copy of stored keys
            event_row(51, event_id="tp_new"),  # new, then copied by the next batch
            event_row(52, event_id="ev-2", source_system="far-log", sequence_no=60),
            event_row(53, event_id="tp_a", sequence_no=53),
        ]
    )
    second = insert_batch(
        [
            event_row(54, event_id="tp_new", sequence_no=51),
            event_row(55, event_id="tp_3", sequence_no=55),  # the third copy
            event_row(56, event_id="tp_b", sequence_no=56),
        ]
    )
    keys, numbers = _validated_against_ranking(con, vconfig, [first, second])
    assert keys == {first: 2, second: 2} and numbers == {first: 1, second: 1}


def test_first_batches_skip_the_hash_probe_and_keep_the_verdicts(
    con: duckdb.DuckDBPyConnection, insert_batch: InsertBatch, vconfig: ValidationConfig
) -> None:
    """With nothing stored before the checked rows (``since`` 0, a first full run) the
    probe would select every row it is asked to narrow, so it is left out; it is kept when
    rows were stored before. The verdicts are every later copy either way."""
    from dwatch.validate.checks import BatchFacts
    from dwatch.validate.suites import _unique_predicate

    probe = 'hash("event_id") IN (SELECT hash'
    now = datetime(2026, 1, 1, tzinfo=UTC)
    first = BatchFacts(run_id="r1", run_started_at=now, now=now, run_ids=("r1", "r2"), since=0)
    later = BatchFacts(run_id="r1", run_started_at=now, now=now, run_ids=("r1", "r2"), since=40)
    assert probe not in _unique_predicate("disclosure_events", ["event_id"], first, "unique_key")
    assert probe in _unique_predicate("disclosure_events", ["event_id"], later, "unique_key")
    a = insert_batch(
        [event_row(i, event_id=f"tp_{i % 5}", sequence_no=i % 7) for i in range(1, 30)]
    )
    b = insert_batch([event_row(i, event_id=f"tp_{i % 3}", sequence_no=i) for i in range(30, 40)])
    keys, _ = _validated_against_ranking(con, vconfig, [a, b])
    assert keys[a] == 24 and keys[b] == 10
