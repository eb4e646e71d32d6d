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

Pairing and custody still read every kept side and custody row (narrow tables, no
resolution of events): a transfer pairs with the nearest receipt in time under its key,
each log's reach moves with every new entry, and a new disposal reaches every earlier use.
"""

from __future__ import annotations

import hashlib

import duckdb

from detectors.custody import CUSTODY_EVENTS, INPUTS, OUTCOMES, pair_and_hold, replace_temp

FAMILY = "custody"
CODE_VERSION = hashlib.md5(("".join(INPUTS.values()) + repr(OUTCOMES)).encode()).hexdigest()[:12]

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


def save_full(con: duckdb.DuckDBPyConnection) -> None:
    """After :func:`detectors.custody.prepare_custody` over all history: the state, whole."""
    con.execute("DELETE FROM rule_recon_sides")
    con.execute("DELETE FROM rule_custody_events")
    for name in INPUTS:
        _insert(con, name, f"SELECT * FROM {name}")


def append_new(con: duckdb.DuckDBPyConnection) -> int:
    """Add the rows of the new batches (``dw_new_batches``) from ``dw_events`` prepared
    over them; the carriers of new items that ride along are old rows and are not added."""
    for name, select in INPUTS.items():
        assert select.count("FROM dw_events e") == 1, name
        _insert(con, name, select.replace("FROM dw_events e", _NEW_ROWS), OUTCOMES)
    row = con.execute(
        "SELECT count(*) FROM (" + CUSTODY_EVENTS.replace("FROM dw_events e", _NEW_ROWS) + ")",
        OUTCOMES,
    ).fetchone()
    return int(row[0]) if row else 0


def judge_from_state(con: duckdb.DuckDBPyConnection) -> None:
    """Pairing and custody tables from the kept rows (views: nothing copied)."""
    for name, (table, side) in _KEPT.items():
        replace_temp(con, name)
        where = f" WHERE side = {side}" if side else ""
        columns = "* EXCLUDE (side)" if side else "*"
        con.execute(f"CREATE TEMP VIEW {name} AS SELECT {columns} FROM {table}{where}")
    pair_and_hold(con)
