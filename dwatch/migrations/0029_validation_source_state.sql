-- What the coverage checks need of each source's history (issue 18 item 2), kept between
-- runs so a run's silence checks read this and the new rows instead of every source's
-- history. Kept by dwatch.validate.state: brought up to date from each validation run's
-- new batches, a source recomputed from its rows when a late event lands inside its
-- history, and rebuilt whole when missing or when the store changed in any other way.
-- Raw statistics only (no setting enters them): windows and factors apply at check time.

-- The batches the state was built from, with their disclosure_events rows then. A batch
-- whose count differs now, or rows of a batch neither here nor being validated, means the
-- state no longer describes the store: that run reads history and the state is rebuilt.
CREATE TABLE IF NOT EXISTS validation_state_batches (
    ingest_run_id VARCHAR NOT NULL,
    events BIGINT NOT NULL,
    updated_by VARCHAR NOT NULL
);
COMMENT ON TABLE validation_state_batches IS 'Batches validation_source_state covers, with their row counts then; a mismatch rebuilds the state.';

-- Per source: its first and last event time, how many events have a time, the batch
-- holding its last event, its longest gaps between consecutive events (seconds, longest
-- first, at most gaps_kept: the quiet-spell allowance reads the 3rd to the 20th), and its
-- highest sequence number with that event's time and batch (the sequence gap check's
-- neighbour of whatever is numbered after it).
CREATE TABLE IF NOT EXISTS validation_source_state (
    source_system VARCHAR NOT NULL,
    first_at TIMESTAMPTZ,
    last_at TIMESTAMPTZ,
    timed_events BIGINT NOT NULL,
    last_run_id VARCHAR,
    top_gaps DOUBLE[] NOT NULL,
    gaps_kept INTEGER NOT NULL,
    last_seq BIGINT,
    last_seq_at TIMESTAMPTZ,
    last_seq_run VARCHAR,
    updated_by VARCHAR NOT NULL
);
COMMENT ON TABLE validation_source_state IS 'Per source: first/last event time, timed event count and longest gaps, so silence checks read state and new rows, not history.';
