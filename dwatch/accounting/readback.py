"""The events' fields of accounting entries, read back by row id and checked.

``accounting_keys`` names each entry's event by its stable key (``ingest_run_id``,
``source_row``: one file per batch and its row in that file, both kept unique by ingest)
and keeps the row id the event had when it was indexed as a hint. Row ids are not stable:
when a checkpoint compacts row groups that deletes emptied (validation quarantines rows),
DuckDB renumbers the rows after them. So the events are read by row-id ranges
(``dwatch.rowfetch.rowid_ranges``: constant bounds skip every other row group), and a row
read counts only where it is the event it was found for (same stable key); the events whose
hint missed are found by a join on the stable key (a scan of the key columns: correct,
slower). A snapshot's tables are views over Parquet files and have no row ids: there the
join is the only way.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from dwatch.rowfetch import rowid_ranges

# The event's fields an entry shows (and taxpayer_ref, which an event row is checked by).
EVENT_FIELDS = (
    "source_system",
    "event_id",
    "taxpayer_ref",
    "request_id",
    "occurred_at",
    "event_type",
    "disclosing_agency",
    "recipient_agency",
    "legal_authority",
    "authority_id",
    "purpose",
    "data_elements",
    "record_count",
)


@dataclass(frozen=True)
class ReadBack:
    events: int  # distinct events asked for
    by_rowid: int  # found where their hint said
    by_key: int  # found by the join on the stable key (their rows moved, or no row ids)


def rowids_usable(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether ``disclosure_events`` is a table here (a snapshot's is a view: no row ids)."""
    row = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database()"
        " AND schema_name = 'main' AND table_name = 'disclosure_events' AND NOT temporary"
    ).fetchone()
    return bool(row and row[0])


def read_events(con: duckdb.DuckDBPyConnection, wanted: str, into: str) -> ReadBack:
    """Temp table ``into``: ``ingest_run_id``, ``source_row`` and ``EVENT_FIELDS`` of each
    distinct event ``wanted`` (a table with ``ingest_run_id``, ``source_row``,
    ``event_rowid``) names that the store still holds, once each."""
    fields = ", ".join(EVENT_FIELDS)
    hints = (
        con.execute(
            f"SELECT DISTINCT event_rowid FROM {wanted} WHERE event_rowid IS NOT NULL"
        ).fetchall()
        if rowids_usable(con)
        else []
    )
    ranges = rowid_ranges(r[0] for r in hints)
    if ranges:
        branches = " UNION ALL ".join(
            f"SELECT rowid AS event_rowid, ingest_run_id, source_row, {fields}"
            f" FROM disclosure_events WHERE rowid BETWEEN {int(lo)} AND {int(hi)}"
            f" AND rowid IN (SELECT event_rowid FROM {wanted})"
            for lo, hi in ranges
        )
        # a row counts only where it is still the event it was found for
        found = f"""
            SELECT DISTINCT ON (w.ingest_run_id, w.source_row) w.ingest_run_id, w.source_row,
                   {", ".join(f"e.{c}" for c in EVENT_FIELDS)}
            FROM {wanted} w JOIN ({branches}) e
              ON e.event_rowid = w.event_rowid AND e.ingest_run_id = w.ingest_run_id
             AND e.source_row IS NOT DISTINCT FROM w.source_row
        """
    else:
        found = f"SELECT ingest_run_id, source_row, {fields} FROM disclosure_events LIMIT 0"
    con.execute(f"CREATE OR REPLACE TEMP TABLE {into} AS {found}")
    events, by_rowid = con.execute(
        f"SELECT (SELECT count(*) FROM (SELECT DISTINCT ingest_run_id, source_row FROM {wanted})),"
        f" (SELECT count(*) FROM {into})"
    ).fetchall()[0]
    if by_rowid < events:  # rows moved (or no row ids here): found by their stable key
        con.execute(
            f"""
            INSERT INTO {into}
            WITH missed AS (
                SELECT DISTINCT w.ingest_run_id, w.source_row FROM {wanted} w
                ANTI JOIN {into} f ON f.ingest_run_id = w.ingest_run_id
                 AND f.source_row IS NOT DISTINCT FROM w.source_row
            )
            SELECT m.ingest_run_id, m.source_row, {", ".join(f"e.{c}" for c in EVENT_FIELDS)}
            FROM missed m JOIN disclosure_events e
              ON e.ingest_run_id = m.ingest_run_id
             AND e.source_row IS NOT DISTINCT FROM m.source_row
            """
        )
    row = con.execute(f"SELECT count(*) FROM {into}").fetchone() if by_rowid < events else None
    found_all = int(row[0]) if row else int(by_rowid)
    return ReadBack(int(events), int(by_rowid), found_all - int(by_rowid))


def capture_hints(con: duckdb.DuckDBPyConnection) -> None:
    """Record where ``disclosure_events``' last row lies now (call when hints are written).

    Compaction keeps the rows' order, so if any hinted row moved, the last row moved too
    (as ``detectors.rowid_sentinel`` reasons for the custody state)."""
    last = con.execute("SELECT max(rowid) FROM disclosure_events").fetchone()
    row = (
        con.execute(
            "SELECT rowid, ingest_run_id, source_row FROM disclosure_events WHERE rowid = ?",
            [last[0]],
        ).fetchone()
        if last and last[0] is not None
        else None
    )
    con.execute(
        "UPDATE accounting_index_state SET hint_last_rowid = ?, hint_run_id = ?,"
        " hint_source_row = ?",
        list(row) if row else [None, None, None],
    )


def hints_hold(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the last row recorded by ``capture_hints`` is still at its row id (a point
    read). False when nothing was recorded; a refresh that finds it False writes the hints
    anew, so lookups stop paying the join on the stable key for every moved row."""
    kept = con.execute(
        "SELECT hint_last_rowid, hint_run_id, hint_source_row FROM accounting_index_state"
    ).fetchall()
    if len(kept) != 1 or kept[0][0] is None:
        return False
    last_rowid, run_id, source_row = kept[0]
    now = con.execute(
        "SELECT ingest_run_id, source_row FROM disclosure_events WHERE rowid = ?", [last_rowid]
    ).fetchall()
    return now == [(run_id, source_row)]
