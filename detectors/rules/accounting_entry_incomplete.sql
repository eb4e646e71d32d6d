-- Disclosure records lacking what the registry's accounting requirements demand of each
-- entry (date, nature, purpose, recipient). The fields come from the registry; each is
-- mapped to the canonical column that records it.
WITH required AS (
    SELECT list_distinct(flatten(list(accounting_fields))) AS fields,
           list(authority_id ORDER BY authority_id) AS requirement_ids
    FROM registry_authorities WHERE kind = 'accounting_requirement'
),
judged AS (
    SELECT e.*, q.requirement_ids,
           list_filter([
               CASE WHEN list_contains(q.fields, 'date') AND e.occurred_at IS NULL THEN 'date' END,
               CASE WHEN list_contains(q.fields, 'nature') AND len(e.data_elements) = 0
                         AND nullif(trim(e.description), '') IS NULL THEN 'nature' END,
               CASE WHEN list_contains(q.fields, 'purpose') AND nullif(trim(e.purpose), '') IS NULL THEN 'purpose' END,
               CASE WHEN list_contains(q.fields, 'recipient') AND nullif(trim(e.recipient_agency), '') IS NULL THEN 'recipient' END
           ], lambda x: x IS NOT NULL) AS missing
    FROM dw_events e CROSS JOIN required q
    WHERE e.is_disclosure
)
SELECT j.source_system,
       j.recipient_code,
       array_to_string(j.missing, ', ') AS missing_fields,
       j.source_system AS entity_id,
       min(j.disclosing_agency) AS disclosing_agency,
       min(j.recipient_agency) AS recipient_agency,
       list(j.event_id) AS event_ids,
       count(*) AS event_count,
       min(j.occurred_at) AS window_start,
       max(j.occurred_at) AS window_end,
       sum(j.record_count) AS records_affected,
       min(j.requirement_ids) AS citations
FROM judged j
WHERE len(j.missing) > 0
GROUP BY j.source_system, j.recipient_code, array_to_string(j.missing, ', ')
