-- Disclosures whose log states no legal authority at all (blank, or a registry
-- "missing citation" placeholder such as N/A).
SELECT e.recipient_code,
       e.disclosing_code,
       coalesce(e.request_id, e.source_system || ':' || strftime(e.occurred_at, '%Y-%m-%d')) AS batch_key,
       e.recipient_code AS entity_id,
       min(e.disclosing_agency) AS disclosing_agency,
       min(e.recipient_agency) AS recipient_agency,
       min(e.request_id) AS request_id,
       min(e.source_system) AS source_system,
       list({'source_system': e.source_system, 'event_id': e.event_id}) AS event_keys,
       count(*) AS event_count,
       min(e.occurred_at) AS window_start,
       max(e.occurred_at) AS window_end,
       sum(e.record_count) AS records_affected,
       nullif(count(DISTINCT e.taxpayer_ref), 0) AS subjects_affected
FROM dw_events e
WHERE e.is_disclosure AND e.citation_status = 'missing'
GROUP BY e.recipient_code, e.disclosing_code,
         coalesce(e.request_id, e.source_system || ':' || strftime(e.occurred_at, '%Y-%m-%d'))
