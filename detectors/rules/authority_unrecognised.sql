-- Disclosures citing something that is not a registered authority: well-formed but
-- unknown to the registry, or not a citation at all (malformed).
SELECT e.recipient_code,
       e.legal_authority,
       e.citation_status,
       e.recipient_code AS entity_id,
       any_value(e.disclosing_agency) AS disclosing_agency,
       any_value(e.recipient_agency) AS recipient_agency,
       any_value(e.source_system) AS source_system,
       list(e.event_id) AS event_ids,
       count(*) AS event_count,
       min(e.occurred_at) AS window_start,
       max(e.occurred_at) AS window_end,
       sum(e.record_count) AS records_affected
FROM dw_events e
WHERE e.is_disclosure AND e.citation_status IN ('unknown', 'malformed')
GROUP BY e.recipient_code, e.legal_authority, e.citation_status
