"""The accounting index built in pieces, rewritten by key range and read by rowid bounds
holds exactly the rows of the one statement it replaced, and answers alike (randomised)."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import duckdb
import pytest
from accounting_seed import LEDGER, RECEIPTS, _event, write_csv

from dwatch.accounting import bounds as bounds_module
from dwatch.accounting import index as index_module
from dwatch.accounting.bounds import RowBounds, first_rowids
from dwatch.accounting.index import COLUMNS, pending_entries, refresh_index, rewrite_in_key_order
from dwatch.accounting.lookup import build_accounting, subjects_from_identifiers
from dwatch.ingest import ingest_paths
from dwatch.pseudonym import resolve_key
from dwatch.store import transaction

TINS = [f"666-01-{n:04d}" for n in range(1, 13)]
KINDS = ("request", "disclosure", "receipt", "access", "redisclosure", "disposal")


def _load_random(
    con: duckdb.DuckDBPyConnection,
    folder: Path,
    rng: random.Random,
    n: int,
    carried: list[tuple[str, str, str]] | None = None,
) -> None:
    """``n`` batches: events naming a taxpayer or none (bulk, under a request), and request
    items naming taxpayers for events of this batch or an earlier one (of an earlier call
    too, when the caller passes the same ``carried``: (request_id, event_id, source) of
    bulk events not yet itemised)."""
    folder.mkdir(parents=True, exist_ok=True)
    carried = [] if carried is None else carried
    seq = 0
    for b in range(n):
        source = rng.choice((LEDGER, RECEIPTS))
        rows = []
        for _ in range(rng.randint(3, 25)):
            seq += 1
            request = f"REQ-{rng.randint(1, 6)}" if rng.random() < 0.7 else ""
            named = rng.random() < 0.6
            rows.append(
                _event(
                    seq,
                    source,
                    f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T10:00:00Z",
                    rng.choice(KINDS),
                    request_id=request,
                    taxpayer_tin=rng.choice(TINS) if named else "",
                    record_count=rng.randint(1, 50),
                    event_id=f"EV-{folder.name}-{seq}",  # unique across calls: none dropped
                    legal_authority=rng.choice(("26 USC 6103(i)(2)", "26 USC 6103(d)", "")),
                )
            )
            if request and not named:
                carried.append((request, f"EV-{folder.name}-{seq}", source))
        files = [write_csv(folder / f"events-{b}.csv", rows)]
        if carried and rng.random() < 0.5:
            items = []
            for request, event, src in rng.sample(carried, min(len(carried), 4)):
                for item_no in range(1, rng.randint(2, 4)):
                    items.append(
                        {
                            "request_id": request,
                            "event_id": event,
                            "item_no": item_no,
                            "taxpayer_tin": rng.choice(TINS),
                            "source_system": src,
                        }
                    )
                carried.remove((request, event, src))
            files.append(write_csv(folder / f"request_items-{b}.csv", items))
        results = ingest_paths(con, files)
        assert {r.status for r in results} == {"loaded"}, [r.message for r in results]


def _rows(con: duckdb.DuckDBPyConnection, table: str) -> list[tuple]:
    return sorted(con.execute(f"SELECT {', '.join(COLUMNS)} FROM {table}").fetchall(), key=repr)


def _answers(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    return build_accounting(
        con, subjects_from_identifiers([*TINS, "666-01-0999"], resolve_key())
    ).rows


def _empty_index(con: duckdb.DuckDBPyConnection) -> None:
    for table in ("accounting_keys", "accounting_index_runs", "accounting_index_state"):
        con.execute(f"DELETE FROM {table}")


def _descents(con: duckdb.DuckDBPyConnection) -> int:
    keys = [r[0] for r in con.execute("SELECT lookup_key FROM accounting_keys").fetchall()]
    return sum(a > b for a, b in itertools.pairwise(keys))


@pytest.mark.parametrize("seed", range(4))
def test_pieces_hold_the_rows_of_one_statement_and_answer_alike(con, tmp_path, monkeypatch, seed):
    _load_random(con, tmp_path, random.Random(seed), 8)
    direct = _answers(con)  # nothing indexed: every batch read from the canonical tables
    batches = index_module.unindexed_batches(con)
    with transaction(con):
        # the statement the first build ran before: every batch at once, no rowid bound
        pending_entries(con, batches, "_acct_one", RowBounds())
        one = _rows(con, "_acct_one")
    monkeypatch.setattr(index_module, "piece_rows", lambda: 7)
    with transaction(con):
        refreshed = refresh_index(con)
    events = con.execute("SELECT count(*) FROM disclosure_events").fetchone()[0]
    assert refreshed.entries == len(one) > 0
    assert _rows(con, "accounting_keys") == one
    # each piece is sorted: order breaks only between pieces (events' pieces, then the items')
    assert _descents(con) <= -(-events // 7)
    assert _answers(con) == direct != []

    monkeypatch.setattr(index_module, "piece_rows", lambda: 5)
    with transaction(con):
        rewrite_in_key_order(con, len(one))
    assert _rows(con, "accounting_keys") == one
    assert _descents(con) == 0
    assert _answers(con) == direct


@pytest.mark.parametrize("seed", range(3))
def test_refreshed_batch_by_batch_with_rewrites_equals_a_first_build(
    con, tmp_path, monkeypatch, seed
):
    rng = random.Random(100 + seed)
    monkeypatch.setattr(index_module, "piece_rows", lambda: 6)
    monkeypatch.setattr(index_module, "COMPACT_MIN_TAIL", 10)
    compacted, carried = False, []
    for n in range(6):
        # items may name events of an earlier refresh: older bulk disclosures get claimed
        _load_random(con, tmp_path / str(n), rng, 2, carried)
        with transaction(con):
            compacted |= refresh_index(con).compacted
    assert compacted  # the rewrite in key ranges ran at least once
    kept, answers = _rows(con, "accounting_keys"), _answers(con)
    counted = "SELECT unattributed_disclosures, unattributed_records FROM accounting_index_state"
    unattributed = con.execute(counted).fetchone()
    _empty_index(con)
    with transaction(con):
        refresh_index(con)
    assert _rows(con, "accounting_keys") == kept
    assert _answers(con) == answers != []
    # bulk disclosures counted as the batches came (items claiming older ones) = counted at once
    assert con.execute(counted).fetchone() == unattributed


def test_rowid_bounds_read_the_same_rows_as_batch_ids(con, tmp_path, monkeypatch):
    # the tail read first is a row group (122,880 rows) or more: a few rows here
    monkeypatch.setattr(bounds_module, "ROW_GROUP", 4)
    rng = random.Random(7)
    for n in range(3):
        _load_random(con, tmp_path / str(n), rng, 4)
    with transaction(con):
        refresh_index(con)
    _load_random(con, tmp_path / "new", rng, 3)
    new = index_module.unindexed_batches(con)

    def read(bounds: RowBounds) -> list[tuple]:
        with transaction(con):
            pending_entries(con, new, "_acct_read", bounds)
            return _rows(con, "_acct_read")

    bounds = first_rowids(con, new)
    assert bounds.events > 0  # history's row groups are skipped
    unbounded = read(RowBounds())
    assert read(bounds) == unbounded != []
    # a bound above the batches' rows would lose them: the comparison can tell
    last = con.execute("SELECT max(rowid) FROM disclosure_events").fetchone()[0]
    assert read(RowBounds(events=last + 1)) != unbounded

    # validation moved the new batches' first rows out and took them off the ledger's count
    first = con.execute(
        "SELECT rowid, ingest_run_id FROM disclosure_events WHERE rowid = ?", [bounds.events]
    ).fetchone()
    con.execute("DELETE FROM disclosure_events WHERE rowid = ?", [first[0]])
    con.execute("UPDATE ingest_runs SET rows_loaded = rows_loaded - 1 WHERE run_id = ?", [first[1]])
    after = first_rowids(con, new)
    assert read(after) == read(RowBounds()) != unbounded
    # an old batch listed again lies anywhere: the bound widens to hold it
    old = con.execute(
        "SELECT ingest_run_id FROM disclosure_events ORDER BY rowid LIMIT 1"
    ).fetchone()[0]
    assert first_rowids(con, [old, *new]).events == 0
    # a batch without a count in the ledger is read whole
    con.execute(
        "UPDATE ingest_runs SET rows_loaded = NULL WHERE run_id = ? AND kind = 'events'",
        [first[1]],
    )
    assert first_rowids(con, new).events == 0
