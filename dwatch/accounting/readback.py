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

from dwatch.rowfetch import ROW_GROUP, rowid_ranges

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


# Above this share of the table's row groups holding wanted rows, one scan reads them all.
ONE_SCAN_SHARE = 0.5
# At most this many batches are read one scan each where row ids are missing (a snapshot).
MAX_BATCH_SCANS = 64


@dataclass(frozen=True)
class ReadBack:
    events: int  # distinct events asked for
    by_rowid: int  # found where their hint said
    by_key: int  # found by the join on the stable key (their rows moved, or no row ids)


def event_rows(con: duckdb.DuckDBPyConnection) -> int | None:
    """About how many rows ``disclosure_events`` holds, or None where it is not a table (a
    snapshot's is a view over Parquet files: no row ids)."""
    row = con.execute(
        "SELECT estimated_size FROM duckdb_tables() WHERE database_name = current_database()"
        " AND schema_name = 'main' AND table_name = 'disclosure_events' AND NOT temporary"
    ).fetchone()
    return int(row[0] or 0) if row else None


def _by_rowid(wanted: str, hints: list[int], rows: int) -> str:
    """A scan of the events at the ``hints`` row ids: one scan bounded by constants per
    group of neighbouring row ids (``rowid_ranges``), each filtered by the wanted row ids in
    its range; when they touch most row groups anyway, one scan filtered by all of them (82
    ranges over 10M events cost 1.97 CPU-s for 101,058 rows, one scan 1.48; 0.62 against
    0.39 for 1,534 rows spread as widely)."""
    fields = ", ".join(EVENT_FIELDS)
    select = (
        f"SELECT rowid AS event_rowid, ingest_run_id, source_row, {fields} FROM disclosure_events"
    )
    groups = len({h // ROW_GROUP for h in hints})
    if groups > ONE_SCAN_SHARE * (rows // ROW_GROUP + 1):
        return f"{select} WHERE rowid IN (SELECT event_rowid FROM {wanted})"
    return " UNION ALL ".join(
        f"{select} WHERE rowid BETWEEN {int(lo)} AND {int(hi)} AND rowid IN"
        f" (SELECT event_rowid FROM {wanted} WHERE event_rowid BETWEEN {int(lo)} AND {int(hi)})"
        for lo, hi in rowid_ranges(hints)
    )


def read_events(con: duckdb.DuckDBPyConnection, wanted: str, into: str) -> ReadBack:
    """Temp table ``into``: ``ingest_run_id``, ``source_row`` and ``EVENT_FIELDS`` of each
    distinct event ``wanted`` (a table with ``ingest_run_id``, ``source_row``,
    ``event_rowid``) names that the store still holds, once each."""
    fields = ", ".join(EVENT_FIELDS)
    rows = event_rows(con)
    hints = (
        [
            int(r[0])
            for r in con.execute(
                f"SELECT DISTINCT event_rowid FROM {wanted} WHERE event_rowid IS NOT NULL"
            ).fetchall()
        ]
        if rows is not None
        else []
    )
    if hints:
        branches = _by_rowid(wanted, hints, rows or 0)
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
        _by_key(con, wanted, into, per_batch=rows is None)
    row = con.execute(f"SELECT count(*) FROM {into}").fetchone() if by_rowid < events else None
    found_all = int(row[0]) if row else int(by_rowid)
    return ReadBack(int(events), int(by_rowid), found_all - int(by_rowid))


def _by_key(con: duckdb.DuckDBPyConnection, wanted: str, into: str, *, per_batch: bool) -> None:
    """Add to ``into`` the events of ``wanted`` it lacks, found by their stable key.

    ``per_batch`` (a snapshot: Parquet files keep each row group's whole min and max of
    ``ingest_run_id``, and a batch's rows lie together): one scan per batch filtered by its
    id as a constant, which skips the other batches' row groups (a join's filter spans every
    batch wanted and skips nothing: 46 ms a one-taxpayer lookup at 1M events, growing with
    the store). The store keeps only a string's first bytes as min and max, so there, and for
    more than ``MAX_BATCH_SCANS`` batches, one join."""
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _acct_missed AS
        SELECT DISTINCT w.ingest_run_id, w.source_row FROM {wanted} w
        ANTI JOIN {into} f ON f.ingest_run_id = w.ingest_run_id
         AND f.source_row IS NOT DISTINCT FROM w.source_row
        """
    )
    fields = ", ".join(f"e.{c}" for c in EVENT_FIELDS)
    runs = [
        r[0]
        for r in con.execute(
            "SELECT DISTINCT ingest_run_id FROM _acct_missed WHERE ingest_run_id IS NOT NULL"
        ).fetchall()
    ]
    if per_batch and len(runs) <= MAX_BATCH_SCANS:
        scans = [
            f"SELECT e.ingest_run_id, e.source_row, {fields} FROM disclosure_events e"
            f" WHERE e.ingest_run_id = {_literal(run)} AND e.source_row IN (SELECT source_row"
            f" FROM _acct_missed WHERE ingest_run_id = {_literal(run)})"
            for run in runs
        ]
        if scans:
            con.execute(f"INSERT INTO {into} {' UNION ALL '.join(scans)}")
    else:
        con.execute(
            f"""
            INSERT INTO {into}
            SELECT m.ingest_run_id, m.source_row, {fields}
            FROM _acct_missed m JOIN disclosure_events e
              ON e.ingest_run_id = m.ingest_run_id
             AND e.source_row IS NOT DISTINCT FROM m.source_row
            """
        )
    con.execute("DROP TABLE _acct_missed")


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


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
