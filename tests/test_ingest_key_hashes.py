"""Duplicate checks of pseudonymised event ids by hash (migration 0056): a later load reads
only the runs that can hold one of its keys, and finds every repeat the full check finds."""

from __future__ import annotations

import random
from pathlib import Path

import duckdb
import pytest

import dwatch.ingest.write as ingest_write
from dwatch.ingest import ingest_paths
from dwatch.store import connect, migrate
from tests.test_ingest_groups import KEY, event, write

# An id with a shape SSA could issue is stored as its pseudonym; the others as they are.
SHAPED = [f"GA-DOR-{n:09d}" for n in (123456789, 234567890, 345678901, 456789012, 567890123)]
PLAIN = [f"GA-DOR-{n:09d}" for n in (1, 2, 3, 4, 5)]


def _spy(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    read: list[object] = []
    real = ingest_write._stored_rows

    def spy(
        con: duckdb.DuckDBPyConnection, kind: str, skip_run: str | None = None
    ) -> tuple[str | None, dict[str, object]]:
        stored, params = real(con, kind, skip_run)
        read.append(params.get("runs"))
        return stored, params

    monkeypatch.setattr(ingest_write, "_stored_rows", spy)
    return read


def test_pseudonymised_ids_are_checked_by_hash_and_read_only_where_they_repeat(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    con = connect(tmp_path / "store.duckdb")
    first = ingest_paths(
        con,
        [
            write(
                tmp_path / "a.parquet", [event(e, i) for i, e in enumerate(SHAPED[:3] + PLAIN[:2])]
            )
        ],
        key=KEY,
    )
    second = ingest_paths(
        con,
        [write(tmp_path / "b.parquet", [event(e, 10 + i) for i, e in enumerate(SHAPED[3:])])],
        key=KEY,
    )
    stored = {r[0] for r in con.execute("SELECT event_id FROM disclosure_events").fetchall()}
    assert sum(e.startswith("tp_") for e in stored) == 5  # the shaped ids are pseudonyms
    # The first run's whole range reaches 'tp_...': every later id of the source overlaps it.
    assert (
        con.execute(
            "SELECT count(*) FROM ingest_key_ranges WHERE last_event_id LIKE 'tp_%'"
        ).fetchone()[0]
        == 2
    )
    assert con.execute(
        "SELECT ingest_run_id, first_plain_id, last_plain_id, hashed_ids FROM ingest_key_classes"
        " ORDER BY hashed_ids DESC"
    ).fetchall() == [
        (first[0].run_id, PLAIN[0], PLAIN[1], 3),
        (second[0].run_id, None, None, 2),
    ]
    read = _spy(monkeypatch)
    # New ids of both kinds: no stored run can hold them, so no event row is read.
    ingest_paths(
        con,
        [write(tmp_path / "c.parquet", [event("GA-DOR-678901234", 20), event(PLAIN[4], 21)])],
        key=KEY,
    )
    assert read == [None]
    # A pseudonym of the second run and a plain id of the first: only those runs are read.
    results = ingest_paths(
        con,
        [write(tmp_path / "d.parquet", [event(SHAPED[4], 30), event(PLAIN[1], 31)])],
        key=KEY,
    )
    assert read[-1] == sorted([first[0].run_id, second[0].run_id])
    assert results[0].quarantined_by_reason == {"duplicate_event_id": 2}
    messages = [r[0] for r in con.execute("SELECT message FROM quarantine").fetchall()]
    assert {m.rsplit(" ", 1)[1] for m in messages} == {first[0].run_id, second[0].run_id}
    # The same pseudonym written another way ('234-56-7890' style separators) is the same key.
    results = ingest_paths(
        con, [write(tmp_path / "e.parquet", [event("GA-DOR-001-23-4567", 40)])], key=KEY
    )
    assert read[-1] is None  # GA-DOR-001234567 was never loaded
    results = ingest_paths(
        con, [write(tmp_path / "f.parquet", [event("ga-dor-123456789", 41)])], key=KEY
    )
    assert results[0].quarantined_by_reason == {"duplicate_event_id": 1}
    assert read[-1] == [first[0].run_id]


def test_a_run_recorded_before_the_hashes_is_still_checked_by_its_range(
    tmp_path: Path,
) -> None:
    con = connect(tmp_path / "store.duckdb")
    ingest_paths(
        con, [write(tmp_path / "a.parquet", [event(SHAPED[0], 1), event(PLAIN[0], 2)])], key=KEY
    )
    con.execute("DELETE FROM ingest_key_classes")
    con.execute("DELETE FROM ingest_key_hashes")
    results = ingest_paths(
        con, [write(tmp_path / "b.parquet", [event(SHAPED[0], 3), event(PLAIN[0], 4)])], key=KEY
    )
    assert results[0].quarantined_by_reason == {"duplicate_event_id": 2}


def test_the_migration_backfills_what_ingest_records(tmp_path: Path) -> None:
    con = connect(tmp_path / "store.duckdb")
    rows = [
        event(e, i) for i, e in enumerate([*SHAPED, *PLAIN, "tp_not-hex-but-35-characters-long!"])
    ]
    ingest_paths(con, [write(tmp_path / "a.parquet", rows[:6])], key=KEY)
    ingest_paths(con, [write(tmp_path / "b.parquet", rows[6:])], key=KEY)
    tables = ("ingest_key_classes", "ingest_key_hashes")
    recorded = [sorted(con.execute(f"SELECT * FROM {t}").fetchall()) for t in tables]
    for table in tables:
        con.execute(f"DROP TABLE {table}")
    con.execute("DELETE FROM schema_migrations WHERE version = 56")
    assert 56 in migrate(con)
    assert [sorted(con.execute(f"SELECT * FROM {t}").fetchall()) for t in tables] == recorded
    assert con.execute("SELECT count(*) FROM ingest_key_hashes").fetchone()[0] == 5


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_repeats_found_by_hash_are_the_repeats_the_whole_check_finds(
    tmp_path: Path, seed: int
) -> None:
    """Random loads of shaped and plain ids, some repeated across files and within them:
    the same rows quarantined, with the same messages, as the check of every stored row."""
    rng = random.Random(seed)
    pool = [f"AZ-DOR-{rng.choice([1, 123456789, 987654321]) + n:09d}" for n in range(40)]
    files = [
        [event(rng.choice(pool), 100 * k + i) for i in range(rng.randint(1, 12))] for k in range(6)
    ]

    def load(name: str, whole: bool, monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
        if whole:  # every stored run read: the check as it was before any range
            monkeypatch.setattr(
                ingest_write,
                "_stored_rows",
                lambda con, kind, skip_run=None: (
                    "(SELECT * FROM disclosure_events WHERE ingest_run_id IS DISTINCT FROM"
                    " $skip_run)",
                    {"skip_run": skip_run},
                ),
            )
        folder = tmp_path / name
        folder.mkdir()
        con = connect(folder / "store.duckdb")
        for k, rows in enumerate(files):
            ingest_paths(con, [write(folder / f"{k}.parquet", rows)], key=KEY)
        files_of = {
            run: Path(file).name
            for run, file in con.execute("SELECT run_id, source_file FROM ingest_runs").fetchall()
        }
        left = con.execute(
            "SELECT ingest_run_id, source_row, reason_code, message FROM quarantine"
        ).fetchall()
        con.close()
        # Run ids differ between the two stores: each names its file instead.
        return sorted(
            (
                files_of[run],
                row,
                reason,
                Path(message.split(" row ", 1)[0]).name
                + " row "
                + message.split(" row ", 1)[1].replace(
                    message.rsplit(" ", 1)[1], files_of.get(message.rsplit(" ", 1)[1], "-")
                ),
            )
            for run, row, reason, message in left
        )

    with pytest.MonkeyPatch.context() as mp:
        hashed = load("hashed", False, mp)
    with pytest.MonkeyPatch.context() as mp:
        whole = load("whole", True, mp)
    assert hashed == whole
    assert sum(r[2] == "duplicate_event_id" for r in hashed) > 3
