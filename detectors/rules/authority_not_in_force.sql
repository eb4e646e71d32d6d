-- Requests and disclosures citing a registered authority that was not in force at the event's time,
-- or that is not a disclosure authority at all (a confidentiality rule, an accounting or
-- safeguards requirement).
SELECT e.recipient_code,
       e.authority_id,
       CASE WHEN e.auth_kind <> 'disclosure_authority'
            THEN e.authority_id || ' (' || e.auth_title || ') authorizes no disclosure'
            ELSE e.authority_id || ' (' || e.auth_title || ') was not in force'
                 || coalesce(' before ' || strftime(e.auth_effective_from, '%Y-%m-%d'), '')
                 || coalesce(' or after ' || strftime(e.auth_effective_to, '%Y-%m-%d'), '')
       END AS defect,
       e.recipient_code AS entity_id,
       string_agg(DISTINCT e.event_type, ' and ' ORDER BY e.event_type) AS event_kinds,
       array_to_string(min(e.cited_authorities), '; ') AS authorities_cited,
       min(e.disclosing_agency) AS disclosing_agency,
       min(e.recipient_agency) AS recipient_agency,
       min(e.source_system) AS source_system,
       list(e.event_id) AS event_ids,
       count(*) AS event_count,
       min(e.occurred_at) AS window_start,
       max(e.occurred_at) AS window_end,
       sum(e.record_count) AS records_affected,
       list_concat($rule_citations, flatten(list(DISTINCT e.cited_authorities))) AS citations
FROM dw_events e
WHERE list_contains($event_types, e.event_type) AND e.citation_status = 'ok'
  AND (e.auth_kind <> 'disclosure_authority' OR NOT e.auth_in_force)
GROUP BY ALL
