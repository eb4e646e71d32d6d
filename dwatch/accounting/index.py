"""The accounting side table: where each taxpayer is named, found by an integer key.

A taxpayer's data appears in three ways, and each is one kind of row (``via``):

- ``event``: an event whose ``taxpayer_ref`` is the taxpayer (a single-subject request,
  disclosure, access ...);
- ``request_item``: a request item naming the taxpayer, with the request or bulk disclosure
  event that carried it;
- ``request_chain``: an event naming no taxpayer (a bulk receipt, disposal or use) of a
  request that carries items; it concerns every taxpayer disclosed under that request, so
  it is keyed by the request, not by a taxpayer.

The table (``accounting_keys``, migration 0043) is narrow: per row the key, ``via``, the
event by its stable key (``ingest_run_id``, ``source_row``) with its row id as a hint, and
a request item's own fields; a lookup reads the event's fields back
(``dwatch.accounting.readback``). Copying the events' 12 fields into every row made the
first build the largest single cost of a full run (38.5 CPU-s at 10M events).

Rows are found by ``lookup_key``, the first 60 bits of md5 of the pseudonym (or request id):
an integer min/max check per row group, where a 35-character string compare per row cost
1.4-2.5 s at 5M events. A first build inserts the rows in pieces of at most
``piece_rows()`` (what DuckDB's memory share sorts without spilling much), each sorted by
the key; each refresh appends its rows sorted by the key; when the unsorted tail passes
half the sorted part the table is rewritten in key order, one key range at a time
(amortised, each row is rewritten a bounded number of times; spill and memory bounded by
the budget, not by the store). A lookup's min/max filter reads a row group or two of each
sorted part. New rows are read by rowid bound (``bounds.first_rowids``), not batch id.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import duckdb

from dwatch.accounting.bounds import ROW_GROUP, RowBounds, first_rowids
from dwatch.accounting.readback import capture_hints, hints_hold
from dwatch.snapshot_parts import note_rewrite

TABLE = "accounting_keys"
# Columns of accounting_keys (migration 0043) in the order entries_sql selects them.
COLUMNS = (
    "lookup_key",
    "via",
    "ingest_run_id",
    "source_row",
    "event_rowid",
    "request_id",
    "taxpayer_ref",
    "item_no",
    "match_method",
    "item_run_id",
)
# What tells one entry from another (the event by its stable key; ingest keeps
# (source_system, event_id) unique too, so this is the old index's identity).
IDENTITY = ("via", "ingest_run_id", "source_row", "item_no", "taxpayer_ref", "request_id")
# The unsorted tail is rewritten into key order once it is this large and half the sorted part.
COMPACT_MIN_TAIL = 100_000
# What one entry costs in a sort (bytes, measured on generated logs with headroom): a first
# build and a rewrite sort pieces of at most DuckDB's memory share / this many rows.
ENTRY_SORT_BYTES = 400


def lookup_key(text: str) -> int:
    """The integer a pseudonym or request id is found by (same as ``sql_lookup_key``)."""
    return int(hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()[:15], 16)


def sql_lookup_key(expr: str) -> str:
    """``lookup_key`` in SQL: the digest's first 8 bytes as a big-endian integer, shifted
    right 4 bits (its first 15 hex digits).

    ``md5_number`` gives the digest as a little-endian 128-bit integer, so its low 64 bits
    hold the first 8 bytes in reverse; they are turned round byte by byte. The same integer
    as ``CAST('0x' || substr(md5(x), 1, 15) AS BIGINT)`` without the hex text: 10M events'
    keys 3.6 -> 2.0 CPU-s (DuckDB computes the repeated ``md5_number`` once)."""
    low = f"CAST(md5_number({expr}) & {(1 << 64) - 1} AS UBIGINT)"
    turned = [f"((({low} >> {8 * i}) & 255) << {52 - 8 * i})" for i in range(7)]
    return f"CAST({' | '.join([*turned, f'({low} >> 60)'])} AS BIGINT)"


def _event_key(alias: str) -> str:
    """The event's stable key and its row id now (the hint a lookup checks)."""
    return f"{alias}.ingest_run_id, {alias}.source_row, {alias}.rowid"


