-- Entries whose time goes backwards against the log's own sequence by more than the
-- tolerance (late entries within it are ordinary logging lag). One finding per source and
-- month.
WITH ordered AS (
    SELECT source_system, sequence_no, event_id, occurred_at,
           max(occurred_at) OVER (PARTITION BY source_system ORDER BY sequence_no
                                  ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS latest_before
    FROM disclosure_events
),
backwards AS (
    SELECT *, epoch(latest_before) - epoch(occurred_at) AS behind_seconds
    FROM ordered
    WHERE epoch(latest_before) - epoch(occurred_at) > $tolerance_seconds
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
