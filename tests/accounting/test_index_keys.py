"""The narrow accounting index (migration 0043): events found by their stable key, read back
by row id and checked. Rows DuckDB renumbered (a checkpoint compacting row groups emptied by
deletes) still give the right answers, a snapshot (no row ids) answers alike, and a store
with the old wide index upgrades to the narrow one."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from accounting_seed import TIN_A, TIN_B, TIN_C, TIN_NONE, load

import dwatch.store
from dwatch.accounting import readback
from dwatch.accounting.index import refresh_index, sql_lookup_key
from dwatch.accounting.lookup import (
    build_accounting,
    subjects_from_identifiers,
    subjects_from_pseudonyms,
)
from dwatch.accounting.write import write_json
from dwatch.pseudonym import resolve_key
from dwatch.snapshot import publish_snapshot
from dwatch.store import connect, transaction

ROWS = 400_000  # a few row groups
PEOPLE = 5_000  # taxpayer i % PEOPLE names event i


def _fill(con: duckdb.DuckDBPyConnection) -> None:
    """One batch of ROWS events: most name a taxpayer; every 1000th from 500 is a bulk
    disclosure naming nobody under its own request (items name two taxpayers each), and ten
    rows later a receipt of that request (a chain event). Bulk and chain rows and the sampled
    taxpayers' rows all have source_row % 10 == 0."""
    con.execute(
        "INSERT INTO ingest_runs (run_id, source_file, content_sha256, kind, status, rows_loaded)"
        " VALUES ('b1', 'events.csv', 'x', 'events', 'loaded', ?),"
        " ('b2', 'items.csv', 'y', 'request_items', 'loaded', ?)",
        [ROWS, 2 * ROWS // 1000],
    )
    con.execute(
        f"""
        INSERT INTO disclosure_events (source_system, event_id, occurred_at, event_type,
            disclosing_agency, recipient_agency, actor_id, request_id, legal_authority,
            purpose, data_elements, record_count, taxpayer_ref, ingest_run_id, source_row)
        SELECT 'log-a', 'E' || i, TIMESTAMPTZ '2025-03-03 00:00:00+00' + to_seconds(i),
               CASE i % 1000 WHEN 500 THEN 'disclosure' WHEN 510 THEN 'receipt'
                             ELSE 'access' END,
               'IRS', 'AG-' || (i % 7), 'a.1',
               CASE i % 1000 WHEN 500 THEN 'R' || i WHEN 510 THEN 'R' || (i - 10) END,
               '26 USC 6103(d)', 'p' || (i % 3), ['name'], 1 + i % 9,
               CASE WHEN i % 1000 NOT IN (500, 510) THEN 'tp_' || md5((i % {PEOPLE})::VARCHAR) END,
               'b1', i
        FROM range({ROWS}) t(i)
        """
    )
    con.execute(
        f"""
        INSERT INTO request_items (request_id, event_id, item_no, taxpayer_ref, match_method,
            source_system, ingest_run_id, source_row)
        SELECT 'R' || i, 'E' || i, n, 'tp_' || md5(((i + n * 20) % {PEOPLE})::VARCHAR), 'tin',
               'log-a', 'b2', i // 1000 * 2 + n
        FROM range(500, {ROWS}, 1000) t(i), range(1, 3) u(n)
        """
    )
    con.execute("CHECKPOINT")


def _sample() -> list[str]:
    # taxpayers whose every event has source_row % 10 == 0 (i % PEOPLE a multiple of 10);
    # items name 520, 540, 1520, 1540 ... (i + 20 n, i = 500 + 1000 k)
    return [f"tp_{_md5(str(p))}" for p in [*range(0, PEOPLE, 370), 520, 1540, 4520]]


def _md5(text: str) -> str:
    import hashlib

    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def _answers(con: duckdb.DuckDBPyConnection):
    built = build_accounting(con, subjects_from_pseudonyms(_sample()))
    return built.rows, built.read


@pytest.fixture
def big(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    store = connect(tmp_path / "store.duckdb")
    _fill(store)
    yield store
    store.close()


@pytest.mark.parametrize("one_scan_share", [0.0, 2.0], ids=["one-scan", "rowid-ranges"])
def test_moved_rows_are_found_again_by_their_stable_key(
    big: duckdb.DuckDBPyConnection, monkeypatch: pytest.MonkeyPatch, one_scan_share: float
) -> None:
    monkeypatch.setattr(readback, "ONE_SCAN_SHARE", one_scan_share)
    direct, _ = _answers(big)  # nothing indexed: the batches read from the canonical tables
    with transaction(big):
        refresh_index(big)
    before, read = _answers(big)
    assert before == direct
    assert {r[16] for r in before} == {"event", "request_item", "request_chain"}
    assert read is not None and read.by_rowid == read.events > 0 and read.by_key == 0

    # 90% of every row group deleted (none of the sampled taxpayers' rows), then a checkpoint
    # moves the rows left down into fewer row groups: the index's row-id hints are stale
    big.execute("DELETE FROM disclosure_events WHERE source_row % 10 <> 0")
    big.execute("CHECKPOINT")
    hinted = big.execute(
        "SELECT k.event_rowid, k.source_row FROM accounting_keys k"
        " WHERE k.source_row = 39990 AND k.via = 'event'"
    ).fetchone()
    now = big.execute(
        "SELECT source_row FROM disclosure_events WHERE rowid = ?", [hinted[0]]
    ).fetchall()
    assert now != [(hinted[1],)]  # another event lies at the hint now

    after, read = _answers(big)
    assert after == before
    assert read is not None and read.by_key > 0 and read.by_rowid + read.by_key == read.events

    # the next refresh sees the last row moved and writes the hints anew
    with transaction(big):
        refreshed = refresh_index(big)
    assert refreshed.rehinted and refreshed.batches == 2
    again, read = _answers(big)
    assert again == before
    assert read is not None and read.by_rowid == read.events and read.by_key == 0
    with transaction(big):
        assert not refresh_index(big).rehinted  # nothing moved since


@pytest.mark.parametrize("batch_scans", [64, 0], ids=["scan-per-batch", "join"])
def test_a_snapshot_without_row_ids_answers_alike(
    loaded: duckdb.DuckDBPyConnection,
    db_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    batch_scans: int,
) -> None:
    monkeypatch.setattr(readback, "MAX_BATCH_SCANS", batch_scans)
    with transaction(loaded):
        refresh_index(loaded)
    subjects = subjects_from_identifiers([TIN_A, TIN_B, TIN_C, TIN_NONE], resolve_key())
    in_store = build_accounting(loaded, subjects)
    view = "SELECT * EXCLUDE (lookup_key) FROM accounting_index ORDER BY ALL"
    rows = loaded.execute(view).fetchall()
    run_id = "run_20260101T000000_a"
    loaded.execute(
        "INSERT INTO runs (run_id, trigger, status, started_at)"
        " VALUES (?, 'test', 'succeeded', now())",
        [run_id],
    )
    published = publish_snapshot(loaded, db_path, tmp_path / "snaps", run_id)
    snap = duckdb.connect(str(published.path), read_only=True)
    try:
        in_snapshot = build_accounting(snap, subjects)
        assert snap.execute(view).fetchall() == rows != []  # the old columns, as a view
    finally:
        snap.close()
    assert in_snapshot.rows == in_store.rows != []
    assert in_snapshot.read is not None and in_snapshot.read.by_rowid == 0
    assert in_snapshot.read.by_key == in_snapshot.read.events > 0
    in_snapshot.generated_at = in_store.generated_at
    assert write_json(in_snapshot) == write_json(in_store)


OLD_COLUMNS = (
    "lookup_key",
    "via",
    "taxpayer_ref",
    "source_system",
    "event_id",
    "request_id",
    "item_no",
    "occurred_at",
    "event_type",
    "disclosing_agency",
    "recipient_agency",
    "legal_authority",
    "authority_id",
    "purpose",
    "data_elements",
    "record_count",
    "match_method",
    "ingest_run_id",
    "item_run_id",
)


def test_a_store_with_the_wide_index_upgrades(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    discover = dwatch.store.discover_migrations
    every = discover()
    monkeypatch.setattr(
        dwatch.store, "discover_migrations", lambda: [m for m in every if m.version < 43]
    )
    path = tmp_path / "old.duckdb"
    old = connect(path)
    load(old, tmp_path / "logs", "ledger", "receipts", "items")
    # the wide index as migration 0024 laid it out, holding every batch (event rows suffice)
    old.execute(
        f"INSERT INTO accounting_index BY NAME SELECT {sql_lookup_key('taxpayer_ref')}"
        " AS lookup_key, 'event' AS via, * EXCLUDE (lookup_key, via) FROM (SELECT taxpayer_ref,"
        " source_system, event_id, request_id, occurred_at, event_type, disclosing_agency,"
        " recipient_agency, legal_authority, authority_id, purpose, data_elements, record_count,"
        " ingest_run_id, NULL AS lookup_key, NULL AS via FROM disclosure_events"
        " WHERE taxpayer_ref IS NOT NULL)"
    )
    old.execute(
        "INSERT INTO accounting_index_runs SELECT run_id, now(), 0 FROM ingest_runs"
        " WHERE status = 'loaded'"
    )
    old.execute(
        "INSERT INTO accounting_index_state (sorted_entries, unattributed_disclosures,"
        " unattributed_records) VALUES (1, 1, 5000)"  # the seed's one bulk disclosure
    )
    old.close()
    monkeypatch.setattr(dwatch.store, "discover_migrations", discover)

    con = connect(path)  # migration 0043 applies
    try:
        assert [r[0] for r in con.execute("DESCRIBE accounting_index").fetchall()] == list(
            OLD_COLUMNS
        )
        assert con.execute("SELECT count(*) FROM accounting_index_runs").fetchone() == (0,)
        subjects = subjects_from_identifiers([TIN_A, TIN_B, TIN_C, TIN_NONE], resolve_key())
        direct = build_accounting(con, subjects)  # every batch read from the events
        assert direct.unindexed_batches == 3
        with transaction(con):
            refreshed = refresh_index(con)  # rebuilt once, narrow
        assert refreshed.batches == 3 and refreshed.entries > 0
        counted = (
            "SELECT unattributed_disclosures, unattributed_records FROM accounting_index_state"
        )
        assert con.execute(counted).fetchone() == (1, 5000)  # counted once, not added again
        indexed = build_accounting(con, subjects)
        assert indexed.unindexed_batches == 0
        assert indexed.rows == direct.rows != []
        assert {r[16] for r in indexed.rows} == {"event", "request_item", "request_chain"}
    finally:
        con.close()
