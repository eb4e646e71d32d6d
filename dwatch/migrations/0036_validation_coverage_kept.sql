-- What a validation run keeps of each events batch it checks, per source (issue 18), so a
-- later run that checks an old batch again for its open coverage gaps reads the rows near
-- those gaps and the new rows, not the old batch whole.
--
-- A sequence gap or a silence of an old batch can only close or split when rows arrive
-- inside it; what passed stays passed, except that a silence limit can shrink as the
-- source's rhythm changes. So beside the open gaps (validation_results) a run keeps, per
-- batch and source, the rows checked, their time window, and the longest stretch between
-- consecutive events within the batch's bounds that passed the silence check (an upper
-- bound: NULL when not known) with the bounds it lies within (the batch's time span widened
-- to its source's nearest events loaded before it). A later run reuses it while nothing else changed the
-- source (see dwatch.validate.revisits); otherwise it reads the batch as before. Only the
-- latest check of each batch is kept.
CREATE TABLE IF NOT EXISTS validation_coverage_kept (
    ingest_run_id VARCHAR NOT NULL,
    source_system VARCHAR,
    validation_run_id VARCHAR NOT NULL,
    run_started_at TIMESTAMPTZ NOT NULL,
    rows_checked BIGINT NOT NULL,
    window_start TIMESTAMPTZ,
    window_end TIMESTAMPTZ,
    silence_pass_max DOUBLE,
    bound_lo TIMESTAMPTZ,
    bound_hi TIMESTAMPTZ
);
COMMENT ON TABLE validation_coverage_kept IS 'Per events batch and source, as last validated: rows checked, time window, and the longest stretch that passed the silence check (seconds, an upper bound); lets a revisit for open coverage gaps read only rows near them.';

-- coverage_gaps (0013) read every event to give each file with unnumbered quarantined
-- events its window, in every query of the view (several a run), even with no such file:
-- the windows are now computed for those files' events only. Same rows.
CREATE OR REPLACE VIEW coverage_gaps AS
WITH latest AS (
    SELECT ingest_run_id, max_by(validation_run_id, validated_at) AS validation_run_id
    FROM validation_results
    GROUP BY ingest_run_id
),
unnumbered AS (
    SELECT ingest_run_id, any_value(source_system) AS source_system, count(*) AS n
    FROM quarantine_unnumbered GROUP BY ingest_run_id
)
SELECT v.source_system, v.window_start, v.window_end, v.expectation, v.message,
       v.validation_run_id, v.ingest_run_id
FROM validation_results v
JOIN latest l
  ON l.validation_run_id = v.validation_run_id
 AND l.ingest_run_id IS NOT DISTINCT FROM v.ingest_run_id
WHERE NOT v.success AND v.scope = 'batch'
UNION ALL
SELECT source_system, min(occurred_at), max(occurred_at), 'sequence_not_checkable',
       count(*) || ' event(s) of ' || source_system || ' carry no sequence number: this part'
       || ' of the log cannot be checked for missing entries',
       NULL, ingest_run_id
FROM disclosure_events
WHERE sequence_no IS NULL
GROUP BY source_system, ingest_run_id
UNION ALL
SELECT coalesce(u.source_system, e.source_system, r.source_system), e.first_at, e.last_at,
       'quarantined_unnumbered',
       u.n || ' quarantined event(s) of ' || r.source_file || ' have no readable sequence'
       || ' number: gaps they may fill are not reported, and the file is coverage incomplete',
       NULL, u.ingest_run_id
FROM unnumbered u
JOIN ingest_runs r ON r.run_id = u.ingest_run_id
LEFT JOIN (SELECT ingest_run_id, any_value(source_system) AS source_system,
                  min(occurred_at) AS first_at, max(occurred_at) AS last_at
           FROM disclosure_events
           WHERE ingest_run_id IN (SELECT ingest_run_id FROM unnumbered)
           GROUP BY ingest_run_id) e
  ON e.ingest_run_id = u.ingest_run_id;
COMMENT ON VIEW coverage_gaps IS 'Sources and windows whose logs cannot be trusted to be complete: the latest validation of each batch, events without sequence numbers, and files with quarantined events of unknown number. Detection marks alerts that touch them.';
