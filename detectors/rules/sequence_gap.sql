-- Missing sequence numbers within a source's log: entries deleted or never written.
WITH ordered AS (
    SELECT source_system, sequence_no, event_id, occurred_at,
           lead(sequence_no) OVER w AS next_no,
           lead(event_id) OVER w AS next_event,
           lead(occurred_at) OVER w AS next_at
    FROM disclosure_events
    WINDOW w AS (PARTITION BY source_system ORDER BY sequence_no, occurred_at)
)
SELECT source_system,
       sequence_no AS gap_after,
       source_system AS entity_id,
       source_system AS source_system,
       [event_id, next_event] AS event_ids,
       2 AS event_count,
       occurred_at AS window_start,
       next_at AS window_end,
       next_no - sequence_no - 1 AS missing_entries,
       next_no AS gap_before,
       next_no - sequence_no - 1 AS records_affected
FROM ordered
WHERE next_no - sequence_no > 1
