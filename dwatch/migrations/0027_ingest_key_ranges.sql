-- Key ranges of each ingest run's events, per source system (issue 18).
--
-- Ingest refuses an event whose (source_system, event_id) the store already holds. Joining
-- every new batch against all of disclosure_events made that check grow with history. Each
-- run's good rows are recorded here as one range per source (first and last event_id);
-- a new batch is checked only against the runs whose range for the same source overlaps
-- its own (usually none: a daily increment's ids come after everything loaded before), and
-- then only against those runs' rows (dwatch.ingest.write._mark_duplicates). Only ingest
-- writes disclosure_events; validation removing rows leaves a range wider than the rows,
-- which is safe (the check then reads a little more).
CREATE TABLE IF NOT EXISTS ingest_key_ranges (
    ingest_run_id VARCHAR NOT NULL,
    source_system VARCHAR NOT NULL,
    first_event_id VARCHAR NOT NULL,
    last_event_id VARCHAR NOT NULL
);
COMMENT ON TABLE ingest_key_ranges IS 'Per ingest run and source system: the first and last event_id loaded; bounds the duplicate check of later loads.';
INSERT INTO ingest_key_ranges
SELECT ingest_run_id, source_system, min(event_id), max(event_id)
FROM disclosure_events
WHERE ingest_run_id IS NOT NULL AND source_system IS NOT NULL AND event_id IS NOT NULL
GROUP BY ingest_run_id, source_system;
