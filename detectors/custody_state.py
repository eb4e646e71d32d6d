"""Custody kept between runs: each reconciliation's sides, every receipt and disposal with
its holder (migration 0022), and how far each holder's log reaches (migration 0050), so a
run judging new batches resolves only the new rows.

The rows are those :data:`detectors.custody.INPUTS` derives from ``dw_events``, one per
event, each from its own event alone (its codes, key and holder under the registry): the
rows of all history are the rows of each batch put together, and a holder's reach is the
latest of its batches' reaches. So a run appends the new batches' rows and raises the
reaches, and pairing and custody (:func:`detectors.custody.pair_and_hold`) read the kept
rows exactly as they would read rows derived from every event again. They are
registry-resolved: the state records the registry and code version it was derived under,
and another version, or an old batch changed (the ledger, :mod:`detectors.rule_state`),
rebuilds it from all history.

Uses are not kept (migration 0050; before it, each use narrow by its row id, 9.2M rows of a
10M-event store written by every full judgement and read by every run). Uses are nearly
every event, and custody reads them for two things only: the holder's reach (kept) and the
uses made after a key's data was emptied (a handful), which are read back from
``disclosure_events`` through their request or agreement and their time
(:data:`detectors.custody.STORED_CANDIDATES`), resolved as ``dw_events`` resolves them. A
store with no emptied key reads no use at all.

Pairing and custody still read every kept side and custody row (receipts and disposals,
few): a transfer pairs with the nearest receipt in time under its key, and a new disposal
reaches every earlier use.
"""

from __future__ import annotations

import hashlib

import duckdb

from detectors import custody
from detectors.custody import (
    CUSTODY_EVENTS,
    CUSTODY_ROWS,
    INPUTS,
    KEPT_CUSTODY_EVENTS,
    KEPT_ROWS,
    OUTCOMES,
    REACH,
    STORED_CANDIDATES,
    STORED_USES,
    pair_and_hold,
    replace_temp,
)

FAMILY = "custody"
CODE_VERSION = hashlib.md5(
    (
        "".join(INPUTS.values())
        + KEPT_CUSTODY_EVENTS
        + REACH
        + STORED_CANDIDATES
        + STORED_USES
        + repr(OUTCOMES)
    ).encode()
).hexdigest()[:12]

# Each input of pairing and custody: its state table and the rows of it.
_KEPT = {
    "dw_recon_sent": ("rule_recon_sides", "'sent'"),
    "dw_recon_received": ("rule_recon_sides", "'received'"),
    "dw_custody_events": ("rule_custody_events", None),
}
REACH_TABLE = "rule_custody_reach"
_NEW_ROWS = (
    "FROM (SELECT * FROM dw_events WHERE ingest_run_id IN"
    " (SELECT ingest_run_id FROM dw_new_batches)) e"
)


def _insert(
    con: duckdb.DuckDBPyConnection, name: str, rows: str, params: dict[str, object] | None = None
) -> None:
    table, side = _KEPT[name]
    if name == "dw_custody_events":  # receipts and disposals: uses are not kept
        assert rows.count(CUSTODY_ROWS) == 1
        rows = rows.replace(CUSTODY_ROWS, KEPT_ROWS)
    if side is None:
        con.execute(f"INSERT INTO {table} BY NAME {rows}", params)
    else:
        con.execute(f"INSERT INTO {table} BY NAME SELECT {side} AS side, * FROM ({rows})", params)


def _raise_reach(con: duckdb.DuckDBPyConnection, rows: str) -> None:
    """Each holder's reach raised to the latest of ``rows`` (custody rows, as
    :data:`detectors.custody.CUSTODY_EVENTS`)."""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE dw_custody_reach_now AS SELECT holder_code,"
        " max(log_last_at) AS log_last_at FROM (SELECT holder_code, log_last_at"
        f" FROM {REACH_TABLE} UNION ALL {REACH.format(rows=rows)}) GROUP BY ALL",
        OUTCOMES,
    )
    con.execute(f"DELETE FROM {REACH_TABLE}")
    con.execute(f"INSERT INTO {REACH_TABLE} BY NAME SELECT * FROM dw_custody_reach_now")
    con.execute("DROP TABLE dw_custody_reach_now")


