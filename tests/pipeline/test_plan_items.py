"""Planning opens the windows of the events new request items belong to, reading the new
batches from their first row id and the events of the items' logs only: the same windows
as joining every item with every event (events of history, of the new batch, of another
log; items naming no log; a log name with a quote; no items at all)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from pipeline_helpers import ledger_rows, write_events

from dwatch.ingest import ingest_paths
from dwatch.store import connect
from dwatch.watermark import claim_pending

# The planning query before the reads were bounded: every item joined with every event.
_EVERY_EVENT = """
SELECT source_system, date_trunc('day', occurred_at) AS day, count(*) FROM (
    SELECT e.source_system, e.occurred_at FROM disclosure_events e
    WHERE e.ingest_run_id IN (SELECT unnest($batches::VARCHAR[]))
    UNION ALL
    SELECT e.source_system, e.occurred_at
    FROM request_items i JOIN disclosure_events e
      ON e.event_id = i.event_id AND (i.source_system IS NULL OR i.source_system = e.source_system)
    WHERE i.ingest_run_id IN (SELECT unnest($batches::VARCHAR[]))
) GROUP BY ALL ORDER BY ALL
"""


@pytest.fixture
def store(db_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    con = connect(db_path)
    yield con
    con.close()


def _items(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    """A request items CSV: (request id, event id, log or '' for none) per item."""
    lines = ["request_id,event_id,item_no,taxpayer_tin,match_method,source_system"]
    lines += [
        f"{req},{event},{n},900-70-{n:04d},tin,{log}"
        for n, (req, event, log) in enumerate(rows, start=1)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _history(con: duckdb.DuckDBPyConnection, folder: Path, quoted: str) -> None:
    """Three logs' events over February, loaded and planned (history)."""
    for n, log in enumerate(["ca-ftb-fti-log", "ny-dtf-fti-log", quoted]):
        rows = ledger_rows(log, [(f"2026-02-{d:02d}", 9 + n) for d in range(1, 11)])
        for r in rows:
            r["event_id"] = f"{n}-{r['event_id']}"
        ingest_paths(con, [write_events(folder / f"h{n}.csv", rows)])
    claim_pending(con, "run_history")


CASES = {
    # items of events in history, of two logs
    "history": [("R1", "0-CA-FTB-FTI-LOG-000003", "ca-ftb-fti-log"),
                ("R2", "1-NY-DTF-FTI-LOG-000007", "ny-dtf-fti-log")],
    # an item naming no log: its event may be in any log
    "no log": [("R3", "1-NY-DTF-FTI-LOG-000002", ""),
               ("R4", "0-CA-FTB-FTI-LOG-000009", "ca-ftb-fti-log")],
    # a log whose name holds a quote
    "quoted log": [("R5", "2-O'HARE-FTI-LOG-000005", "o'hare-fti-log")],
    # an item of an event in the new batch itself, and one of no stored event
    "new event": [("R6", "N-1", "ca-ftb-fti-log"), ("R7", "missing", "ca-ftb-fti-log")],
    "no items": [],
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_windows_of_items_equal_joining_every_event(
    store: duckdb.DuckDBPyConnection, tmp_path: Path, case: str
) -> None:
    _history(store, tmp_path, "o'hare-fti-log")
    new = ledger_rows("ca-ftb-fti-log", [("2026-03-02", 8)], start_seq=50)
    new[0]["event_id"] = "N-1"
    ingest_paths(store, [write_events(tmp_path / "new.csv", new)])
    if CASES[case]:
        ingest_paths(store, [_items(tmp_path / "items.csv", CASES[case])])
    pending = [
        r[0]
        for r in store.execute(
            "SELECT run_id FROM ingest_runs WHERE run_id NOT IN"
            " (SELECT ingest_run_id FROM run_batches) ORDER BY run_id"
        ).fetchall()
    ]
    expected = store.execute(_EVERY_EVENT, {"batches": pending}).fetchall()
    claim = claim_pending(store, "run_new")
    got = store.execute(
        "SELECT source_system, window_start, events FROM run_windows"
        " WHERE opened_by_run_id = 'run_new' ORDER BY ALL"
    ).fetchall()
    assert sorted(claim.batches) == pending
    assert got == expected
    # The items' events of history opened their days.
    assert len(got) == 1 + len({e for _, e, _ in CASES[case] if e not in ("N-1", "missing")})
