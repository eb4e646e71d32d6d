-- A case-by-case authority (individual requests for individual investigations) used in
-- bulk: one request naming more subjects than the threshold.
WITH per_request AS (
    SELECT e.request_id,
           min(e.authority_id) AS authority_id,
           min(e.recipient_agency) AS recipient_agency,
           min(e.disclosing_agency) AS disclosing_agency,
           min(e.actor_id) AS actor_id,
           min(e.source_system) AS source_system,
           list({'source_system': e.source_system, 'event_id': e.event_id}) AS event_keys,
           min(e.occurred_at) AS window_start,
           max(e.occurred_at) AS window_end,
           max(e.record_count) AS records_named
    FROM dw_events e
    WHERE list_contains($request_event_types, e.event_type) AND e.auth_case_by_case
      AND e.request_id IS NOT NULL
    GROUP BY e.request_id
),
items AS (
    SELECT request_id, count(DISTINCT coalesce(taxpayer_ref, CAST(item_no AS VARCHAR))) AS items_named
    FROM dw_items WHERE list_contains($request_event_types, carrier_event_type)
    GROUP BY request_id
)
SELECT p.request_id,
       p.request_id AS entity_id,
       p.authority_id, p.recipient_agency, p.disclosing_agency, p.actor_id, p.source_system,
       p.event_keys, p.window_start, p.window_end,
       greatest(p.records_named, coalesce(i.items_named, 0)) AS subjects_named,
       greatest(p.records_named, coalesce(i.items_named, 0)) AS records_affected,
       $max_subjects_per_request AS threshold,
       greatest(p.records_named, coalesce(i.items_named, 0)) / $max_subjects_per_request::DOUBLE AS score,
       list_concat($rule_citations, [p.authority_id]) AS citations
FROM per_request p LEFT JOIN items i ON i.request_id = p.request_id
WHERE greatest(p.records_named, coalesce(i.items_named, 0)) > $max_subjects_per_request
