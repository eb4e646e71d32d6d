-- Disclosures that a court order binding at the event's time restrains (dw_order_hits
-- already applied the order's status history, scope and exceptions). One finding per
-- order, recipient and request; subjects are counted per taxpayer by the engine (rule
-- subjects: from disclosed - the taxpayers the restrained disclosures and their items name).
WITH hits AS (
    SELECT * FROM dw_order_hits WHERE is_disclosure
)
SELECT h.order_id,
       h.recipient_code,
       coalesce(h.request_id, h.event_id) AS request_key,
       h.recipient_code AS entity_id,
       min(h.disclosing_agency) AS disclosing_agency,
       min(h.recipient_agency) AS recipient_agency,
       min(h.request_id) AS request_id,
       min(h.source_system) AS source_system,
       list({'source_system': h.source_system, 'event_id': h.event_id}) AS event_keys,
       count(*) AS event_count,
       min(h.occurred_at) AS window_start,
       max(h.occurred_at) AS window_end,
       sum(h.record_count) AS records_affected,
       list_concat($rule_citations, [min(h.order_id)], list(DISTINCT h.authority_id)) AS citations,
       coalesce(string_agg(DISTINCT h.legal_authority, '; ' ORDER BY h.legal_authority), 'no stated authority') AS authorities_cited,
       min(h.order_case) AS order_case,
       min(h.order_court) AS order_court,
       min(h.order_docket) AS order_docket,
       min(h.order_issued) AS order_issued,
       replace(min(h.order_status), '_', ' ') AS order_status,
       min(h.restraint_description) AS restraint,
       -- where the order's words are ambiguous, the reading the registry chose
       coalesce(' (as read here: ' || min(h.restraint_reading) || ')', '') AS reading_used
FROM hits h
GROUP BY h.order_id, h.recipient_code, coalesce(h.request_id, h.event_id)
