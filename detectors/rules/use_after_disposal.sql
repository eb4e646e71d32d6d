-- A use by the holder of a request's (else agreement's) data at a time when the holder has
-- logged as many disposals of that data as receipts of it: every delivery was destroyed.
-- (A standing request delivers many batches; destroying an old batch leaves newer ones.)
WITH timeline AS (
    SELECT *,
           sum(CASE WHEN event_type = 'receipt' THEN 1 ELSE 0 END) OVER w AS received,
           sum(CASE WHEN event_type = 'disposal' THEN 1 ELSE 0 END) OVER w AS disposed,
           max(CASE WHEN event_type = 'disposal' THEN occurred_at END) OVER w AS disposed_at,
           max(CASE WHEN event_type = 'disposal' THEN event_id END) OVER w AS disposal_event_id
    FROM dw_custody_events
    WHERE custody_key IS NOT NULL
    WINDOW w AS (PARTITION BY holder_code, custody_key ORDER BY occurred_at, event_type
                 ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
)
SELECT u.holder_code,
       u.custody_key,
       u.actor_id,
       u.actor_id AS entity_id,
       any_value(u.disclosing_code) AS disclosing_agency,
       any_value(u.recipient_code) AS recipient_agency,
       any_value(u.request_id) AS request_id,
       coalesce(any_value(u.request_id), 'agreement ' || u.custody_key) AS custody_label,
       any_value(u.source_system) AS source_system,
       list(u.event_id ORDER BY u.occurred_at) AS event_ids,
       count(*) AS event_count,
       min(u.occurred_at) AS window_start,
       max(u.occurred_at) AS window_end,
       nullif(count(DISTINCT u.taxpayer_ref), 0) AS subjects_affected,
       max(u.disposed_at) AS disposed_at,
       arg_max(u.disposal_event_id, u.disposed_at) AS disposal_event_id,
       $rule_citations AS citations
FROM timeline u
WHERE u.is_use AND u.disposed > 0 AND u.disposed >= u.received
GROUP BY u.holder_code, u.custody_key, u.actor_id
