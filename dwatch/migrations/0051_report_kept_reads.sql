-- The report's timeline, summed per recipient and day, kept between reports (issue 18;
-- dwatch.report.timeline_days). Every report charts the disclosures of all history per
-- recipient and day; summing them read every event (0.9 CPU-s at 100M). The sums are kept
-- here and only rows appended since are added; any row deleted or moved at or below the
-- bound (validation quarantine, a compacting checkpoint) makes the next report sum again.
CREATE TABLE IF NOT EXISTS report_timeline_days (
    recipient_agency VARCHAR,  -- as stored (masked when shown)
    day DATE,                  -- CAST(occurred_at AS DATE) in the session's time zone (UTC)
    events BIGINT NOT NULL,
    records HUGEINT            -- sum(record_count): NULL when every event's count was NULL
);
COMMENT ON TABLE report_timeline_days IS 'Disclosure events of the charted types summed per recipient and day as the report last read them, up to the row in report_timeline_state. A cache: dropping its state makes the next report sum every event again.';
CREATE TABLE IF NOT EXISTS report_timeline_state (
    last_rowid BIGINT NOT NULL,      -- disclosure_events' last row id when summed (-1: empty)
    source_system VARCHAR,           -- the event at last_rowid then
    event_id VARCHAR,
    rows_at_or_below BIGINT NOT NULL, -- how many rows had a row id at or below last_rowid
    event_types VARCHAR[] NOT NULL    -- the event types summed
);
COMMENT ON TABLE report_timeline_state IS 'One row: where disclosure_events ended when report_timeline_days was last brought up to date; a different count at or below last_rowid, or another event at it, or other event types, means every event is summed again.';
-- The evidence rows the last report showed, read back whole by row id (dwatch.report.data):
-- each report reads back only rows it did not show before. Valid while report_alert_rows_state
-- holds (its row ids are); emptied whenever the kept evidence rows are searched again.
CREATE TABLE IF NOT EXISTS report_shown_events (
    row_id BIGINT NOT NULL,  -- the event's row id in disclosure_events
    occurred_at TIMESTAMPTZ,
    source_system VARCHAR,
    event_id VARCHAR,
    event_type VARCHAR,
    disclosing_agency VARCHAR,
    recipient_agency VARCHAR,
    actor_id VARCHAR,
    request_id VARCHAR,
    legal_authority VARCHAR,
    data_elements VARCHAR[],
    record_count BIGINT,
    taxpayer_ref VARCHAR,
    channel VARCHAR,
    description VARCHAR
);
COMMENT ON TABLE report_shown_events IS 'The shown columns of the evidence rows the last report showed, by row id; valid while report_alert_rows_state holds. A cache: emptying it only makes the next report read the rows back again.';
