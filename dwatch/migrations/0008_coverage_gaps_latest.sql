-- coverage_gaps speaks for the latest validation of each batch (and of the store-wide
-- checks), not for every validation ever run: a gap that a late file filled, or a source
-- that resumed, stops flagging alerts once the batch is validated again.
-- validation_results keeps every outcome; only the view changes (owner: dwatch.validate).
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
WHERE NOT v.success AND v.scope = 'batch';
COMMENT ON VIEW coverage_gaps IS 'Sources and windows whose logs cannot be trusted to be complete, per the latest validation of each batch. Detection marks alerts that touch them.';
