-- A use by the holder of a request's (else agreement's) data at a time when the holder has
-- logged as many disposals of that data as receipts of it: every delivery was destroyed.
-- (A standing request delivers many batches; destroying an old batch leaves newer ones.)
-- The running counts are taken over receipts and disposals only (few), and each use finds
-- the count in force before it with an as-of join, so the many uses are not windowed.
-- A use that names a taxpayer draws on what the holder holds of that person: when the
-- person's data reached the holder again after the disposal (a disclosure or receipt naming
-- them, or carrying a request item that names them, under any request), the use reads that
-- later delivery, not the destroyed one.
-- The uses by then emptied (their running counts, the disposal in force) are found once per
-- run, with the custody tables: dw_custody_emptied (detectors.custody).
WITH emptied AS (
    SELECT * FROM dw_custody_emptied
),
named AS (
    SELECT DISTINCT taxpayer_ref FROM emptied WHERE taxpayer_ref IS NOT NULL
),
-- deliveries to anyone of the named taxpayers' data, by the person they name or by an item
deliveries AS (
    SELECT e.recipient_code AS delivered_to, e.taxpayer_ref, e.occurred_at
    FROM dw_events e SEMI JOIN named n ON n.taxpayer_ref = e.taxpayer_ref
    WHERE (e.is_disclosure OR e.event_type IN ('receipt', 'redisclosure'))
      AND NOT list_contains((SELECT not_done FROM dw_custody_outcomes), coalesce(e.outcome, ''))
    UNION ALL
    SELECT e.recipient_code, i.taxpayer_ref, e.occurred_at
    FROM dw_items i SEMI JOIN named n ON n.taxpayer_ref = i.taxpayer_ref
    JOIN dw_events e ON e.event_id = i.event_id AND e.source_system = i.carrier_source_system
    WHERE (e.is_disclosure OR e.event_type IN ('receipt', 'redisclosure'))
      AND NOT list_contains((SELECT not_done FROM dw_custody_outcomes), coalesce(e.outcome, ''))
),
after_disposal AS (
    SELECT u.* FROM emptied u
    ANTI JOIN deliveries d
      ON d.delivered_to = u.holder_code AND d.taxpayer_ref = u.taxpayer_ref
     AND d.occurred_at > u.disposed_at AND d.occurred_at < u.occurred_at
)
SELECT u.holder_code,
       u.custody_key,
       u.actor_id,
       u.actor_id AS entity_id,
       min(u.disclosing_code) AS disclosing_agency,
       min(u.recipient_code) AS recipient_agency,
       min(u.request_id) AS request_id,
       coalesce(min(u.request_id), 'agreement ' || u.custody_key) AS custody_label,
       min(u.source_system) AS source_system,
       list(u.event_id ORDER BY u.occurred_at) AS event_ids,
       count(*) AS event_count,
       min(u.occurred_at) AS window_start,
       max(u.occurred_at) AS window_end,
       nullif(count(DISTINCT u.taxpayer_ref), 0) AS subjects_affected,
       max(u.disposed_at) AS disposed_at,
       arg_max(u.disposal_event_id, u.disposed_at) AS disposal_event_id,
       $rule_citations AS citations
FROM after_disposal u
GROUP BY u.holder_code, u.custody_key, u.actor_id
