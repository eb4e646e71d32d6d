-- Disclosures under an authority that requires a court order (an ex parte order) where
-- the record carries no order or case number (blank, or a placeholder such as "N/A" or
-- "pending": the registry's missing_value_placeholders).
SELECT e.recipient_code,
       e.authority_id,
       coalesce(e.request_id, e.event_id) AS request_key,
       e.recipient_code AS entity_id,
       min(e.disclosing_agency) AS disclosing_agency,
       min(e.recipient_agency) AS recipient_agency,
       min(e.request_id) AS request_id,
       min(e.source_system) AS source_system,
       list(e.event_id) AS event_ids,
       count(*) AS event_count,
       min(e.occurred_at) AS window_start,
       max(e.occurred_at) AS window_end,
       sum(e.record_count) AS records_affected,
       list_concat($rule_citations, [e.authority_id]) AS citations
FROM dw_events e
WHERE e.is_disclosure AND e.auth_requires_court_order
  AND NOT e.case_number_given
GROUP BY e.recipient_code, e.authority_id, coalesce(e.request_id, e.event_id)
