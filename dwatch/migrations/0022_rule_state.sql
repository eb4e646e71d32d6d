-- State the rules keep between runs (issue 18 item 2), so a run judging new batches reads
-- small state tables and the new rows instead of every log whole. Kept by
-- detectors.rule_state: rebuilt by every full judgement, brought up to date by every run
-- judging new batches, and rebuilt whole when the store changed in any other way.

-- The batches the state was built from and their row counts then. A batch whose counts
-- differ now (rows deleted, corrected, quarantined after judging), or a batch neither
-- here nor new, means the state no longer describes the store: it is rebuilt whole.
CREATE TABLE IF NOT EXISTS rule_state_batches (
    ingest_run_id VARCHAR NOT NULL,
    events BIGINT NOT NULL,              -- disclosure_events rows of the batch
    quarantined BIGINT NOT NULL,         -- quarantine rows of the batch
    updated_by_run_id VARCHAR NOT NULL
);
COMMENT ON TABLE rule_state_batches IS 'Batches the rules'' persisted state (rule_log_*) covers, with their row counts then; a mismatch rebuilds the state.';

-- A log's order where it breaks (a gap or reused sequence number, or a time earlier than
-- the previous entry's), with the neighbours either side: the rows detectors.engine calls
-- dw_sequence_breaks, over every entry of every log (quarantined entries keep their place).
CREATE TABLE IF NOT EXISTS rule_log_breaks (
    source_system VARCHAR,
    sequence_no BIGINT,
    event_id VARCHAR,
    occurred_at TIMESTAMPTZ,
    ingest_run_id VARCHAR,
    source_row BIGINT,
    prev_no BIGINT,
    prev_at TIMESTAMPTZ,
    next_no BIGINT,
    next_event VARCHAR,
    next_at TIMESTAMPTZ,
    next_run VARCHAR,
    next_row BIGINT
);
COMMENT ON TABLE rule_log_breaks IS 'Every log''s order breaks with their neighbours (gaps, reused numbers, steps back in time); the log-order rules read these instead of sorting every log again.';

-- Each log's last entry in its order (sequence number, then time) and the entry before
-- it: a new batch numbered after it continues the log from here.
CREATE TABLE IF NOT EXISTS rule_log_tail (
    source_system VARCHAR NOT NULL,
    sequence_no BIGINT NOT NULL,
    event_id VARCHAR,
    occurred_at TIMESTAMPTZ,
    ingest_run_id VARCHAR,
    source_row BIGINT,
    prev_no BIGINT,
    prev_at TIMESTAMPTZ,
    tied BOOLEAN NOT NULL,               -- another entry holds the same number: order among them is not fixed
    updated_by_run_id VARCHAR NOT NULL
);
COMMENT ON TABLE rule_log_tail IS 'Each log''s last entry in sequence order with its predecessor; new entries numbered after it are judged against it alone.';

-- Which registry and which code each kind of state was derived under: custody rows hold
-- registry-resolved codes, so another registry version (or other derivation code) rebuilds them.
CREATE TABLE IF NOT EXISTS rule_state (
    family VARCHAR NOT NULL,             -- log_order | custody
    registry_version VARCHAR,
    code_version VARCHAR NOT NULL,       -- digest of the SQL that derives the rows
    updated_by_run_id VARCHAR NOT NULL
);
COMMENT ON TABLE rule_state IS 'Per kind of rule state: the registry and code version it was derived under (another version rebuilds it).';

-- Each side of every registry reconciliation, one row per event (detectors.custody SENT_SIDE,
-- RECEIVED_SIDE): pairing reads these instead of resolving every event of history again.
CREATE TABLE IF NOT EXISTS rule_recon_sides (
    side VARCHAR NOT NULL CHECK (side IN ('sent', 'received')),
    reconciliation_id VARCHAR,
    event_id VARCHAR,
    source_system VARCHAR,
    occurred_at TIMESTAMPTZ,
    record_count BIGINT,
    disclosing_code VARCHAR,
    recipient_code VARCHAR,
    request_id VARCHAR,
    taxpayer_ref VARCHAR,
    match_key VARCHAR
);
COMMENT ON TABLE rule_recon_sides IS 'Disclosures and receipts under each registry reconciliation with their match key (registry-resolved); kept per batch.';

-- Every receipt, disposal and use with its holder and custody key (detectors.custody
-- CUSTODY_EVENTS), narrow, so custody is judged without resolving every event again.
CREATE TABLE IF NOT EXISTS rule_custody_events (
    event_id VARCHAR,
    source_system VARCHAR,
    event_type VARCHAR,
    occurred_at TIMESTAMPTZ,
    record_count BIGINT,
    actor_id VARCHAR,
    disclosing_code VARCHAR,
    recipient_code VARCHAR,
    recipient_category VARCHAR,
    agreement_ref VARCHAR,
    request_id VARCHAR,
    taxpayer_ref VARCHAR,
    is_use BOOLEAN,
    holder_code VARCHAR,
    custody_key VARCHAR
);
COMMENT ON TABLE rule_custody_events IS 'Receipts, disposals and uses with holder and custody key (registry-resolved); kept per batch.';
