"""Watermarks read the judged batches' events from the row id their rows start at: the same
watermarks as reading every event, whichever batches are judged (the table's tail, one in
the middle, all, or a batch the validation took rows out of)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from pipeline_helpers import ledger_rows, write_events

from dwatch.ingest import ingest_paths
from dwatch.store import connect
from dwatch.watermark import advance_watermarks


@pytest.fixture
def store(db_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    con = connect(db_path)
    yield con
    con.close()


def _batches(con: duckdb.DuckDBPyConnection, folder: Path) -> list[str]:
    for n, (log, days) in enumerate([("ca-ftb-fti-log", 9), ("ny-dtf-fti-log", 6), ("ca-ftb-fti-log", 4)]):  # fmt: skip
        rows = ledger_rows(log, [(f"2026-02-{d + 2 * n + 1:02d}", 9) for d in range(days)],
                           start_seq=1 + 20 * n)  # fmt: skip
        write_events(folder / f"{n}.csv", rows)
        ingest_paths(con, [folder / f"{n}.csv"])
    return [r[0] for r in con.execute("SELECT run_id FROM ingest_runs ORDER BY run_id").fetchall()]


def _expected(con: duckdb.DuckDBPyConnection, batches: list[str]) -> list[tuple[object, ...]]:
    return con.execute(
        "SELECT source_system, max(occurred_at), count(*) FROM disclosure_events"
        " WHERE ingest_run_id IN (SELECT unnest(?::VARCHAR[])) GROUP BY ALL ORDER BY ALL",
        [batches],
    ).fetchall()


@pytest.mark.parametrize("which", ["last", "middle", "all", "quarantined"])
def test_bounded_watermarks_equal_reading_every_event(
    store: duckdb.DuckDBPyConnection, tmp_path: Path, which: str
) -> None:
    (tmp_path / "in").mkdir()
    batches = _batches(store, tmp_path / "in")
    chosen = {"last": batches[-1:], "middle": batches[1:2], "all": batches}.get(which, batches[:1])
    if which == "quarantined":  # rows moved out by validation: the ledger count follows
        store.execute(
            "DELETE FROM disclosure_events WHERE ingest_run_id = ? AND source_row < 3", [chosen[0]]
        )
        store.execute(
            "UPDATE ingest_runs SET rows_loaded = rows_loaded - 3 WHERE run_id = ?", chosen
        )
        store.execute("CHECKPOINT")
    expected = _expected(store, chosen)
    advance_watermarks(store, "run_t", chosen)
    got = store.execute(
        "SELECT source_system, events_through, events_judged FROM source_watermarks ORDER BY ALL"
    ).fetchall()
    assert got == expected and got
