-- One official attesting to being personally and directly engaged in an implausible
-- number of investigations: the subjects named across all case-by-case requests they
-- signed (each subject is one investigation attested).
WITH requests AS (
    SELECT e.* FROM dw_events e
    WHERE list_contains($request_event_types, e.event_type) AND e.auth_case_by_case
),
items AS (
    SELECT request_id, count(DISTINCT coalesce(taxpayer_ref, CAST(item_no AS VARCHAR))) AS items_named
    FROM dw_items WHERE list_contains($request_event_types, carrier_event_type)
    GROUP BY request_id
),
per_request AS (
    -- one official however the log cases or pads the id ("JSmith", "jsmith ")
    SELECT lower(trim(r.actor_id)) AS actor_id, r.request_id, any_value(r.actor_role) AS actor_role,
           any_value(r.recipient_agency) AS recipient_agency, any_value(r.recipient_code) AS recipient_code,
           any_value(r.authority_id) AS authority_id, any_value(r.source_system) AS source_system,
           list(r.event_id) AS event_ids, min(r.occurred_at) AS t0, max(r.occurred_at) AS t1,
           greatest(max(r.record_count), coalesce(any_value(i.items_named), 0)) AS attested
    FROM requests r LEFT JOIN items i ON i.request_id = r.request_id
    GROUP BY lower(trim(r.actor_id)), r.request_id
)
SELECT p.actor_id,
       p.actor_id AS entity_id,
       coalesce(any_value(p.actor_role), 'unstated') AS actor_role,
       any_value(p.recipient_agency) AS recipient_agency,
       any_value(p.source_system) AS source_system,
       flatten(list(p.event_ids)) AS event_ids,
       min(p.t0) AS window_start,
       max(p.t1) AS window_end,
       count(*) AS requests_signed,
       sum(p.attested) AS investigations_attested,
       $max_investigations_per_official AS threshold,
       sum(p.attested) / $max_investigations_per_official::DOUBLE AS score,
       list_concat($rule_citations, list(DISTINCT p.authority_id)) AS citations
FROM per_request p
GROUP BY p.actor_id
HAVING sum(p.attested) > $max_investigations_per_official
