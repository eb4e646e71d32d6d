-- Sequence number ranges of each validated batch, per source system (issue 18).
--
-- The row check "sequence_no is used once per source_system" looked up the new batches'
-- numbers among every row the store holds. Each batch's numbers are recorded here as one
-- range per source (lowest and highest sequence_no) when it is validated, so a later
-- run's check reads only the batches whose range for the same source overlaps a new
-- batch's own (usually none: a log numbers on from where it stopped), as the event_id
-- check reads by ingest_key_ranges (migration 0027). A loaded batch with no range here is
-- always read. Validation moving rows to quarantine leaves a range wider than the rows,
-- which is safe (the check then reads a little more). Kept by dwatch.validate.keyranges.
CREATE TABLE IF NOT EXISTS validation_sequence_ranges (
    ingest_run_id VARCHAR NOT NULL,
    source_system VARCHAR NOT NULL,
    first_seq BIGINT NOT NULL,
    last_seq BIGINT NOT NULL
);
COMMENT ON TABLE validation_sequence_ranges IS 'Per validated batch and source system: the lowest and highest sequence_no; bounds the sequence_no uniqueness check of later batches.';
INSERT INTO validation_sequence_ranges
SELECT ingest_run_id, source_system, min(sequence_no), max(sequence_no)
FROM disclosure_events
WHERE ingest_run_id IS NOT NULL AND source_system IS NOT NULL AND sequence_no IS NOT NULL
GROUP BY ingest_run_id, source_system;
