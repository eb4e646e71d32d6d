"""Canonical tables (from schemas/canonical.yaml), quarantine and ingest_runs."""

from __future__ import annotations

import duckdb

from dwatch.schema import ddl, load_schema


def apply(con: duckdb.DuckDBPyConnection) -> None:
    schema = load_schema()
    for table in schema.tables.values():
        con.execute(ddl(table))
    con.execute(
        """
        CREATE TABLE IF NOT EXISTS ingest_runs (
            run_id VARCHAR PRIMARY KEY,
            source_file VARCHAR NOT NULL,
            content_sha256 VARCHAR,
            kind VARCHAR,            -- events | request_items
            source_system VARCHAR,   -- mapping used, or NULL for canonical files
            file_format VARCHAR,     -- csv | jsonl | parquet
            rows_read BIGINT,
            rows_loaded BIGINT,
            rows_quarantined BIGINT,
            started_at TIMESTAMPTZ,
            finished_at TIMESTAMPTZ,
            status VARCHAR NOT NULL, -- loaded | skipped_duplicate | failed
            message VARCHAR,
            warnings VARCHAR[],
            forced BOOLEAN DEFAULT false,
            flow_run_id VARCHAR
        );
        COMMENT ON TABLE ingest_runs IS 'One row per file load attempt; rows_read = rows_loaded + rows_quarantined for every loaded file.';
        CREATE TABLE IF NOT EXISTS quarantine (
            ingest_run_id VARCHAR NOT NULL,
            source_file VARCHAR NOT NULL,
            source_row BIGINT,       -- data row number (1 = first record); NULL for whole-file problems
            source_line BIGINT,      -- physical line in the file where known
            kind VARCHAR,            -- events | request_items
            reason_code VARCHAR NOT NULL,
            field VARCHAR,
            message VARCHAR NOT NULL,
            raw_row VARCHAR,         -- the raw record, identifiers pseudonymised
            stage VARCHAR NOT NULL DEFAULT 'ingest',  -- ingest | validate
            quarantined_at TIMESTAMPTZ DEFAULT now()
        );
        COMMENT ON TABLE quarantine IS 'Rows that could not be loaded or failed validation, with where and why. Raw identifiers are pseudonymised.';
        """
    )
