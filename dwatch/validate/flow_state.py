"""Per-source flow state: the newest transfer of each source's flows, kept between runs.

The store-wide silence check judges a source behind the others against the newest
transfer (request, disclosure, redisclosure, receipt) of its own flows (disclosing and
recipient agency) that other logs record. ``validation_flow_state`` (migration 0035)
keeps, per source and flow, the time of its newest transfer (NULL: events of the flow,
no transfer), so the check reads that instead of every event. It is kept beside
``validation_source_state`` by dwatch.validate.state, in the same transactions: new
batches' rows merged in (a maximum: merging rows already counted changes nothing), a
recomputed source's flows recomputed from its rows, everything rebuilt with the state.
"""

from __future__ import annotations

import duckdb

from dwatch.validate.coverage import TRANSFER_TYPES

FLOWS = "validation_flow_state"
TABLE = "disclosure_events"


def flows_sql(rows: str) -> str:
    """SQL: the flow state of the events of ``rows`` (a relation with source_system,
    disclosing_agency, recipient_agency, event_type, occurred_at)."""
    return (
        "SELECT source_system, disclosing_agency, recipient_agency,"
        f" max(occurred_at) FILTER (WHERE event_type IN {TRANSFER_TYPES}) AS last_transfer_at"
        f" FROM {rows} WHERE source_system IS NOT NULL AND disclosing_agency IS NOT NULL"
        " AND recipient_agency IS NOT NULL GROUP BY ALL"
    )


def clear(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(f"DELETE FROM {FLOWS}")


def rebuild(con: duckdb.DuckDBPyConnection) -> None:
    """Every source's flows from the store (inside the caller's transaction)."""
    clear(con)
    con.execute(f"INSERT INTO {FLOWS} {flows_sql(TABLE)}")


def recompute(con: duckdb.DuckDBPyConnection, sources: str) -> None:
    """The flows of ``sources`` (SQL list for IN) from their rows in the store."""
    con.execute(f"DELETE FROM {FLOWS} WHERE source_system IN {sources}")
    rows = f"(SELECT * FROM {TABLE} WHERE source_system IN {sources})"
    con.execute(f"INSERT INTO {FLOWS} {flows_sql(rows)}")


def merge(con: duckdb.DuckDBPyConnection, new_rows: str, skip: str) -> None:
    """Fold the events of ``new_rows`` (a relation) into the flows of their sources, but
    those of ``skip`` (SQL list for IN: sources recomputed whole)."""
    rows = f"(SELECT * FROM {new_rows} WHERE source_system NOT IN {skip})"
    con.execute(f"CREATE OR REPLACE TEMP TABLE _dw_val_flows AS {flows_sql(rows)}")
    keys = "source_system, disclosing_agency, recipient_agency"
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE _dw_val_flows_next AS SELECT {keys},"
        " greatest(n.last_transfer_at, o.last_transfer_at) AS last_transfer_at"
        f" FROM _dw_val_flows n LEFT JOIN {FLOWS} o USING ({keys})"
    )
    con.execute(
        f"DELETE FROM {FLOWS} USING _dw_val_flows n WHERE n.source_system = {FLOWS}.source_system"
        f" AND n.disclosing_agency = {FLOWS}.disclosing_agency"
        f" AND n.recipient_agency = {FLOWS}.recipient_agency"
    )
    con.execute(f"INSERT INTO {FLOWS} SELECT {keys}, last_transfer_at FROM _dw_val_flows_next")
    con.execute("DROP TABLE _dw_val_flows")
    con.execute("DROP TABLE _dw_val_flows_next")
