-- Request items that do not set forth what the cited authority requires of each subject
-- (name, a real address, tax periods, statute, reason), counted per subject. An address
-- counts when a mail carrier could use it (dw_items.address_valid, judged from its
-- structure by dwatch/address.py): placeholders ("Failed to Provide", "NA NA"), a ZIP
-- alone, a jail with no street are not addresses; "45 Pending Ln, Reno NV 89501" is.
WITH judged AS (
    SELECT i.request_id, i.item_no, i.taxpayer_ref, i.event_id,
           e.recipient_code, e.recipient_agency, e.disclosing_agency, e.source_system,
           e.occurred_at, e.authority_id, e.actor_id, i.address_reason,
           list_filter([
               CASE WHEN list_contains(e.auth_required_elements, 'name') AND NOT i.has_name THEN 'name' END,
               CASE WHEN list_contains(e.auth_required_elements, 'address') AND NOT i.address_valid THEN 'address' END,
               CASE WHEN list_contains(e.auth_required_elements, 'tax_periods') AND NOT i.has_tax_periods THEN 'tax_periods' END,
               CASE WHEN list_contains(e.auth_required_elements, 'statute') AND NOT i.has_statute THEN 'statute' END,
               CASE WHEN list_contains(e.auth_required_elements, 'reason') AND NOT i.has_reason THEN 'reason' END
           ], lambda x: x IS NOT NULL) AS missing
    FROM dw_items i
    JOIN dw_events e
      ON e.event_id = i.event_id AND (i.source_system IS NULL OR e.source_system = i.source_system)
     AND (e.request_id IS NULL OR e.request_id = i.request_id)
    WHERE list_contains($request_event_types, e.event_type) AND len(e.auth_required_elements) > 0
)
SELECT j.request_id,
       j.request_id AS entity_id,
       min(j.recipient_agency) AS recipient_agency,
       min(j.disclosing_agency) AS disclosing_agency,
       min(j.actor_id) AS actor_id,
       min(j.source_system) AS source_system,
       min(j.authority_id) AS authority_id,
       list(DISTINCT {'source_system': j.source_system, 'event_id': j.event_id}) AS event_keys,
       count(DISTINCT j.event_id) AS event_count,
       min(j.occurred_at) AS window_start,
       max(j.occurred_at) AS window_end,
       count(*) AS items_named,
       count(*) FILTER (WHERE len(j.missing) > 0) AS records_affected,
       count(DISTINCT coalesce(j.taxpayer_ref, j.request_id || '#' || j.item_no)) FILTER (WHERE len(j.missing) > 0) AS items_deficient,
       -- the taxpayers counted (rule subjects): deficient items, kept by the engine only
       -- where the request's disclosures actually sent their data
       list({'taxpayer_ref': j.taxpayer_ref, 'event_id': j.event_id, 'source_system': j.source_system,
             'request_id': j.request_id, 'item_no': j.item_no}) FILTER (WHERE len(j.missing) > 0) AS subjects,
       count(*) FILTER (WHERE list_contains(j.missing, 'name')) AS missing_name,
       count(*) FILTER (WHERE list_contains(j.missing, 'address')) AS missing_address,
       -- why each address was not one, as evidence: {"no street ...; only a ZIP": 2, ...}
       histogram(j.address_reason) FILTER (WHERE list_contains(j.missing, 'address')) AS address_reasons,
       count(*) FILTER (WHERE list_contains(j.missing, 'tax_periods')) AS missing_tax_periods,
       count(*) FILTER (WHERE list_contains(j.missing, 'statute')) AS missing_statute,
       count(*) FILTER (WHERE list_contains(j.missing, 'reason')) AS missing_reason,
       list_concat($rule_citations, list(DISTINCT j.authority_id)) AS citations
FROM judged j
GROUP BY j.request_id
HAVING count(*) FILTER (WHERE len(j.missing) > 0) > 0
