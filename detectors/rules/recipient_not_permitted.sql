-- Disclosures to a recipient the cited authority does not name, by category or code.
-- A recipient the registry cannot place (no category) is not shown to be permitted.
SELECT e.recipient_code,
       e.authority_id,
       e.recipient_code AS entity_id,
       coalesce(min(e.recipient_category), 'unrecognised') AS recipient_category,
       min(e.disclosing_agency) AS disclosing_agency,
       min(e.recipient_agency) AS recipient_agency,  -- one spelling of several, the same every run
       min(e.source_system) AS source_system,
       list({'source_system': e.source_system, 'event_id': e.event_id}) AS event_keys,
       count(*) AS event_count,
       min(e.occurred_at) AS window_start,
       max(e.occurred_at) AS window_end,
       sum(e.record_count) AS records_affected,
       nullif(count(DISTINCT e.taxpayer_ref), 0) AS subjects_affected,
       array_to_string(list_concat(min(e.auth_recipient_categories), min(e.auth_recipient_codes)), ', ') AS permitted,
       array_to_string(min(e.cited_authorities), '; ') AS authorities_cited,
       list_concat($rule_citations, flatten(list(DISTINCT e.cited_authorities))) AS citations
FROM dw_events e
WHERE e.is_disclosure AND e.citation_status = 'ok' AND e.auth_kind = 'disclosure_authority'
  AND len(e.auth_recipient_categories) + len(e.auth_recipient_codes) > 0
  AND NOT (list_contains(e.auth_recipient_codes, e.recipient_code)
           OR coalesce(list_contains(e.auth_recipient_categories, e.recipient_category), false))
GROUP BY e.recipient_code, e.authority_id
