-- The same entry recorded twice: event ids quarantined as duplicates (at ingest or by the
-- validation gate; the reason codes are data, $duplicate_reasons), and distinct ids that
-- reuse one sequence number within a source.
WITH quarantined AS (
    SELECT coalesce(try(json_extract_string(raw_row, '$.source_system')), source_file) AS source_system,
           coalesce(try(json_extract_string(raw_row, '$.event_id')), source_file || ':' || source_row) AS event_id,
           quarantined_at
    FROM quarantine
    WHERE list_contains($duplicate_reasons, reason_code)
      -- a repeated request-item key is not a repeated log entry
      AND coalesce(kind, 'events') <> 'request_items'
),
reused_sequence AS (
    SELECT source_system, sequence_no, list(event_id) AS ids, min(occurred_at) AS t0, max(occurred_at) AS t1
    FROM dw_sequence_breaks
    WHERE prev_no = sequence_no OR next_no = sequence_no
    GROUP BY source_system, sequence_no
),
findings AS (
    SELECT source_system, 'duplicate event id' AS kind, list(DISTINCT event_id) AS event_ids,
           count(*) AS duplicates, NULL::TIMESTAMPTZ AS t0, NULL::TIMESTAMPTZ AS t1
    FROM quarantined GROUP BY source_system
    UNION ALL
    SELECT source_system, 'reused sequence number', flatten(list(ids)), count(*), min(t0), max(t1)
    FROM reused_sequence GROUP BY source_system
)
SELECT f.source_system,
       f.kind,
       f.source_system AS entity_id,
       f.event_ids,
       f.duplicates AS event_count,
       f.duplicates AS records_affected,
       coalesce(f.t0, (SELECT min(e.occurred_at) FROM disclosure_events e
                        WHERE e.source_system = f.source_system AND list_contains(f.event_ids, e.event_id))) AS window_start,
       coalesce(f.t1, (SELECT max(e.occurred_at) FROM disclosure_events e
                        WHERE e.source_system = f.source_system AND list_contains(f.event_ids, e.event_id))) AS window_end
FROM findings f
