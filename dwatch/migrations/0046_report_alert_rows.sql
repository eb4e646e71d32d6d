-- The alerts' evidence rows kept between reports (issue 18; dwatch.report.evidence_rows).
-- Each report needs every alert's listed events (the cases' data elements, the evidence shown
-- per case); finding them by event id reads the event ids of all history, so an alert's rows
-- are found once, when the alert or its event list is new, and kept here with the key of what
-- they were found for. Rows appended later are searched for every alert; any row deleted or
-- moved at or below the bound (validation quarantine, a compacting checkpoint) drops them all.
CREATE TABLE IF NOT EXISTS report_alert_rows (
    alert_id VARCHAR NOT NULL,
    evidence_key VARCHAR NOT NULL,  -- md5 of the alert's source_system and event_ids searched
    source_system VARCHAR,          -- NULL on the one row saying the alert was searched
    event_id VARCHAR,
    occurred_at TIMESTAMPTZ,
    row_id BIGINT,                  -- the event's row id, valid while the state below holds
    data_elements VARCHAR[]
);
COMMENT ON TABLE report_alert_rows IS 'Each alert''s evidence rows in disclosure_events as the report last found them (key: evidence_key); one row with a NULL event per alert searched. A cache: dropping its rows only makes the next report search again.';
CREATE TABLE IF NOT EXISTS report_alert_rows_state (
    last_rowid BIGINT NOT NULL,      -- disclosure_events' last row id when rows were searched (-1: empty)
    source_system VARCHAR,           -- the event at last_rowid then
    event_id VARCHAR,
    rows_at_or_below BIGINT NOT NULL -- how many rows had a row id at or below last_rowid
);
COMMENT ON TABLE report_alert_rows_state IS 'One row: where disclosure_events ended when report_alert_rows was last brought up to date; a different count at or below last_rowid, or another event at it, means rows were deleted or moved and every alert is searched again.';
