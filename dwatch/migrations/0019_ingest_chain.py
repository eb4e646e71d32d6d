"""Ingest records chained by hash (issue 17): a changed or deleted record is detectable."""

from __future__ import annotations

import duckdb

from dwatch import ledger


def apply(con: duckdb.DuckDBPyConnection) -> None:
    for column, kind in (
        ("chain_seq", "BIGINT"),
        ("chain_record", "VARCHAR"),
        ("chain_prev", "VARCHAR"),
        ("chain_hash", "VARCHAR"),
    ):
        con.execute(f"ALTER TABLE ingest_runs ADD COLUMN IF NOT EXISTS {column} {kind}")
    con.execute(
        "COMMENT ON COLUMN ingest_runs.chain_hash IS"
        " 'sha256(chain_prev || newline || chain_record): dwatch verify --store walks the chain'"
    )
    ledger.backfill(con)
