-- One alert table shared by every detector, rule or model. Reports read only this.
CREATE TABLE IF NOT EXISTS alerts (
    alert_id VARCHAR PRIMARY KEY,        -- stable: hash of detector_id and its dedup key
    detector_id VARCHAR NOT NULL,        -- rule id or model id
    detector_kind VARCHAR NOT NULL,      -- rule | model
    detector_version VARCHAR NOT NULL,
    severity VARCHAR NOT NULL,           -- info | low | medium | high | critical
    score DOUBLE,                        -- higher = more anomalous / more serious
    entity_type VARCHAR NOT NULL,        -- recipient | request | actor | source | event | agreement
    entity_id VARCHAR NOT NULL,
    disclosing_agency VARCHAR,
    recipient_agency VARCHAR,
    request_id VARCHAR,
    actor_id VARCHAR,
    source_system VARCHAR,
    window_start TIMESTAMPTZ,
    window_end TIMESTAMPTZ,
    event_ids VARCHAR[],                 -- evidence: the events behind the finding (may be capped; see event_count)
    event_count BIGINT,
    subjects_affected BIGINT,            -- distinct taxpayers affected (violations are counted per taxpayer)
    records_affected BIGINT,
    evidence JSON,                       -- detector-specific evidence (baseline, counts, values)
    citations VARCHAR[],                 -- registry ids: authorities, court orders, agreements
    explanation VARCHAR NOT NULL,        -- plain-language why, filled from evidence
    coverage_incomplete BOOLEAN DEFAULT false,
    status VARCHAR NOT NULL DEFAULT 'open',  -- open | retracted
    retracted_reason VARCHAR,
    registry_version VARCHAR,
    first_run_id VARCHAR,
    last_run_id VARCHAR,
    first_detected_at TIMESTAMPTZ,
    last_detected_at TIMESTAMPTZ,
    retracted_at TIMESTAMPTZ
);
COMMENT ON TABLE alerts IS 'Findings of every detector. alert_id is stable across re-runs; findings that stop holding are retracted (status, retracted_reason), never deleted.';
