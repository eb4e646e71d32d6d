-- Entries timed earlier than entries before them in the log's own sequence, judged against
-- that log's own lateness. A step back whose next entry is in order again is an isolated
-- late entry: the log's isolated steps give its usual lateness (their $lateness_quantile).
-- The entries being judged must not set the bar that judges them, so that quantile is
-- learned only from the log's habitual late entries: those within $habit_fence_mads scaled
-- median absolute deviations of the median lateness (on a log scale: lateness spans
-- minutes to days), and it is capped at the lateness that at least $habit_support of them
-- reach (one entry alone is no habit). A few entries days late in a log late by minutes
-- are outliers, not its habit.
-- An isolated entry is out of order beyond the longer of $isolated_floor_seconds and
-- $isolated_factor x that usual lateness; a contiguous run of $min_run or more entries
-- behind (a replayed or back-dated batch), longer than the log's late entries line up by
-- chance, beyond the longer of $run_floor_seconds and $run_factor x it. A run starts where the time steps back; every later entry of the log
-- timed before the start's predecessor (less the tolerance) is behind it too. One finding
-- per source and month, quoting the learned figures.
WITH steps AS (
    SELECT source_system, sequence_no, prev_at,
           epoch(prev_at) - epoch(occurred_at) AS back_seconds,
           ln(greatest(epoch(prev_at) - epoch(occurred_at), 1)) AS log_back,
           next_at IS NULL OR next_at >= prev_at AS isolated
    FROM dw_sequence_breaks
    WHERE occurred_at < prev_at
),
centre AS (
    SELECT source_system, median(log_back) AS med
    FROM steps WHERE isolated GROUP BY source_system
),
spread AS (
    SELECT s.source_system, c.med, median(abs(s.log_back - c.med)) AS mad
    FROM steps s JOIN centre c USING (source_system)
    WHERE s.isolated GROUP BY s.source_system, c.med
),
habitual AS (
    SELECT s.source_system, s.back_seconds,
           row_number() OVER (PARTITION BY s.source_system ORDER BY s.back_seconds DESC) AS rank_desc
    FROM steps s JOIN spread d USING (source_system)
    WHERE s.isolated AND s.log_back <= d.med + $habit_fence_mads * 1.4826 * d.mad
),
habit AS (
    SELECT source_system, count(*) AS habitual_steps,
           least(quantile_cont(back_seconds, $lateness_quantile),
                 coalesce(max(back_seconds) FILTER (WHERE rank_desc >= $habit_support), 0))
               AS usual_late_seconds
    FROM habitual GROUP BY source_system
),
learned AS (
    SELECT s.source_system,
           count(*) FILTER (WHERE s.isolated) AS isolated_steps,
           coalesce(min(h.habitual_steps), 0) AS habitual_steps,
           coalesce(min(h.usual_late_seconds), 0) AS usual_late_seconds
    FROM steps s LEFT JOIN habit h USING (source_system)
    GROUP BY s.source_system
),
-- Rows late on their own line up by chance: in a log of n entries of which a share p are
-- late, the longest run of neighbours all late is about log(n) / log(1/p) entries. A run
-- no longer than that is judged as isolated entries; only a longer one meets the run bar.
sizes AS (  -- each log's numbered events (kept between runs: detectors.rule_state)
    SELECT source_system, entries
    FROM dw_log_sizes
    WHERE source_system IN (SELECT source_system FROM learned)
),
limits AS (
    SELECT l.source_system, isolated_steps, habitual_steps, usual_late_seconds,
           greatest($isolated_floor_seconds, $isolated_factor * usual_late_seconds, 0)
               AS isolated_tolerance,
           greatest($run_floor_seconds, $run_factor * usual_late_seconds, 0) AS run_tolerance,
           CASE WHEN isolated_steps = 0 OR z.entries <= isolated_steps THEN 0.0
                ELSE ln(z.entries) / ln(z.entries / isolated_steps) END AS chance_run
    FROM learned l JOIN sizes z USING (source_system)
),
starts AS (
    SELECT s.source_system, s.sequence_no, s.prev_at, l.*
    FROM steps s JOIN limits l USING (source_system)
    WHERE s.back_seconds > least(l.isolated_tolerance, l.run_tolerance)
),
-- An entry is behind a start when numbered at or after it and timed before its predecessor
-- by more than the start's tolerance (never below nothing). A start's predecessor is numbered before it (two
-- entries of one number are ordered by time), so such an entry lies after that predecessor
-- in the log's order and is timed before it: it is behind the latest entry before it. The
-- log-order state keeps exactly those entries (dw_log_behind, few, kept between runs), and
-- pairing them alone with the starts judges as pairing every entry of the log would.
near AS (
    SELECT source_system, event_id, occurred_at, sequence_no
    FROM dw_log_behind
),
behind AS (
    SELECT e.source_system, e.event_id, e.occurred_at, s.sequence_no AS start_no, s.prev_at,
           epoch(s.prev_at) - epoch(e.occurred_at) AS behind_seconds,
           s.isolated_tolerance, s.run_tolerance, s.usual_late_seconds, s.isolated_steps,
           s.habitual_steps, s.chance_run
    FROM near e
    JOIN starts s
      ON e.source_system = s.source_system AND e.sequence_no >= s.sequence_no
     AND epoch(s.prev_at) - epoch(e.occurred_at) > least(s.isolated_tolerance, s.run_tolerance)
),
runs AS (
    SELECT *, count(*) OVER (PARTITION BY source_system, start_no) AS run_length
    FROM behind
),
backwards AS (
    SELECT source_system, event_id, occurred_at,
           max(prev_at) AS latest_before, max(behind_seconds) AS behind_seconds,
           max(run_length) AS run_length, min(usual_late_seconds) AS usual_late_seconds,
           min(isolated_steps) AS isolated_steps,
           min(habitual_steps) AS habitual_steps,
           min(isolated_tolerance) AS isolated_tolerance,
           min(run_tolerance) AS run_tolerance,
           min(chance_run) AS chance_run
    FROM runs
    WHERE (run_length >= $min_run AND run_length > chance_run
           AND behind_seconds > run_tolerance)
       OR behind_seconds > isolated_tolerance
    GROUP BY source_system, event_id, occurred_at
)
SELECT source_system,
       strftime(date_trunc('month', occurred_at), '%Y-%m') AS month,
       source_system AS entity_id,
       list(event_id) AS event_ids,
       count(*) AS event_count,
       min(occurred_at) AS window_start,
       max(latest_before) AS window_end,
       round(max(behind_seconds) / 3600.0, 1) AS max_hours_behind,
       max(run_length) AS longest_run,
       min(isolated_steps) AS isolated_late_entries,
       min(isolated_steps) - min(habitual_steps) AS outlying_late_entries,
       round(min(usual_late_seconds) / 3600.0, 2) AS usual_late_hours,
       round(min(run_tolerance) / 3600.0, 1) AS run_tolerance_hours,
       round(min(isolated_tolerance) / 3600.0, 1) AS isolated_tolerance_hours,
       round(min(chance_run), 1) AS chance_run
FROM backwards
GROUP BY source_system, strftime(date_trunc('month', occurred_at), '%Y-%m')
