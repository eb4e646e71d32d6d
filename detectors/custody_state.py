"""Custody kept between runs: each reconciliation's sides and every receipt, disposal and use
with its holder (migration 0022), so a run judging new batches resolves only the new rows.

The rows are those :data:`detectors.custody.INPUTS` derives from ``dw_events``, one per
event, each from its own event alone (its codes, key and holder under the registry): the
rows of all history are the rows of each batch put together. So a run appends the new
batches' rows, and pairing and custody (:func:`detectors.custody.pair_and_hold`) read the
kept rows exactly as they would read rows derived from every event again. They are
registry-resolved: the state records the registry and code version it was derived under,
and another version, or an old batch changed (the ledger, :mod:`detectors.rule_state`),
rebuilds it from all history.

A full judgement writes the rows straight into the state tables (:func:`prepare_custody`)
and judges from them as a run judging new batches does: the custody rows are nearly every
event of a store (each use), more than memory holds as temporary tables (a 100M-event
store's spilled about 29 GB), while an insert streams them to the store file.

A use is kept narrow (migration 0039): its time, holder, custody key and row id in
``disclosure_events``, the rest NULL. Uses are nearly every event, and custody reads one
whole only when its data was emptied before it (a handful), by its row id
(:data:`detectors.custody.KEPT_CUSTODY_EVENTS`; 10M events: the insert 15.2 -> 7.7 CPU-s).
Row ids hold while the ledger does and DuckDB has not compacted the table: a store whose
old batches lost or gained a row rebuilds the state (:mod:`detectors.rule_state`), and so
does one whose rows moved at a checkpoint that compacted row groups emptied by deletes
(:mod:`detectors.rowid_sentinel`: the last row read is checked where it lay, migration 0042).

Pairing and custody still read every kept side and custody row (narrow tables, no
resolution of events): a transfer pairs with the nearest receipt in time under its key,
each log's reach moves with every new entry, and a new disposal reaches every earlier use.
What they hold in memory is the receipts and disposals (few) and the uses after a key was
emptied; the uses are streamed past them.
"""

from __future__ import annotations

import hashlib

import duckdb

from detectors import custody, rowid_sentinel
from detectors.custody import (
    CUSTODY_EVENTS,
    INPUTS,
    KEPT_CUSTODY_EVENTS,
    OUTCOMES,
    pair_and_hold,
    replace_temp,
)

FAMILY = "custody"
CODE_VERSION = hashlib.md5(
    ("".join(INPUTS.values()) + KEPT_CUSTODY_EVENTS + repr(OUTCOMES)).encode()
).hexdigest()[:12]

# Each input of pairing and custody: its state table and the rows of it.
_KEPT = {
    "dw_recon_sent": ("rule_recon_sides", "'sent'"),
    "dw_recon_received": ("rule_recon_sides", "'received'"),
    "dw_custody_events": ("rule_custody_events", None),
}
_NEW_ROWS = (
    "FROM (SELECT * FROM dw_events WHERE ingest_run_id IN"
    " (SELECT ingest_run_id FROM dw_new_batches)) e"
)


def _insert(
    con: duckdb.DuckDBPyConnection, name: str, rows: str, params: dict[str, object] | None = None
) -> None:
    table, side = _KEPT[name]
    if side is None:
        con.execute(f"INSERT INTO {table} BY NAME {rows}", params)
    else:
        con.execute(f"INSERT INTO {table} BY NAME SELECT {side} AS side, * FROM ({rows})", params)


def kept(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the store has the state tables (migration 0022)."""
    tables = sorted({table for table, _ in _KEPT.values()})
    row = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE NOT temporary"
        " AND table_name IN (SELECT unnest($t::VARCHAR[]))",
        {"t": tables},
    ).fetchone()
    return bool(row) and row[0] == len(tables)


def _insert_custody_events(con: duckdb.DuckDBPyConnection, where: str) -> None:
    """Custody rows of the events ``where`` selects (SQL on ``disclosure_events``), uses
    narrow (:data:`detectors.custody.KEPT_CUSTODY_EVENTS`), with their row ids."""
    from detectors.engine import located_events_sql  # (the engine builds on this module)

    con.execute(located_events_sql("dw_custody_located", where))
    _insert(
        con, "dw_custody_events", KEPT_CUSTODY_EVENTS.format(located="dw_custody_located"), OUTCOMES
    )
    con.execute("DROP VIEW dw_custody_located")


def rebuild(con: duckdb.DuckDBPyConnection) -> None:
    """The state, whole, from every event of ``dw_events`` (prepared over all history):
    each input's rows inserted straight into its state table, streamed, none held."""
    for table in sorted({table for table, _ in _KEPT.values()}):
        con.execute(f"DELETE FROM {table}")
    for name, select in INPUTS.items():
        if name != "dw_custody_events":
            _insert(con, name, select, OUTCOMES)
    _insert_custody_events(con, "true")
    rowid_sentinel.capture(con)


def prepare_custody(con: duckdb.DuckDBPyConnection) -> None:
    """Pairing and custody over all history (``dw_events`` prepared over every event): the
    kept rows rebuilt and judged from (the state is then whole, for the next run to go on
    from). A store without the state tables holds the rows as temporary tables."""
    if not kept(con):
        custody.prepare_custody(con)
        return
    rebuild(con)
    judge_from_state(con)


def append_new(con: duckdb.DuckDBPyConnection) -> int:
    """Add the rows of the new batches (``dw_new_batches``) from ``dw_events`` prepared
    over them; the carriers of new items that ride along are old rows and are not added."""
    for name, select in INPUTS.items():
        assert select.count("FROM dw_events e") == 1, name
        if name != "dw_custody_events":
            _insert(con, name, select.replace("FROM dw_events e", _NEW_ROWS), OUTCOMES)
    from detectors.rule_state import new_rows_from  # (it builds on this module)

    rowid_sentinel.require(con, "before this run added its uses")
    _insert_custody_events(
        con,
        f"rowid >= {int(new_rows_from(con))}"
        " AND ingest_run_id IN (SELECT ingest_run_id FROM dw_new_batches)",
    )
    rowid_sentinel.capture(con)
    row = con.execute(
        "SELECT count(*) FROM (" + CUSTODY_EVENTS.replace("FROM dw_events e", _NEW_ROWS) + ")",
        OUTCOMES,
    ).fetchone()
    return int(row[0]) if row else 0


def judge_from_state(con: duckdb.DuckDBPyConnection) -> None:
    """Pairing and custody tables from the kept rows (views: nothing copied). The uses kept
    narrow are read back by row id, so those must not have moved since they were read."""
    rowid_sentinel.require(con, "between keeping the uses and judging them")
    for name, (table, side) in _KEPT.items():
        replace_temp(con, name)
        where = f" WHERE side = {side}" if side else ""
        columns = "* EXCLUDE (side)" if side else "*"
        con.execute(f"CREATE TEMP VIEW {name} AS SELECT {columns} FROM {table}{where}")
    pair_and_hold(con)
