-- Missing sequence numbers within a source's log: entries deleted or never written.
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
FROM dw_sequence_breaks
WHERE next_no - sequence_no > 1
