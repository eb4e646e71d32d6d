-- Each log's number of numbered events (disclosure_events rows with a sequence_no), kept
-- with the log-order state (migration 0022, detectors.rule_state), issue 18.
--
-- out_of_order_timestamps weighs a run of late entries against how long a run the log's
-- late entries reach by chance, which needs the log's size. Counted from the store each
-- judgement, that was a pass over every event of every log in a run judging 1% of them;
-- a run judging new batches now adds the new rows' counts to these. Rebuilt whenever the
-- log-order state is (a full judgement, or an old batch changed: rule_state_batches).
CREATE TABLE IF NOT EXISTS rule_log_sizes (
    source_system VARCHAR,
    entries BIGINT NOT NULL,
    updated_by_run_id VARCHAR
);
COMMENT ON TABLE rule_log_sizes IS 'Per log, its disclosure_events rows with a sequence number, as the log-order state (rule_log_*) last counted them.';
-- A store judged before this table existed: the counts of the batches its state covers
-- (a batch judged later is added by the run that judges it; a state that no longer
-- matches the store is rebuilt whole, sizes with it).
INSERT INTO rule_log_sizes
SELECT source_system, count(*), NULL
FROM disclosure_events
WHERE sequence_no IS NOT NULL
  AND ingest_run_id IN (SELECT ingest_run_id FROM rule_state_batches)
GROUP BY source_system;
