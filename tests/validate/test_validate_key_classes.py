"""The unique-key check reads stored batches by the event ids ingest kept per class
(``ingest_key_classes``, ``ingest_key_hashes``, migration 0056): the verdicts and the rows
quarantined are those of reading every stored row."""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import duckdb
import pytest

import dwatch.validate.selecting as selecting_module
import dwatch.validate.setwise as setwise_module
from dwatch.key_classes import KEY_CLASSES, KEY_HASHES, sql_key_hash, sql_key_hashed
from dwatch.masking import register as register_masking
from dwatch.store import connect
from dwatch.validate import ValidationConfig, validate_batches
from dwatch.validate.keyranges import runs_to_read
from tests.validate.conftest import InsertBatch, event_row

KEY = "expect_key_unique(source_system, event_id)"
SOURCES = ("log-a", "log-b")


def _record(con: duckdb.DuckDBPyConnection, run_id: str, *, classes: bool = True) -> None:
    """What ingest records of a batch it loads (insert_batch writes rows straight): its key
    range per source and, with ``classes``, its ids by class (a run loaded before 0056 has
    the range alone)."""
    con.execute(
        "INSERT INTO ingest_key_ranges SELECT ingest_run_id, source_system, min(event_id),"
        " max(event_id) FROM disclosure_events WHERE ingest_run_id = ? GROUP BY ALL",
        [run_id],
    )
    if not classes:
        return
    hashed = sql_key_hashed("event_id")
    con.execute(
        f"INSERT INTO {KEY_CLASSES} SELECT ingest_run_id, source_system,"
        " min(event_id) FILTER (WHERE NOT h), max(event_id) FILTER (WHERE NOT h),"
        f" count(*) FILTER (WHERE h) FROM (SELECT *, {hashed} AS h FROM disclosure_events"
        " WHERE ingest_run_id = ?) GROUP BY ALL",
        [run_id],
    )
    con.execute(
        f"INSERT INTO {KEY_HASHES} SELECT ingest_run_id, source_system,"
        f" {sql_key_hash('event_id')} FROM disclosure_events WHERE ingest_run_id = ? AND {hashed}",
        [run_id],
    )


def _pseudonym(rng: random.Random) -> str:
    return "tp_" + "".join(rng.choice("0123456789abcdef") for _ in range(32))


