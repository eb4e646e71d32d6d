-- Disclosures, receipts and uses for a stated purpose the cited authority does not allow
-- (e.g. a civil purpose under an authority limited to criminal investigations). The
-- recipient's own log of why it holds the data counts as much as the discloser's. The
-- purpose is compared as a code ("State Tax Administration" = state_tax_administration).
SELECT e.recipient_code,
       e.authority_id,
       e.purpose_code AS purpose,
       e.is_disclosure,
       CASE WHEN e.is_disclosure THEN 'disclosed to' ELSE 'received or used by' END AS conduct,
       e.recipient_code AS entity_id,
       min(e.disclosing_agency) AS disclosing_agency,
       min(e.recipient_agency) AS recipient_agency,
       min(e.source_system) AS source_system,
       list({'source_system': e.source_system, 'event_id': e.event_id}) AS event_keys,
       count(*) AS event_count,
       min(e.occurred_at) AS window_start,
       max(e.occurred_at) AS window_end,
       sum(e.record_count) AS records_affected,
       nullif(count(DISTINCT e.taxpayer_ref), 0) AS subjects_affected,
       array_to_string(min(e.auth_purposes), ', ') AS permitted,
       array_to_string(min(e.cited_authorities), '; ') AS authorities_cited,
       list_concat($rule_citations, flatten(list(DISTINCT e.cited_authorities))) AS citations
FROM dw_events e
WHERE list_contains($event_types, e.event_type) AND e.citation_status = 'ok' AND e.auth_kind = 'disclosure_authority'
  AND e.purpose_code IS NOT NULL
  AND len(e.auth_purposes) > 0 AND NOT list_contains(e.auth_purposes, e.purpose_code)
GROUP BY e.recipient_code, e.authority_id, e.purpose_code, e.is_disclosure
