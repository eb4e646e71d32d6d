-- Entries timed earlier than entries before them in the log's own sequence by more than
-- the tolerance (late entries within it are ordinary logging lag). A back-dated run starts
-- where the time steps back past the tolerance; every later entry of that log timed before
-- the start's predecessor (less the tolerance) is behind it too. One finding per source
-- and month.
WITH starts AS (
    SELECT source_system, sequence_no, prev_at
    FROM dw_sequence_breaks
    WHERE epoch(prev_at) - epoch(occurred_at) > $tolerance_seconds
),
backwards AS (
    SELECT e.source_system, e.event_id, e.occurred_at,
           max(s.prev_at) AS latest_before,
           max(epoch(s.prev_at) - epoch(e.occurred_at)) AS behind_seconds
    FROM disclosure_events e
    JOIN starts s
      ON e.source_system = s.source_system AND e.sequence_no >= s.sequence_no
     AND epoch(s.prev_at) - epoch(e.occurred_at) > $tolerance_seconds
    GROUP BY e.source_system, e.event_id, e.occurred_at
)
SELECT source_system,
       strftime(date_trunc('month', occurred_at), '%Y-%m') AS month,
       source_system AS entity_id,
       list(event_id) AS event_ids,
       count(*) AS event_count,
       min(occurred_at) AS window_start,
       max(latest_before) AS window_end,
       round(max(behind_seconds) / 86400.0, 1) AS max_days_behind,
       round($tolerance_seconds / 86400.0, 1) AS tolerance_days
FROM backwards
GROUP BY source_system, strftime(date_trunc('month', occurred_at), '%Y-%m')
