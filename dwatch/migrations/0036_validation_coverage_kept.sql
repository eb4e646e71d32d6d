-- What a validation run keeps of each events batch it checks, per source (issue 18), so a
-- later run that checks an old batch again for its open coverage gaps reads the rows near
-- those gaps and the new rows, not the old batch whole.
--
-- A sequence gap or a silence of an old batch can only close or split when rows arrive
-- inside it; what passed stays passed, except that a silence limit can shrink as the
-- source's rhythm changes. So beside the open gaps (validation_results) a run keeps, per
-- batch and source, the rows checked, their time window, and the longest stretch between
-- consecutive events within the batch's bounds that passed the silence check (an upper
-- bound: NULL when not known) with the bounds it lies within (the batch's time span widened
-- to its source's nearest events loaded before it). A later run reuses it while nothing else changed the
-- source (see dwatch.validate.revisits); otherwise it reads the batch as before. Only the
-- latest check of each batch is kept.
CREATE TABLE IF NOT EXISTS validation_coverage_kept (
    ingest_run_id VARCHAR NOT NULL,
    source_system VARCHAR,
    validation_run_id VARCHAR NOT NULL,
    run_started_at TIMESTAMPTZ NOT NULL,
    rows_checked BIGINT NOT NULL,
    window_start TIMESTAMPTZ,
    window_end TIMESTAMPTZ,
    silence_pass_max DOUBLE,
    bound_lo TIMESTAMPTZ,
    bound_hi TIMESTAMPTZ
);
COMMENT ON TABLE validation_coverage_kept IS 'Per events batch and source, as last validated: rows checked, time window, and the longest stretch that passed the silence check (seconds, an upper bound); lets a revisit for open coverage gaps read only rows near them.';
