-- Issue 15 items 2 and 3 (and issue 13 item 6): a quarantined row keeps, beside its raw
-- form, every field the mapping could convert under its canonical name, so sequence and
-- coverage checks see it (it was logged, only malformed); a log without sequence numbers
-- loads, and is reported as not checkable for gaps instead of every row being quarantined.
ALTER TABLE quarantine ADD COLUMN IF NOT EXISTS canonical_row JSON;
COMMENT ON COLUMN quarantine.canonical_row IS 'The fields ingest could convert, under canonical names (identifiers pseudonymised); NULL where nothing was converted.';
ALTER TABLE disclosure_events ALTER COLUMN sequence_no DROP NOT NULL;

-- Quarantined event rows whose sequence number could not be read: they hold some number
-- of the log, but which one is unknown. The sequence rule counts them between neighbours.
CREATE OR REPLACE VIEW quarantine_unnumbered AS
SELECT q.ingest_run_id, q.source_row, q.reason_code,
       coalesce(q.canonical_row, CASE WHEN json_valid(q.raw_row) THEN q.raw_row::JSON END)
         ->> 'source_system' AS source_system
FROM quarantine q
WHERE q.stage = 'ingest' AND coalesce(q.kind, 'events') = 'events'
  AND q.reason_code NOT LIKE 'duplicate%'
  AND TRY_CAST(coalesce(q.canonical_row, CASE WHEN json_valid(q.raw_row) THEN q.raw_row::JSON END)
               ->> 'sequence_no' AS BIGINT) IS NULL;
COMMENT ON VIEW quarantine_unnumbered IS 'Quarantined events whose sequence number is unknown: each file holding them is coverage incomplete, and gaps they may fill are not reported.';

-- coverage_gaps (0008) plus two kinds of incompleteness ingest knows of without a
-- validation run: events carrying no sequence number (the log cannot be checked for
-- gaps) and files with quarantined events whose number is unknown.
CREATE OR REPLACE VIEW coverage_gaps AS
WITH latest AS (
    SELECT ingest_run_id, max_by(validation_run_id, validated_at) AS validation_run_id
    FROM validation_results
    GROUP BY ingest_run_id
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
FROM (SELECT ingest_run_id, any_value(source_system) AS source_system, count(*) AS n
      FROM quarantine_unnumbered GROUP BY ingest_run_id) u
JOIN ingest_runs r ON r.run_id = u.ingest_run_id
LEFT JOIN (SELECT ingest_run_id, any_value(source_system) AS source_system,
                  min(occurred_at) AS first_at, max(occurred_at) AS last_at
           FROM disclosure_events GROUP BY ingest_run_id) e
  ON e.ingest_run_id = u.ingest_run_id;
COMMENT ON VIEW coverage_gaps IS 'Sources and windows whose logs cannot be trusted to be complete: the latest validation of each batch, events without sequence numbers, and files with quarantined events of unknown number. Detection marks alerts that touch them.';
