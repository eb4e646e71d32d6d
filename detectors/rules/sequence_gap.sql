-- Missing sequence numbers within a source's log: entries deleted or never written.
-- Quarantined entries whose number could not be read (quarantine_unnumbered) sit between
-- the two neighbours in their file: they may hold the missing numbers, so a gap they can
-- fill is not reported (their file is reported as coverage incomplete instead).
SELECT source_system,
       sequence_no AS gap_after,
       source_system AS entity_id,
       [event_id, next_event] AS event_ids,
       2 AS event_count,
       occurred_at AS window_start,
       next_at AS window_end,
       next_no - sequence_no - 1 AS missing_entries,
       next_no AS gap_before,
       next_no - sequence_no - 1 AS records_affected
FROM dw_sequence_breaks b
WHERE next_no - sequence_no > 1
  AND next_no - sequence_no - 1 > (
      SELECT count(*) FROM quarantine_unnumbered u
      WHERE (u.ingest_run_id = b.ingest_run_id AND u.source_row > b.source_row
             AND (b.next_run IS DISTINCT FROM b.ingest_run_id OR u.source_row < b.next_row))
         OR (u.ingest_run_id = b.next_run AND b.next_run IS DISTINCT FROM b.ingest_run_id
             AND u.source_row < b.next_row))
