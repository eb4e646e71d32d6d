-- Requests and disclosures made under a registered agreement that, at the event's time,
-- was not yet or no longer in effect, was suspended (by its own status or by a court
-- order that binds then), or does not cover the parties or the authority cited.
-- Agreements the registry does not hold cannot be judged here.
WITH judged AS (
    SELECT e.*, g.title AS agreement_title, g.parties, g.authorities AS agreement_authorities,
           g.effective_from AS g_from, g.effective_to AS g_to,
           (SELECT min(st.status || ' since ' || strftime(st.valid_from, '%Y-%m-%d'))
              FROM registry_agreement_status st
             WHERE st.agreement_id = g.agreement_id AND st.status <> 'in_force'
               AND e.occurred_at >= st.valid_from AND (st.valid_to IS NULL OR e.occurred_at < st.valid_to)) AS own_status,
           (SELECT min(os.order_id)
              FROM registry_order_status os
             WHERE list_contains(g.suspended_by_orders, os.order_id) AND os.binding
               AND e.occurred_at >= os.valid_from AND (os.valid_to IS NULL OR e.occurred_at < os.valid_to)) AS suspending_order
    FROM dw_events e JOIN registry_agreements g ON g.agreement_id = e.agreement_ref
    WHERE list_contains($event_types, e.event_type)
),
defects AS (
    SELECT j.*,
           CASE WHEN j.occurred_at < j.g_from THEN 'not yet in effect (from ' || strftime(j.g_from, '%Y-%m-%d') || ')'
                WHEN j.g_to IS NOT NULL AND j.occurred_at >= j.g_to THEN 'expired on ' || strftime(j.g_to, '%Y-%m-%d')
                WHEN j.own_status IS NOT NULL THEN j.own_status
                WHEN j.suspending_order IS NOT NULL THEN 'suspended while court order ' || j.suspending_order || ' binds'
                WHEN NOT list_contains(j.parties, j.disclosing_code) OR NOT list_contains(j.parties, j.recipient_code)
                     THEN 'does not cover ' || j.disclosing_code || ' to ' || j.recipient_code
                WHEN j.authority_id IS NOT NULL AND NOT list_contains(j.agreement_authorities, j.authority_id)
                     THEN 'does not rest on ' || j.authority_id
           END AS defect
    FROM judged j
)
SELECT d.agreement_ref AS agreement_id,
       d.recipient_code,
       d.defect,
       d.agreement_ref AS entity_id,
       min(d.agreement_title) AS agreement_title,
       min(d.disclosing_agency) AS disclosing_agency,
       min(d.recipient_agency) AS recipient_agency,
       min(d.source_system) AS source_system,
       list(d.event_id) AS event_ids,
       count(*) AS event_count,
       min(d.occurred_at) AS window_start,
       max(d.occurred_at) AS window_end,
       sum(d.record_count) AS records_affected,
       list_concat($rule_citations, [d.agreement_ref, min(d.suspending_order)], list(DISTINCT d.authority_id)) AS citations
FROM defects d
WHERE d.defect IS NOT NULL
GROUP BY d.agreement_ref, d.recipient_code, d.defect
