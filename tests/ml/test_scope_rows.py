"""An increment's touched events are read above a row id bound (detectors/ml/scope.py,
first_new_row): the new batches' events are the table's last rows, and the bound is
trusted only when the tail holds every event the ledger says the batches loaded."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest
from ml_synthetic import SPLIT, Injected

from detectors.ml import scope
from dwatch.store import connect

NEW = "ing_new_1"
OLD = "ing_old_1"


@pytest.fixture
def store(
    tmp_path: Path, synthetic: tuple[pl.DataFrame, Injected]
) -> Iterator[duckdb.DuckDBPyConnection]:
    """History loaded as one batch, then a new batch (its events a copy of some of the
    last days') appended at the end, each with its ledger row."""
    events = synthetic[0]
    con = connect(tmp_path / "scope.duckdb")
    history = events.with_columns(pl.lit(OLD).alias("ingest_run_id"))
    new = (
        events.filter(pl.col("occurred_at") >= SPLIT)
        .head(400)
        .with_columns(
            (pl.col("event_id") + "-new").alias("event_id"), pl.lit(NEW).alias("ingest_run_id")
        )
    )
    for run_id, frame in ((OLD, history), (NEW, new)):
        con.register("_batch", frame.to_arrow())
        con.execute("INSERT INTO disclosure_events BY NAME SELECT * FROM _batch")
        con.unregister("_batch")
        con.execute(
            "INSERT INTO ingest_runs (run_id, source_file, kind, rows_read, rows_loaded, status)"
            " VALUES ($r, $r, 'events', $n, $n, 'loaded')",
            {"r": run_id, "n": frame.height},
        )
    yield con
    con.close()


def _first_of(con: duckdb.DuckDBPyConnection, run_id: str) -> int:
    row = con.execute(
        "SELECT min(rowid) FROM disclosure_events WHERE ingest_run_id = ?", [run_id]
    ).fetchone()
    assert row is not None
    return int(row[0])


def test_the_bound_is_the_first_row_of_the_new_batches(
    store: duckdb.DuckDBPyConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scope, "_ROW_GROUP", 64)
    first = _first_of(store, NEW)
    assert first > 1000
    assert scope.first_new_row(store, [NEW]) == first
    # An old batch among them lies anywhere: the bound is below its rows too.
    assert scope.first_new_row(store, [NEW, OLD]) == 0 == _first_of(store, OLD)
    assert scope.first_new_row(store, []) == 0


def test_no_bound_when_the_ledger_does_not_account_for_the_rows(
    store: duckdb.DuckDBPyConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scope, "_ROW_GROUP", 64)
    # One event of the new batch more than its ledger row says: the tail is not trusted.
    store.execute(
        "INSERT INTO disclosure_events BY NAME SELECT * REPLACE ('late-x' AS event_id)"
        " FROM disclosure_events WHERE ingest_run_id = ? LIMIT 1",
        [NEW],
    )
    store.execute("UPDATE ingest_runs SET rows_loaded = rows_loaded + 2 WHERE run_id = ?", [NEW])
    assert scope.first_new_row(store, [NEW]) == 0


def test_touched_events_above_the_bound_are_those_of_the_whole_table(
    store: duckdb.DuckDBPyConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scope, "_ROW_GROUP", 64)
    sources = [
        r[0]
        for r in store.execute(
            "SELECT DISTINCT source_system FROM disclosure_events WHERE ingest_run_id = ?", [NEW]
        ).fetchall()
    ]
    day = datetime.combine(SPLIT.date(), datetime.min.time(), tzinfo=UTC)
    windows = [(s, day - timedelta(days=2), day + timedelta(days=30)) for s in sources]
    types = ["access", "disclosure", "redisclosure", "receipt"]
    by = ["recipient_agency"]
    assert scope.first_new_row(store, [NEW]) == _first_of(store, NEW) > 0
    bounded = scope.Touched.read(store, types, windows, by, [NEW])
    monkeypatch.setattr(scope, "first_new_row", lambda con, batches: 0)
    whole = scope.Touched.read(store, types, windows, by, [NEW])
    assert len(bounded.rows) > 5
    assert bounded == whole