def _outputs(
    db: Path, *, migrate: bool = True
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """validation_results and quarantine (``migrate`` False: the store as it is)."""
    con = connect(db) if migrate else duckdb.connect(str(db))
    try:
        results = con.execute(
            "SELECT ingest_run_id, source_system, expectation, success, unexpected_count,"
            " message FROM validation_results ORDER BY ALL"
        ).fetchall()
        quarantined = con.execute(
            "SELECT ingest_run_id, source_row, kind, reason_code, field, message, stage"
            " FROM quarantine ORDER BY ALL"
        ).fetchall()
        return results, quarantined
    finally:
        con.close()


def _validate(
    db: Path, vconfig: ValidationConfig, monkeypatch: pytest.MonkeyPatch, reads: str
) -> list[dict[str, tuple[str, ...]]]:
    """Validate the store's new batches, the stored rows read as ``reads`` says: "classes"
    (this code), "ranges" (by whole key ranges, as before 0056's tables were read), "all"."""
    seen: list[dict[str, tuple[str, ...]]] = []
    real = setwise_module.runs_to_read

    def recorded(*args: Any) -> dict[str, tuple[str, ...]]:
        if reads == "all":
            seen.append({})
        elif reads == "ranges":
            seen.append(real(*args[:4]))
        else:
            seen.append(real(*args))
        return seen[-1]

    with monkeypatch.context() as mp:
        mp.setattr(setwise_module, "runs_to_read", recorded)
        con = connect(db)
        try:
            validate_batches(con, config=vconfig, build_docs=False)
        finally:
            con.close()
    return seen


def _random_store(
    rng: random.Random, con: duckdb.DuckDBPyConnection, insert_batch: InsertBatch
) -> None:
    """History of two logs: pseudonyms and plain ids, some repeated across batches, logs
    and within a batch; batches recorded with classes, with a range alone (loaded before
    migration 0056) or not at all; rows of no batch."""
    shaped = [_pseudonym(rng) for _ in range(12)]
    plain = [f"ev-{n:04d}" for n in range(1, 400)]
    used: list[tuple[str, str]] = []
    seq = iter(range(1, 100_000))

    def rows(n: int, repeat: float) -> list[dict[str, Any]]:
        out = []
        for _ in range(n):
            source = rng.choice(SOURCES)
            if used and rng.random() < repeat:
                source, event_id = rng.choice(used)
                source = source if rng.random() < 0.8 else rng.choice(SOURCES)
            elif rng.random() < 0.5:
                event_id = rng.choice(shaped) if rng.random() < 0.3 else _pseudonym(rng)
            else:
                event_id = plain.pop(rng.randrange(len(plain)) if rng.random() < 0.2 else 0)
            used.append((source, event_id))
            i = next(seq)
            out.append(event_row(i, event_id=event_id, source_system=source))
        return out

    for _ in range(rng.randint(4, 9)):
        run = insert_batch(rows(rng.randint(4, 14), 0.1))
        how = rng.random()
        if how < 0.7:
            _record(con, run)
        elif how < 0.9:
            _record(con, run, classes=False)
    for _ in range(rng.randint(0, 2)):  # rows of no ingest run (written by another path)
        source, event_id = rng.choice(used)
        i = next(seq)
        con.execute(
            "INSERT INTO disclosure_events (event_id, source_system, sequence_no, occurred_at,"
            " event_type, disclosing_agency, recipient_agency, actor_id, actor_role,"
            " legal_authority, purpose, data_elements, record_count, channel, encrypted,"
            " outcome) SELECT event_id, source_system, ?, occurred_at, event_type,"
            " disclosing_agency, recipient_agency, actor_id, actor_role, legal_authority,"
            " purpose, data_elements, record_count, channel, encrypted, outcome"
            " FROM disclosure_events WHERE event_id = ? AND source_system = ? LIMIT 1",
            [i, event_id, source],
        )


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 6])
@pytest.mark.parametrize("bounded", [False, True])
def test_reads_by_key_class_give_the_verdicts_of_reading_every_row(
    seed: int,
    bounded: bool,
    db_path: Path,
    tmp_path: Path,
    con: duckdb.DuckDBPyConnection,
    insert_batch: InsertBatch,
    vconfig: ValidationConfig,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Random stores with repeats injected: validation_results and quarantine (rows, reasons,
    messages) as when every stored row is read, and as when whole ranges bound the reads.
    ``bounded``: the new rows are found from their first rowid (as at scale), so a check
    reading only new batches reads from there."""
    if bounded:
        monkeypatch.setattr(selecting_module, "_ROW_GROUP", 1)
    rng = random.Random(seed)
    _random_store(rng, con, insert_batch)
    validate_batches(con, config=vconfig, build_docs=False)
    history = [
        (r[0], r[1])
        for r in con.execute("SELECT source_system, event_id FROM disclosure_events").fetchall()
    ]
    new_runs = []
    for _ in range(rng.randint(1, 3)):
        batch = []
        for k in range(rng.randint(3, 10)):
            pick = rng.random()
            if pick < 0.4:
                source, event_id = rng.choice(history)
            elif pick < 0.6:
                source, event_id = rng.choice(SOURCES), _pseudonym(rng)
            else:
                source, event_id = rng.choice(SOURCES), f"ev-{rng.randint(1, 500):04d}"
            batch.append(event_row(5000 + 100 * len(new_runs) + k, event_id=event_id,
                                   source_system=source))  # fmt: skip
        if rng.random() < 0.3:
            batch.append(dict(batch[0], sequence_no=batch[0]["sequence_no"] + 50))
        new_runs.append(insert_batch(batch))
        _record(con, new_runs[-1], classes=rng.random() < 0.9)
    con.close()
    copies = {name: tmp_path / f"{name}.duckdb" for name in ("classes", "ranges", "all")}
    for target in copies.values():
        shutil.copy(db_path, target)
    reads = {name: _validate(path, vconfig, monkeypatch, name) for name, path in copies.items()}
    got = _outputs(copies["classes"])
    assert got == _outputs(copies["all"])
    # never more runs read than by whole ranges (no entry: the whole table)
    assert len(reads["classes"]) == len(reads["ranges"]) > 0
    for fine, coarse in zip(reads["classes"], reads["ranges"], strict=True):
        if "unique_key" in coarse:
            assert set(fine["unique_key"]) <= set(coarse["unique_key"])
    assert any(r[2] == KEY and not r[3] for r in got[0])  # repeats were injected


def test_a_pseudonym_reads_only_the_batches_holding_its_hash(
    con: duckdb.DuckDBPyConnection, insert_batch: InsertBatch, vconfig: ValidationConfig
) -> None:
    rng = random.Random(7)
    ids = [_pseudonym(rng) for _ in range(6)]
    first = insert_batch([event_row(1, event_id=ids[0]), event_row(2, event_id="ev-0001")])
    second = insert_batch([event_row(3, event_id=ids[1]), event_row(4, event_id="ev-0002")])
    before = insert_batch([event_row(5, event_id=ids[2])])  # recorded before 0056: range only
    for run in (first, second):
        _record(con, run)
    _record(con, before, classes=False)
    validate_batches(con, config=vconfig, build_docs=False)
    # a pseudonym of the second batch and a fresh plain id past every stored one
    new = insert_batch([event_row(6, event_id=ids[1]), event_row(7, event_id="ev-0009")])
    _record(con, new)
    found = runs_to_read(con, "disclosure_events", [new], [], 0)
    # the range-only batch's whole range ('tp_...') overlaps every new pseudonym
    assert found["unique_key"] == tuple(sorted([second, before, new]))
    # whole ranges: every batch
    assert "unique_key" not in runs_to_read(con, "disclosure_events", [new], [])
    validate_batches(con, config=vconfig, build_docs=False)
    assert con.execute(
        "SELECT ingest_run_id, unexpected_count FROM validation_results WHERE expectation = ?"
        " AND NOT success",
        [KEY],
    ).fetchall() == [(new, 1)]
    assert con.execute(
        "SELECT ingest_run_id, reason_code FROM quarantine WHERE stage = 'validate'"
    ).fetchall() == [(new, "expect_key_unique")]


def test_rows_of_no_batch_are_read_also_when_only_new_batches_are(
    con: duckdb.DuckDBPyConnection,
    insert_batch: InsertBatch,
    vconfig: ValidationConfig,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A row no ingest run wrote is read wherever it lies. Before, a check reading only new
    batches read from their first rowid, rows of no batch too: a new row repeating an older
    row of no batch passed, unless some stored batch's range overlapped the new ones' (then
    the same row failed)."""
    monkeypatch.setattr(selecting_module, "_ROW_GROUP", 1)
    old = insert_batch([event_row(1), event_row(2)])
    _record(con, old)
    con.execute(
        "INSERT INTO disclosure_events (event_id, source_system, sequence_no, occurred_at,"
        " event_type, disclosing_agency, recipient_agency, actor_id, actor_role,"
        " legal_authority, purpose, data_elements, record_count, channel, encrypted, outcome)"
        " SELECT 'ev-7', source_system, 3, occurred_at, event_type, disclosing_agency,"
        " recipient_agency, actor_id, actor_role, legal_authority, purpose, data_elements,"
        " record_count, channel, encrypted, outcome FROM disclosure_events LIMIT 1"
    )
    validate_batches(con, config=vconfig, build_docs=False)
    new = insert_batch([event_row(7), event_row(8)])
    _record(con, new)
    validate_batches(con, config=vconfig, build_docs=False)
    assert con.execute(
        "SELECT unexpected_count FROM validation_results WHERE ingest_run_id = ?"
        " AND expectation = ?",
        [new, KEY],
    ).fetchone() == (1,)
    assert con.execute(
        "SELECT source_row FROM quarantine WHERE ingest_run_id = ? AND stage = 'validate'",
        [new],
    ).fetchall() == [(1,)]


def test_a_store_migrated_from_before_the_classes_is_read_by_them(
    db_path: Path,
    tmp_path: Path,
    con: duckdb.DuckDBPyConnection,
    insert_batch: InsertBatch,
    vconfig: ValidationConfig,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A store kept at a migration before 0056 is bounded by whole ranges; migrated, by
    the classes the backfill writes: the same verdicts and quarantine either way, and as
    reading every row, with fewer batches read."""
    rng = random.Random(11)
    history = [
        insert_batch(
            [
                event_row(10 * b + k, event_id=_pseudonym(rng) if k % 2 else f"ev-{10 * b + k:04d}")
                for k in range(6)
            ]
        )
        for b in range(5)
    ]
    for run in history:
        _record(con, run, classes=False)  # what ingest recorded before 0056
    con.execute(f"DROP TABLE {KEY_CLASSES}")
    con.execute(f"DROP TABLE {KEY_HASHES}")
    con.execute("DELETE FROM schema_migrations WHERE version = 56")
    validate_batches(con, config=vconfig, build_docs=False)
    stored = con.execute(
        "SELECT event_id FROM disclosure_events WHERE ingest_run_id = ? ORDER BY source_row",
        [history[2]],
    ).fetchall()
    # a pseudonym and a plain id of the third batch, a fresh pseudonym, a fresh plain id
    batch = [stored[1][0], stored[2][0], _pseudonym(rng), "ev-0023"]
    new = insert_batch([event_row(50 + k, event_id=e) for k, e in enumerate(batch)])
    _record(con, new, classes=False)
    con.close()
    migrated, kept, whole = (tmp_path / f"{n}.duckdb" for n in ("migrated", "kept", "whole"))
    for target in (migrated, kept, whole):
        shutil.copy(db_path, target)
    c = connect(migrated)  # connect migrates: 0056 backfills the classes
    assert c.execute(f"SELECT count(*) FROM {KEY_CLASSES}").fetchone()[0] == 6
    c.close()
    reads = _validate(migrated, vconfig, monkeypatch, "classes")
    assert [r["unique_key"] for r in reads] == [tuple(sorted([history[2], new]))]
    c = duckdb.connect(str(kept))
    assert 56 not in {r[0] for r in c.execute("SELECT version FROM schema_migrations").fetchall()}
    c.close()
    _validate_unmigrated(kept, vconfig)
    _validate(whole, vconfig, monkeypatch, "all")
    assert _outputs(migrated) == _outputs(whole)
    assert _outputs(kept, migrate=False) == _outputs(whole)
    failed = [r for r in _outputs(whole)[0] if r[2] == KEY and not r[3]]
    assert [(r[0], r[4]) for r in failed] == [(new, 2)]


def _validate_unmigrated(db: Path, vconfig: ValidationConfig) -> None:
    """Validate a store left at its migrations (``dwatch.store.connect`` would migrate)."""
    con = duckdb.connect(str(db))
    try:
        con.execute("SET TimeZone = 'UTC'")
        register_masking(con)
        validate_batches(con, config=vconfig, build_docs=False)
    finally:
        con.close()


def test_a_first_validation_of_every_batch_reads_no_id_by_class(
    con: duckdb.DuckDBPyConnection,
    insert_batch: InsertBatch,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every loaded batch new (a first full run): the whole table is read, so the new ids
    are not read by class first (a pass over every row for nothing)."""
    import dwatch.validate.keyranges as keyranges

    runs = [insert_batch([event_row(2 * b + 1), event_row(2 * b + 2)]) for b in range(3)]
    for run in runs:
        _record(con, run)
    called: list[object] = []
    real = keyranges._holding_keys

    def spy(*args: Any) -> set[str]:
        called.append(args)
        return real(*args)

    monkeypatch.setattr(keyranges, "_holding_keys", spy)
    assert "unique_key" not in runs_to_read(con, "disclosure_events", runs, [], 0)
    assert not called
    assert runs_to_read(con, "disclosure_events", runs[2:], [], 0)["unique_key"] == (runs[2],)
    assert called
