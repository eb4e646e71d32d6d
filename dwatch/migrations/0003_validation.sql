-- Outcomes of every expectation on every validated batch (written by dwatch.validate).
CREATE TABLE IF NOT EXISTS validation_results (
    validation_run_id VARCHAR NOT NULL,
    ingest_run_id VARCHAR,           -- the batch validated (NULL for store-wide checks)
    source_system VARCHAR,
    suite VARCHAR NOT NULL,          -- e.g. canonical.disclosure_events, source.<name>
    expectation VARCHAR NOT NULL,    -- expectation type and column, e.g. expect_column_values_to_not_be_null(actor_id)
    scope VARCHAR NOT NULL,          -- row | batch
    success BOOLEAN NOT NULL,
    element_count BIGINT,
    unexpected_count BIGINT,
    window_start TIMESTAMPTZ,        -- the time window the result speaks for
    window_end TIMESTAMPTZ,
    observed JSON,
    message VARCHAR,
    validated_at TIMESTAMPTZ DEFAULT now()
);
COMMENT ON TABLE validation_results IS 'Every expectation outcome per batch. Failed batch-level checks make their source and window "coverage incomplete" (view coverage_gaps).';

-- Sources and windows whose logs cannot be trusted to be complete. Detection marks alerts
-- that touch them, and reports show them instead of a clean zero.
CREATE OR REPLACE VIEW coverage_gaps AS
SELECT source_system, window_start, window_end, expectation, message, validation_run_id, ingest_run_id
FROM validation_results
WHERE NOT success AND scope = 'batch';
