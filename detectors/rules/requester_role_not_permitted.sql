-- Requests signed by someone whose role the cited authority does not accept as requester
-- (e.g. an assistant director where the head of the agency must sign), judged by the
-- registry's requester roles, which may depend on the recipient's category.
WITH roles AS (SELECT * FROM registry_authority_requester_roles)
SELECT e.actor_id,
       e.authority_id,
       e.recipient_code,
       e.actor_id AS entity_id,
       coalesce(min(e.actor_role), 'unstated') AS actor_role,
       min(e.disclosing_agency) AS disclosing_agency,
       min(e.recipient_agency) AS recipient_agency,
       min(e.source_system) AS source_system,
       list(e.event_id) AS event_ids,
       count(*) AS event_count,
       min(e.occurred_at) AS window_start,
       max(e.occurred_at) AS window_end,
       sum(e.record_count) AS records_affected,
       array_to_string(min(e.cited_authorities), '; ') AS authorities_cited,
       list_concat($rule_citations, flatten(list(DISTINCT e.cited_authorities))) AS citations
FROM dw_events e
WHERE list_contains($request_event_types, e.event_type)
  AND e.authority_id IN (SELECT authority_id FROM roles)
  AND NOT EXISTS (
      SELECT 1 FROM roles r
      WHERE r.authority_id = e.authority_id
        -- roles compared folded: "Head of Agency", "head-of-agency", "U.S. Attorney"
        AND regexp_replace(lower(r.role), '[^a-z0-9]+', '', 'g')
            = regexp_replace(lower(e.actor_role), '[^a-z0-9]+', '', 'g')
        AND (len(r.recipient_categories) + len(r.recipient_codes) = 0
             OR list_contains(r.recipient_codes, e.recipient_code)
             OR coalesce(list_contains(r.recipient_categories, e.recipient_category), false)))
GROUP BY e.actor_id, e.authority_id, e.recipient_code
