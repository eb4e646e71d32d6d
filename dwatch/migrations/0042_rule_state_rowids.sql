-- Where disclosure_events' last row lay when the custody state last read row ids (issue 18).
-- The state keeps a use narrow by its row id (migration 0039), and DuckDB renumbers rows when
-- a checkpoint compacts row groups emptied by deletes (validation quarantine). Compaction
-- keeps the rows' order, so if any row before the last one moved, the last one moved too:
-- a run whose last-row check fails rebuilds the custody state from all history
-- (detectors.rowid_sentinel).
CREATE TABLE IF NOT EXISTS rule_state_rowids (
    last_rowid BIGINT,
    source_system VARCHAR,
    event_id VARCHAR,
    captured_by_run_id VARCHAR
);
COMMENT ON TABLE rule_state_rowids IS 'One row: disclosure_events'' last row (row id, source, event id) when the custody state last read row ids; a different row there now means row ids moved and the state is rebuilt.';
