-- A use kept narrow in the custody state (issue 18): rule_custody_events holds every
-- receipt, disposal and use, and uses are nearly every event of a store (92% at 10M).
-- Custody reads a use whole only when its data was emptied before it (a handful), so a
-- use is kept by its time, holder and custody key and where it lies in disclosure_events
-- (event_row, its row id; its other columns NULL), and read back whole by that row id when
-- judged (detectors.custody). Receipts and disposals stay whole (event_row NULL). A state
-- kept before this is rebuilt by the next run (its code version changed).
ALTER TABLE rule_custody_events ADD COLUMN IF NOT EXISTS event_row BIGINT;
COMMENT ON COLUMN rule_custody_events.event_row IS 'A use kept narrow: its row id in disclosure_events (its other columns are read back by it); NULL for a row kept whole.';
