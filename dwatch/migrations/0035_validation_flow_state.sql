-- Per source and flow, the newest transfer (issue 18): what the store-wide silence check
-- needs of every event.
--
-- A source behind the others is judged against the newest transfer of its own flows
-- (sender and recipient) that other logs record. That read every event of the store in
-- every run. This table keeps, per source_system and flow, the time of its newest
-- transfer event (request, disclosure, redisclosure, receipt; NULL when the source has
-- events of the flow but no transfer), so the check reads it instead. Kept by
-- dwatch.validate.state with validation_source_state, in the same transactions: brought
-- up to date from each run's new batches, recomputed for a source whose state is
-- recomputed, rebuilt whole with it. Filled here from the batches that state covers.
CREATE TABLE IF NOT EXISTS validation_flow_state (
    source_system VARCHAR NOT NULL,
    disclosing_agency VARCHAR NOT NULL,
    recipient_agency VARCHAR NOT NULL,
    last_transfer_at TIMESTAMPTZ
);
COMMENT ON TABLE validation_flow_state IS 'Per source_system and flow (disclosing, recipient agency): its newest transfer event; the store-wide silence check reads it instead of every event.';
INSERT INTO validation_flow_state
SELECT source_system, disclosing_agency, recipient_agency,
       max(occurred_at) FILTER (WHERE event_type IN ('request', 'disclosure', 'redisclosure', 'receipt'))
FROM disclosure_events
WHERE source_system IS NOT NULL AND disclosing_agency IS NOT NULL AND recipient_agency IS NOT NULL
  AND ingest_run_id IN (SELECT ingest_run_id FROM validation_state_batches)
GROUP BY ALL;
