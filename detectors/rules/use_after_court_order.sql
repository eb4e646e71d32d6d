-- Uses (access, redisclosure: the registry's use event types) of restrained data by a
-- restrained holder while an order binds. One finding per order, holder and actor.
SELECT h.order_id,
       h.restrained_code,
       h.actor_id,
       h.actor_id AS entity_id,
       min(h.disclosing_agency) AS disclosing_agency,
       min(h.recipient_agency) AS recipient_agency,
       min(h.source_system) AS source_system,
       list({'source_system': h.source_system, 'event_id': h.event_id}) AS event_keys,
       count(*) AS event_count,
       min(h.occurred_at) AS window_start,
       max(h.occurred_at) AS window_end,
       sum(h.record_count) AS records_affected,
       nullif(count(DISTINCT h.taxpayer_ref), 0) AS subjects_affected,
       string_agg(DISTINCT h.event_type, ', ' ORDER BY h.event_type) AS uses,
       list_concat($rule_citations, [min(h.order_id)], list(DISTINCT h.authority_id)) AS citations,
       min(h.order_case) AS order_case,
       min(h.order_court) AS order_court,
       min(h.order_docket) AS order_docket,
       min(h.order_issued) AS order_issued,
       min(h.restraint_description) AS restraint,
       -- where the order's words are ambiguous, the reading the registry chose
       coalesce(' (as read here: ' || min(h.restraint_reading) || ')', '') AS reading_used
FROM dw_order_hits h
WHERE h.is_use
GROUP BY h.order_id, h.restrained_code, h.actor_id
