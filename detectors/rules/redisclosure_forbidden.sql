-- Redisclosures of data received under an authority that forbids redisclosure. The
-- authority is the one the redisclosure cites, else the one its request was disclosed under.
WITH origin AS (
    SELECT request_id, min(authority_id) AS authority_id
    FROM dw_events
    WHERE is_disclosure AND request_id IS NOT NULL AND authority_id IS NOT NULL
    GROUP BY request_id
),
judged AS (
    SELECT e.*, coalesce(e.authority_id, o.authority_id) AS governing_authority
    FROM dw_events e LEFT JOIN origin o ON o.request_id = e.request_id
    WHERE list_contains($redisclosure_event_types, e.event_type)
)
SELECT j.disclosing_code AS holder_code,
       j.recipient_code,
       j.governing_authority,
       j.disclosing_code AS entity_id,
       min(j.disclosing_agency) AS disclosing_agency,
       min(j.recipient_agency) AS recipient_agency,
       min(j.source_system) AS source_system,
       min(j.request_id) AS request_id,
       list({'source_system': j.source_system, 'event_id': j.event_id}) AS event_keys,
       count(*) AS event_count,
       min(j.occurred_at) AS window_start,
       max(j.occurred_at) AS window_end,
       sum(j.record_count) AS records_affected,
       nullif(count(DISTINCT j.taxpayer_ref), 0) AS subjects_affected,
       list_concat($rule_citations, [j.governing_authority]) AS citations
FROM judged j JOIN registry_authorities a ON a.authority_id = j.governing_authority
WHERE NOT a.redisclosure_allowed
GROUP BY j.disclosing_code, j.recipient_code, j.governing_authority