def kept(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the store has the state tables (migrations 0022 and 0050)."""
    tables = sorted({*(table for table, _ in _KEPT.values()), REACH_TABLE})
    row = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE NOT temporary"
        " AND table_name IN (SELECT unnest($t::VARCHAR[]))",
        {"t": tables},
    ).fetchone()
    return bool(row) and row[0] == len(tables)


def rebuild(con: duckdb.DuckDBPyConnection) -> None:
    """The state, whole, from every event of ``dw_events`` (prepared over all history):
    each input's rows inserted straight into its state table, streamed, none held."""
    for table in sorted({*(table for table, _ in _KEPT.values()), REACH_TABLE}):
        con.execute(f"DELETE FROM {table}")
    for name, select in INPUTS.items():
        _insert(con, name, select, OUTCOMES)
    _reach_rows(con)
    _raise_reach(con, CUSTODY_EVENTS.replace("FROM dw_events e", "FROM dw_custody_reach_rows e"))
    con.execute("DROP VIEW dw_custody_reach_rows")
    con.execute("DROP TABLE dw_custody_reach_base")


# What a custody row's holder, kind and time rest on: its type, the two agencies and its
# outcome (CUSTODY_EVENTS); a holder's reach is the latest time among them.
_REACH_KEYS = ("event_type", "recipient_agency", "disclosing_agency", "outcome")


def _reach_rows(con: duckdb.DuckDBPyConnection) -> None:
    """``dw_custody_reach_rows``: ``dw_events`` over one row per distinct type, agencies
    and outcome of every event, at its latest time, its other columns NULL (none of them
    bears on a holder or its reach). Resolving those few rows instead of every event
    gives each holder's reach alike (10M events: 1.0 -> 0.2 CPU-s)."""
    from detectors.engine import located_events_sql  # (the engine builds on this module)

    columns = con.execute("DESCRIBE disclosure_events").fetchall()
    select = ", ".join(
        "max(occurred_at) AS occurred_at"
        if name == "occurred_at"
        else name
        if name in _REACH_KEYS
        else f'NULL::{kind} AS "{name}"'
        for name, kind, *_ in columns
    )
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE dw_custody_reach_base AS SELECT {select}"
        f" FROM disclosure_events GROUP BY {', '.join(_REACH_KEYS)}"
    )
    con.execute(
        located_events_sql("dw_custody_reach_rows", "true").replace(
            "FROM disclosure_events WHERE true", "FROM dw_custody_reach_base WHERE true"
        )
    )


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
    over them, and raise the holders' reaches; the carriers of new items that ride along
    are old rows and are not added."""
    for name, select in INPUTS.items():
        assert select.count("FROM dw_events e") == 1, name
        _insert(con, name, select.replace("FROM dw_events e", _NEW_ROWS), OUTCOMES)
    new_rows = CUSTODY_EVENTS.replace("FROM dw_events e", _NEW_ROWS)
    _raise_reach(con, new_rows)
    row = con.execute(f"SELECT count(*) FROM ({new_rows})", OUTCOMES).fetchone()
    return int(row[0]) if row else 0


def judge_from_state(con: duckdb.DuckDBPyConnection) -> None:
    """Pairing and custody tables from the kept rows (views: nothing copied); the uses
    after an emptying read back from the store."""
    for name, (table, side) in _KEPT.items():
        replace_temp(con, name)
        where = f" WHERE side = {side}" if side else ""
        columns = "* EXCLUDE (side)" if side else "* EXCLUDE (event_row)"
        con.execute(f"CREATE TEMP VIEW {name} AS SELECT {columns} FROM {table}{where}")
    replace_temp(con, "dw_custody_reach")
    con.execute(f"CREATE TEMP VIEW dw_custody_reach AS SELECT * FROM {REACH_TABLE}")
    pair_and_hold(con, stored_uses=True)
