"""The rowid bound of new batches: below every row of theirs, above history when it can be."""

from __future__ import annotations

from pathlib import Path

import duckdb

from dwatch.store import connect
from dwatch.validate.selecting import Batch, first_rows

TABLE = "disclosure_events"


def _insert(con: duckdb.DuckDBPyConnection, run_id: str, rows: int) -> Batch:
    """A loaded batch of ``rows`` events, appended to the table."""
    con.execute(
        "INSERT INTO ingest_runs (run_id, source_file, kind, rows_read, rows_loaded,"
        " rows_quarantined, status) VALUES (?, ?, 'events', ?, ?, 0, 'loaded')",
        [run_id, f"/logs/{run_id}.csv", rows, rows],
    )
    con.execute(
        f"INSERT INTO {TABLE} (event_id, source_system, sequence_no, occurred_at, event_type,"
        " disclosing_agency, recipient_agency, actor_id, data_elements, record_count,"
        " ingest_run_id) SELECT $run || '-' || i, 'log', i, TIMESTAMPTZ '2026-01-01' +"
        " to_seconds(i), 'disclosure', 'IRS', 'CA-FTB', 'u', ['name'], 1, $run"
        " FROM range($n) t(i)",
        {"run": run_id, "n": rows},
    )
    return Batch(run_id, "events", TABLE, f"/logs/{run_id}.csv", None)


def test_first_rows_skips_history_and_holds_every_new_row(tmp_path: Path) -> None:
    con = connect(tmp_path / "s.duckdb")
    history = [_insert(con, f"old-{i}", 100_000) for i in (1, 2)]
    new = [_insert(con, f"new-{i}", 3) for i in (1, 2)]
    assert first_rows(con, new) == {TABLE: 200_000}
    # With an old batch among them, the bound reaches down to it.
    [since] = first_rows(con, [history[1], *new]).values()
    assert since <= 100_000
    # Rows moved out of a new batch (quarantine) leave the bound below the rest.
    con.execute(f"DELETE FROM {TABLE} WHERE event_id = 'new-1-0'")
    con.execute("UPDATE ingest_runs SET rows_loaded = 2 WHERE run_id = 'new-1'")
    assert first_rows(con, new) == {TABLE: 200_001}


def test_first_rows_reads_everything_when_the_counts_do_not_add_up(tmp_path: Path) -> None:
    con = connect(tmp_path / "s.duckdb")
    _insert(con, "old", 200_000)
    new = _insert(con, "new", 1)
    # ingest_runs says the batch holds more rows than the table does: no bound is trusted.
    con.execute("UPDATE ingest_runs SET rows_loaded = 5 WHERE run_id = 'new'")
    assert first_rows(con, [new]) == {TABLE: 0}
