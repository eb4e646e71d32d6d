-- Reconciliation pairs and disposal terms (issue 17): written by dwatch.policy.sync from
-- policies/custody.yaml, read by the reconciliation and retention rules.
CREATE TABLE IF NOT EXISTS registry_reconciliations (
    reconciliation_id VARCHAR PRIMARY KEY,
    title VARCHAR,
    sender_agencies VARCHAR[],           -- upper case; empty = any
    recipient_agencies VARCHAR[],
    sender_sources VARCHAR[],            -- source_system of the sender's ledger; empty = any
    receiver_sources VARCHAR[],          -- source_system of the receipt logs; empty = any
    disclosure_event_types VARCHAR[],
    receipt_event_types VARCHAR[],
    match_on VARCHAR[],                  -- request_id | agreement_id | data_elements | taxpayer_ref
    min_record_count BIGINT,             -- smaller transfers are not reconciled
    clock_skew_hours DOUBLE,
    receipt_within_hours DOUBLE,
    missing_after_hours DOUBLE,
    record_count_tolerance BIGINT,
    record_count_tolerance_ratio DOUBLE,
    effective_from TIMESTAMPTZ,
    effective_to TIMESTAMPTZ,
    sources JSON,
    registry_version VARCHAR
);
COMMENT ON TABLE registry_reconciliations IS 'Which sender ledger must agree with which receipt logs, on what keys, with what time and count tolerances.';
CREATE TABLE IF NOT EXISTS registry_retention_terms (
    term_id VARCHAR PRIMARY KEY,
    title VARCHAR,
    agreements VARCHAR[],
    court_orders VARCHAR[],
    recipient_agencies VARCHAR[],
    recipient_categories VARCHAR[],
    dispose_within_days INTEGER,         -- after receipt
    dispose_by TIMESTAMPTZ,              -- a date an agreement or order sets
    effective_from TIMESTAMPTZ,
    effective_to TIMESTAMPTZ,
    sources JSON,
    registry_version VARCHAR
);
COMMENT ON TABLE registry_retention_terms IS 'When received data must be destroyed: days after receipt and/or a date, for the agreements or recipients named.';
