"""A refresh joins new request items with the events of the logs the items name only (an
item naming a log belongs to an event of that log), and gives the rows it gave reading
every log; an item naming no log still reads every log."""

from __future__ import annotations

import random
from pathlib import Path

import duckdb
import pytest

import dwatch.accounting.index as index_module
from dwatch.accounting.index import pending_entries
from dwatch.store import connect

LOGS = ("log-a", "log-b", "log-c", "log-d")


def _store(path: Path, seed: int, *, unnamed: bool) -> duckdb.DuckDBPyConnection:
    """Old events in four logs, ids shared between logs; a new batch of request items
    naming some of them (and, with ``unnamed``, one item naming no log)."""
    rng = random.Random(seed)
    con = connect(path)
    con.execute(
        "INSERT INTO ingest_runs (run_id, source_file, content_sha256, kind, status, rows_loaded)"
        " VALUES ('old', 'e.csv', 'x', 'events', 'loaded', 400), ('new', 'i.csv', 'y',"
        " 'request_items', 'loaded', 30)"
    )
    types = [rng.choice(["disclosure", "receipt", "access"]) for _ in range(400)]
    requests = [f"R{rng.randrange(12)}" for _ in range(400)]
    refs = [rng.choice([None, f"tp_{rng.randrange(50)}"]) for _ in range(400)]
    con.execute(
        "INSERT INTO disclosure_events (source_system, event_id, occurred_at, event_type,"
        " disclosing_agency, recipient_agency, actor_id, request_id, legal_authority,"
        " purpose, data_elements, record_count, taxpayer_ref, ingest_run_id, source_row)"
        # one log per stretch of rows, as batches lie; the same ids in every log
        " SELECT $logs[1 + n // 100], 'E' || (n % 37), TIMESTAMPTZ '2025-03-03 00:00:00+00',"
        " $types[n + 1], 'IRS', 'AG-1', 'a.1', $requests[n + 1], '26 USC 6103(d)', 'p',"
        " ['name'], 1, $refs[n + 1], 'old', n FROM range(400) t(n)",
        {"logs": list(LOGS), "types": types, "requests": requests, "refs": refs},
    )
    items = [
        (f"R{rng.randrange(12)}", f"E{rng.randrange(37)}", k, f"tp_{k}",
         rng.choice(LOGS[:2]) if not (unnamed and k == 7) else None, k)
        for k in range(30)
    ]  # fmt: skip
    con.executemany(
        "INSERT INTO request_items (request_id, event_id, item_no, taxpayer_ref,"
        " match_method, source_system, ingest_run_id, source_row)"
        " VALUES (?, ?, ?, ?, 'tin', ?, 'new', ?)",
        items,
    )
    return con


def _entries(con: duckdb.DuckDBPyConnection) -> list[tuple[object, ...]]:
    pending_entries(con, ["new"], "_entries_out")
    return con.execute("SELECT * FROM _entries_out ORDER BY ALL").fetchall()


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("unnamed", [False, True])
def test_items_join_only_the_logs_they_name_with_the_same_entries(
    tmp_path: Path, seed: int, unnamed: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    con = _store(tmp_path / "store.duckdb", seed, unnamed=unnamed)
    try:
        index_module._list_batches(con, ["new"])
        logs = index_module._item_logs(con, index_module.RowBounds())
        assert logs == (None if unnamed else ["log-a", "log-b"])
        sent: list[str] = []
        real = index_module.entries_sql

        def spy(*args: object, **kwargs: object) -> str:
            sent.append(real(*args, **kwargs))  # type: ignore[arg-type]
            return sent[-1]

        monkeypatch.setattr(index_module, "entries_sql", spy)
        narrowed = _entries(con)
        assert ("e.source_system IN ('log-a', 'log-b')" in sent[-1]) == (not unnamed)
        monkeypatch.setattr(index_module, "_item_logs", lambda *_: None)
        every_log = _entries(con)
        assert narrowed == every_log
        assert sum(r[1] == "request_item" for r in narrowed) > 0
    finally:
        con.close()