def _item_join(items: str, events: str) -> str:
    return (
        f"{items} i JOIN {events} e ON e.request_id = i.request_id AND e.event_id = i.event_id"
        " AND (i.source_system IS NULL OR i.source_system = e.source_system)"
        " WHERE i.taxpayer_ref IS NOT NULL"
    )


def entries_sql(
    runs_table: str,
    *,
    with_items: bool = True,
    since: RowBounds | None = None,
    part: str = "all",
    events_below: int | None = None,
    item_logs: list[str] | None = None,
) -> str:
    """SELECT of every accounting row that involves an event or item of the batches listed
    in ``runs_table`` (column run_id); may repeat rows already indexed for older batches.
    ``with_items=False`` when the batches hold no request items (most daily batches): the
    two branches reading old events for new items are left out, not run empty.

    ``since``: per table, a rowid no row of the batches lies below (``first_rowids``), so
    their reads skip the row groups of history. ``part`` "named" gives only the rows of
    events naming a taxpayer, "linked" only the item and chain rows; ``events_below`` bounds
    the events read from above (a first build reads them in rowid ranges).

    ``item_logs``: every log the batches' request items (those naming a taxpayer) name,
    when each names one (``_item_logs``): an item naming a log joins only events of that
    log, so the events joined with them are read in those logs alone, constants DuckDB's
    zone maps compare (a store holds each batch's rows together, one log per batch), not
    every event's keys (100M, 1% run: 2.3 CPU-s with the chain rows below)."""
    bounds = since or RowBounds()
    events_where = f"rowid >= {int(bounds.events)}"
    if events_below is not None:
        events_where += f" AND rowid < {int(events_below)}"
    item_row = (
        f"SELECT {sql_lookup_key('i.taxpayer_ref')}, 'request_item', {_event_key('e')},"
        " i.request_id, i.taxpayer_ref, i.item_no, i.match_method, i.ingest_run_id"
    )
    chain_row = (
        f"SELECT {sql_lookup_key('e.request_id')}, 'request_chain', {_event_key('e')},"
        " e.request_id, NULL, NULL, NULL, NULL"
    )
    in_logs = ""
    if item_logs is not None:
        listed = ", ".join(_literal(log) for log in item_logs)
        in_logs = f" AND e.source_system IN ({listed})" if listed else " AND false"
    for_new_items = f"""
            UNION ALL {item_row} FROM {_item_join("new_items", "disclosure_events")}{in_logs}
            UNION ALL {chain_row} FROM disclosure_events e
                WHERE e.taxpayer_ref IS NULL
                  AND e.request_id IN (SELECT DISTINCT request_id FROM new_items)
    """
    named = "SELECT * FROM named  -- one row per new event: never repeated"
    linked = f"""
        -- an item and its event both new, or a chain event reached both ways: listed once
        SELECT DISTINCT ON ({", ".join(IDENTITY)}) *
        FROM linked"""
    body = {"all": f"{named}\n        UNION ALL {linked}", "named": named, "linked": linked}[part]
    # NOT MATERIALIZED: each use is a filtered scan, not a copy of the batches' rows.
    return f"""
        WITH new_events AS NOT MATERIALIZED (
            SELECT rowid, * FROM disclosure_events
            WHERE {events_where} AND ingest_run_id IN (SELECT run_id FROM {runs_table})
        ), new_items AS NOT MATERIALIZED (
            SELECT * FROM request_items
            WHERE rowid >= {int(bounds.items)}
              AND ingest_run_id IN (SELECT run_id FROM {runs_table})
        ), named({", ".join(COLUMNS)}) AS (
            SELECT {sql_lookup_key("e.taxpayer_ref")}, 'event', {_event_key("e")},
                   NULL, NULL, NULL, NULL, NULL
            FROM new_events e WHERE e.taxpayer_ref IS NOT NULL
        ), linked({", ".join(COLUMNS)}) AS (
            {item_row} FROM {_item_join("request_items", "new_events")}
            UNION ALL {chain_row} FROM new_events e
                WHERE e.taxpayer_ref IS NULL
                  AND e.request_id IN (SELECT DISTINCT request_id FROM request_items)
            {for_new_items if with_items else ""}
        )
        {body}
    """


