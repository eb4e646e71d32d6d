-- How far each holder's custody log reaches, kept between runs (issue 18): the latest
-- receipt, disposal or use of each holder (detectors.custody: a retention deadline is
-- judged only where the holder's log has reached it). The custody state no longer keeps
-- each use (migration 0039 kept them narrow, by row id): uses are nearly every event, and
-- custody reads them only for this reach and for the uses of data already emptied, which
-- a run reads back from disclosure_events through their request or agreement. So
-- rule_custody_events now holds receipts and disposals alone (event_row stays NULL), and
-- a state kept before this is rebuilt by the next run (its code version changed).
CREATE TABLE IF NOT EXISTS rule_custody_reach (
    holder_code VARCHAR,                 -- the holder as the registry resolves it
    log_last_at TIMESTAMPTZ              -- its latest receipt, disposal or use
);
COMMENT ON TABLE rule_custody_reach IS 'Per holder, the time of its latest receipt, disposal or use (registry-resolved under rule_state family custody): how far its log reaches; raised from new batches, rebuilt when the ledger or registry says so.';
COMMENT ON TABLE rule_custody_events IS 'Receipts and disposals with holder and custody key (registry-resolved); kept per batch. Uses are not kept (migration 0050): read back from disclosure_events when their data was emptied.';
COMMENT ON COLUMN rule_custody_events.event_row IS 'Unused since migration 0050 (uses kept narrow by row id before it); NULL.';