@dataclass(frozen=True)
class IndexRefresh:
    batches: int
    entries: int
    reindexed_batches: int
    compacted: bool
    seconds: float
    rehinted: bool = False  # rows had moved: the index was written anew with fresh row ids

    def describe(self) -> str:
        if not self.batches:
            return "accounting index: up to date"
        return (
            f"accounting index: {self.entries:,} entries from {self.batches} batch(es)"
            + (
                f" ({self.reindexed_batches} re-read after validation)"
                if self.reindexed_batches
                else ""
            )
            + (" (written anew: a checkpoint had moved rows)" if self.rehinted else "")
            + (", rewritten in key order" if self.compacted else "")
            + f" in {self.seconds:.2f}s"
        )


def index_present(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the store has the side table (a snapshot older than migration 0043 has not:
    its batches are read from the canonical tables, as unindexed ones are)."""
    try:
        con.execute(f"SELECT 1 FROM {TABLE} LIMIT 0")
    except duckdb.CatalogException:
        return False
    return True


def unindexed_batches(con: duckdb.DuckDBPyConnection, *, present: bool = True) -> list[str]:
    """Loaded batches the side table does not hold yet (all of them before migration 0043)."""
    if not present:
        sql = "SELECT run_id FROM ingest_runs WHERE status = 'loaded' ORDER BY run_id"
    else:
        sql = (
            "SELECT run_id FROM ingest_runs WHERE status = 'loaded' AND run_id NOT IN"
            " (SELECT ingest_run_id FROM accounting_index_runs) ORDER BY run_id"
        )
    return [r[0] for r in con.execute(sql).fetchall()]


def _stale_batches(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Indexed batches that validation moved rows out of since they were indexed."""
    return [
        r[0]
        for r in con.execute(
            """
            SELECT DISTINCT r.ingest_run_id FROM accounting_index_runs r
            JOIN quarantine q ON q.ingest_run_id = r.ingest_run_id
            WHERE q.stage = 'validate' AND q.quarantined_at > r.indexed_at
            """
        ).fetchall()
    ]


def _batches_have_items(con: duckdb.DuckDBPyConnection) -> bool:
    row = con.execute(
        "SELECT count(*) FROM (SELECT 1 FROM request_items"
        " WHERE ingest_run_id IN (SELECT run_id FROM _acct_batches) LIMIT 1)"
    ).fetchone()
    return bool(row and row[0])


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _item_logs(con: duckdb.DuckDBPyConnection, bounds: RowBounds) -> list[str] | None:
    """The logs the listed batches' request items naming a taxpayer name; None when one
    names no log (its event may be in any log)."""
    rows = con.execute(
        f"SELECT DISTINCT source_system FROM request_items WHERE rowid >= {int(bounds.items)}"
        " AND ingest_run_id IN (SELECT run_id FROM _acct_batches) AND taxpayer_ref IS NOT NULL"
    ).fetchall()
    logs = [r[0] for r in rows]
    return None if None in logs else sorted(logs)


def _list_batches(con: duckdb.DuckDBPyConnection, batches: list[str]) -> None:
    con.execute("CREATE OR REPLACE TEMP TABLE _acct_batches (run_id VARCHAR)")
    con.execute("INSERT INTO _acct_batches SELECT unnest(?::VARCHAR[])", [batches])


def pending_entries(
    con: duckdb.DuckDBPyConnection,
    batches: list[str],
    table: str,
    since: RowBounds | None = None,
) -> int:
    """Write the accounting rows of ``batches`` into the temporary ``table``; returns rows.
    Their reads are bounded by rowid (``since``, else ``first_rowids`` of the batches)."""
    _list_batches(con, batches)
    bounds = since if since is not None else first_rowids(con, batches)
    with_items = _batches_have_items(con)
    sql = entries_sql(
        "_acct_batches",
        with_items=with_items,
        since=bounds,
        item_logs=_item_logs(con, bounds) if with_items else None,
    )
    con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS {sql}")
    row = con.execute(f"SELECT count(*) FROM {table}").fetchone()
    return int(row[0]) if row else 0


def _append_new(con: duckdb.DuckDBPyConnection) -> int:
    """Append the rows in _acct_new that the index does not hold, in key order."""
    linked = con.execute("SELECT count(*) FROM _acct_new WHERE via <> 'event'").fetchone()
    # Item and chain rows of older requests may be indexed already; event rows never are.
    fresh = (
        f"""
        SELECT n.* FROM _acct_new n WHERE n.via <> 'event' AND NOT EXISTS (
            SELECT 1 FROM {TABLE} a
            WHERE a.via <> 'event'
              AND a.request_id IN (SELECT DISTINCT request_id FROM _acct_new WHERE via <> 'event')
              AND a.via = n.via AND a.ingest_run_id = n.ingest_run_id
              AND a.source_row IS NOT DISTINCT FROM n.source_row
              AND a.item_no IS NOT DISTINCT FROM n.item_no
              AND a.taxpayer_ref IS NOT DISTINCT FROM n.taxpayer_ref
              AND a.request_id IS NOT DISTINCT FROM n.request_id)
        """
        if linked and linked[0]
        else "SELECT * FROM _acct_new WHERE false"
    )
    row = con.execute(
        f"""
        INSERT INTO {TABLE} BY NAME
        SELECT * FROM (SELECT * FROM _acct_new WHERE via = 'event' UNION ALL {fresh})
        ORDER BY lookup_key
        """
    ).fetchone()
    return int(row[0]) if row else 0


def piece_rows() -> int:
    """Rows sorted at once by a first build or a rewrite: what DuckDB's share of the memory
    budget holds, in whole row groups (spill and memory bounded whatever the store holds)."""
    from dwatch.memory import memory_budget

    rows = memory_budget().duckdb_bytes // ENTRY_SORT_BYTES
    return max(1, rows // ROW_GROUP) * ROW_GROUP


def _first_build(con: duckdb.DuckDBPyConnection, batches: list[str]) -> int:
    """An empty index: the events' rows in pieces of ``piece_rows()`` rowids, each inserted
    sorted by key, then the item and chain rows (a few per request carrying items) sorted.

    One sort of every row spilled 25 GB at 100M events; pieces bound the spill and memory,
    and a lookup reads one row group or two per piece (``_compact_if_due`` merges the
    pieces in key order once the appended tail grows). Nothing is indexed yet, so no row can
    repeat one already there: rows skip the temporary table and the check against the index
    that a later refresh needs. Each event lies in one piece and ``named`` rows are one per
    event, so the pieces hold exactly the rows of one statement over all batches."""
    _list_batches(con, batches)
    with_items = _batches_have_items(con)
    row = con.execute("SELECT coalesce(max(rowid) + 1, 0) FROM disclosure_events").fetchone()
    end, step, entries = (int(row[0]) if row else 0), piece_rows(), 0
    if end <= step:  # one piece: one statement, as before (the events are read once)
        return _insert_sorted(con, entries_sql("_acct_batches", with_items=with_items))
    for low in range(0, end, step):
        sql = entries_sql(
            "_acct_batches",
            with_items=with_items,
            since=RowBounds(events=low),
            part="named",
            events_below=low + step,
        )
        entries += _insert_sorted(con, sql)
    return entries + _insert_sorted(
        con, entries_sql("_acct_batches", with_items=with_items, part="linked")
    )


def _insert_sorted(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    row = con.execute(
        f"INSERT INTO {TABLE} BY NAME SELECT * FROM ({sql}) ORDER BY lookup_key"
    ).fetchone()
    return int(row[0]) if row else 0


def _record_batches(con: duckdb.DuckDBPyConnection, rows: str) -> None:
    """One ``accounting_index_runs`` row per listed batch: the rows of ``rows`` it added as
    events' batch, plus those it added as items' batch (two equality joins: an OR join
    compared every batch with every row)."""
    con.execute(
        f"""
        INSERT INTO accounting_index_runs
        SELECT b.run_id, now(), coalesce(e.n, 0) + coalesce(i.n, 0) FROM _acct_batches b
        LEFT JOIN (SELECT ingest_run_id AS run_id, count(via) AS n FROM {rows} GROUP BY ALL) e
            USING (run_id)
        LEFT JOIN (SELECT item_run_id AS run_id, count(via) AS n FROM {rows}
                   WHERE item_run_id <> ingest_run_id GROUP BY ALL) i USING (run_id)
        """
    )


def _compact_if_due(con: duckdb.DuckDBPyConnection) -> bool:
    row = con.execute(
        f"SELECT (SELECT count(*) FROM {TABLE}),"
        " (SELECT max(sorted_entries) FROM accounting_index_state)"
    ).fetchone()
    total, sorted_entries = (int(row[0]), int(row[1] or 0)) if row else (0, 0)
    tail = total - sorted_entries
    if tail < max(COMPACT_MIN_TAIL, sorted_entries // 2):
        return False
    rewrite_in_key_order(con, total)
    con.execute(
        "UPDATE accounting_index_state SET sorted_entries = ?, compacted_at = now()", [total]
    )
    return True


def rewrite_in_key_order(con: duckdb.DuckDBPyConnection, total: int) -> None:
    """Rewrite the table in key order, one key range of about ``piece_rows()`` rows at a time.

    Keys are md5 bits, spread evenly, so equal ranges of the key hold about equal rows. The
    table's parts are each sorted (the sorted start, each refresh's rows), so each range's
    read skips most row groups; every row is read once and sorted with at most a piece's
    rows (one sort of the whole table spilled its whole size). The rows appended here lie
    past ``last``; the old ones are deleted at the end."""
    row = con.execute(f"SELECT max(rowid) FROM {TABLE}").fetchone()
    if not row or row[0] is None:
        return
    last, pieces = int(row[0]), max(1, -(-total // piece_rows()))
    width = -(-(1 << 60) // pieces)
    for k in range(pieces):
        low = f"AND lookup_key >= {k * width}" if k else ""
        high = f"AND lookup_key < {(k + 1) * width}" if k < pieces - 1 else ""
        con.execute(
            f"INSERT INTO {TABLE} BY NAME SELECT * FROM {TABLE}"
            f" WHERE rowid <= {last} {low} {high} ORDER BY lookup_key"
        )
    con.execute(f"DELETE FROM {TABLE} WHERE rowid <= {last}")
    note_rewrite(con, TABLE)  # rows added again in another order: a publish reads them


_UNATTRIBUTED = """
    e.event_type IN ('disclosure', 'redisclosure') AND e.taxpayer_ref IS NULL
    AND NOT EXISTS (SELECT 1 FROM request_items i
                    WHERE i.request_id = e.request_id AND i.event_id = e.event_id)
"""


def _count_unattributed(
    con: duckdb.DuckDBPyConnection, *, full: bool, new_items: bool = True, events_from: int = 0
) -> None:
    """Bulk disclosures that name nobody: the accounting must say it cannot see into them.

    After the first count only the new batches are read: their unattributed disclosures
    are added, and older disclosures that their request items now attribute are taken off."""
    if full:
        row = con.execute(
            "SELECT count(*), coalesce(sum(e.record_count), 0) FROM disclosure_events e"
            f" WHERE {_UNATTRIBUTED}"
        ).fetchone()
        assignment = "unattributed_disclosures = ?, unattributed_records = ?"
    else:
        row = con.execute(
            f"""
            WITH fresh AS (
                SELECT count(*) AS n, coalesce(sum(e.record_count), 0) AS r
                FROM disclosure_events e
                WHERE e.rowid >= {int(events_from)}
                  AND e.ingest_run_id IN (SELECT run_id FROM _acct_batches) AND {_UNATTRIBUTED}
            ), claimed AS (
                SELECT count(*) AS n, coalesce(sum(e.record_count), 0) AS r
                -- only request items can attribute an older disclosure: none, nothing to read
                FROM disclosure_events e
                WHERE {"true" if new_items else "false"}
                  AND e.ingest_run_id NOT IN (SELECT run_id FROM _acct_batches)
                  AND e.event_type IN ('disclosure', 'redisclosure') AND e.taxpayer_ref IS NULL
                  -- implied by the pair below (items' request_id is NOT NULL), and joined on
                  -- one column first: 10M events 0.51 -> 0.05 CPU-s
                  AND e.request_id IN (
                      SELECT request_id FROM request_items
                      WHERE ingest_run_id IN (SELECT run_id FROM _acct_batches))
                  AND (e.request_id, e.event_id) IN (
                      SELECT (request_id, event_id) FROM request_items
                      WHERE ingest_run_id IN (SELECT run_id FROM _acct_batches))
                  AND (e.request_id, e.event_id) NOT IN (
                      SELECT (request_id, event_id) FROM request_items
                      WHERE ingest_run_id NOT IN (SELECT run_id FROM _acct_batches)
                        AND request_id IS NOT NULL AND event_id IS NOT NULL)
            )
            SELECT fresh.n - claimed.n, fresh.r - claimed.r FROM fresh, claimed
            """
        ).fetchone()
        assignment = (
            "unattributed_disclosures = unattributed_disclosures + ?,"
            " unattributed_records = unattributed_records + ?"
        )
    con.execute(
        f"UPDATE accounting_index_state SET refreshed_at = now(), {assignment}",
        [row[0] if row else 0, row[1] if row else 0],
    )


def refresh_index(con: duckdb.DuckDBPyConnection) -> IndexRefresh:
    """Bring accounting_keys up to date with every loaded batch (caller's transaction)."""
    started = time.perf_counter()
    if not con.execute("SELECT count(*) FROM accounting_index_state").fetchone()[0]:  # type: ignore[index]
        con.execute("INSERT INTO accounting_index_state (sorted_entries) VALUES (0)")
    counted = con.execute(
        "SELECT unattributed_disclosures IS NOT NULL FROM accounting_index_state"
    ).fetchone()[0]  # type: ignore[index]
    rehinted = _drop_if_moved(con)
    stale = [] if rehinted else _stale_batches(con)
    if stale:
        con.execute(
            f"DELETE FROM {TABLE} WHERE ingest_run_id IN (SELECT unnest($b::VARCHAR[]))"
            " OR item_run_id IN (SELECT unnest($b::VARCHAR[]))",
            {"b": stale},
        )
        note_rewrite(con, TABLE)  # the batches' rows are added again below
        con.execute(
            "DELETE FROM accounting_index_runs WHERE ingest_run_id IN (SELECT unnest(?::VARCHAR[]))",
            [stale],
        )
    batches = unindexed_batches(con)
    if not batches:
        return IndexRefresh(0, 0, 0, False, time.perf_counter() - started)
    first = not con.execute(f"SELECT count(*) FROM (SELECT 1 FROM {TABLE} LIMIT 1)").fetchone()[0]  # type: ignore[index]
    if first:
        entries = _first_build(con, batches)
        # sorted pieces: counted as the sorted start (a lookup reads a row group or two of each)
        con.execute("UPDATE accounting_index_state SET sorted_entries = ?", [entries])
        _record_batches(con, TABLE)
        bounds = RowBounds()
    else:
        bounds = first_rowids(con, batches)
        pending_entries(con, batches, "_acct_new", bounds)
        entries = _append_new(con)
        _record_batches(con, "_acct_new")
        con.execute("DROP TABLE _acct_new")
    capture_hints(con)
    compacted = _compact_if_due(con)
    _count_unattributed(
        con,
        # a first build (after an upgrade, or rows moved) lists every batch: count afresh
        full=bool(stale) or not counted or first,
        new_items=_batches_have_items(con),
        events_from=bounds.events,
    )
    seconds = time.perf_counter() - started
    return IndexRefresh(len(batches), entries, len(stale), compacted, seconds, rehinted)


def _drop_if_moved(con: duckdb.DuckDBPyConnection) -> bool:
    """Empty the index when its row-id hints no longer hold (``readback.hints_hold``): the
    refresh then builds it anew. Lookups stay right either way (each row read is checked);
    this keeps them from joining on the stable key for every moved row."""
    if not con.execute(f"SELECT count(*) FROM (SELECT 1 FROM {TABLE} LIMIT 1)").fetchone()[0]:  # type: ignore[index]
        return False
    if hints_hold(con):
        return False
    con.execute(f"DELETE FROM {TABLE}")
    note_rewrite(con, TABLE)  # built anew below
    con.execute("DELETE FROM accounting_index_runs")
    con.execute("UPDATE accounting_index_state SET sorted_entries = 0")
    return True
