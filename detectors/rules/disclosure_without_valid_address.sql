-- The per-taxpayer violation: subjects actually disclosed under an authority that requires
-- the request to set forth their address, when no request item for that subject in the
-- same request carries a valid address (the disclosed item's own copy of the supplied
-- address, when it has one, decides). One finding per request; subjects_affected is the
-- number of taxpayers whose data went out without it.
WITH disclosures AS (
    SELECT e.* FROM dw_events e
    WHERE e.is_disclosure AND e.request_id IS NOT NULL
      AND list_contains(e.auth_required_elements, 'address')
),
disclosed AS (
    -- A disclosed item that carries the address the request supplied is judged by it
    -- (the same person may be named twice in one request, once with a real address).
    SELECT d.event_id, d.source_system, d.request_id, i.taxpayer_ref AS subject, i.item_no,
           CASE WHEN i.supplied_address IS NOT NULL THEN i.address_valid END AS own_address_valid,
           CASE WHEN i.supplied_address IS NOT NULL THEN i.address_reason END AS own_reason
    FROM disclosures d JOIN dw_items i
      ON i.event_id = d.event_id AND (i.source_system IS NULL OR i.source_system = d.source_system)
     -- an item names its request: another log's entry with the same id is not its carrier
     AND i.request_id = d.request_id
    WHERE i.taxpayer_ref IS NOT NULL
    UNION ALL
    SELECT d.event_id, d.source_system, d.request_id, d.taxpayer_ref, NULL, NULL, NULL
    FROM disclosures d WHERE d.taxpayer_ref IS NOT NULL
),
requested AS (
    SELECT i.request_id, i.taxpayer_ref AS subject, bool_or(i.address_valid) AS any_valid,
           min(i.address_reason) FILTER (WHERE NOT i.address_valid) AS request_reason
    FROM dw_items i
    WHERE list_contains($request_event_types, i.carrier_event_type) AND i.taxpayer_ref IS NOT NULL
    GROUP BY ALL
),
judged AS (
    SELECT x.request_id, x.subject, x.event_id, x.source_system, x.item_no,
           coalesce(x.own_address_valid, r.any_valid, false) AS address_set_forth,
           CASE WHEN x.own_address_valid IS NOT NULL THEN x.own_reason
                ELSE coalesce(r.request_reason, 'the request named no address for this taxpayer')
           END AS reason
    FROM disclosed x LEFT JOIN requested r ON r.request_id = x.request_id AND r.subject = x.subject
),
reasons AS (
    -- why each affected taxpayer's address was not one, as evidence: {reason: taxpayers}
    SELECT request_id, histogram(reason) AS address_reasons
    FROM (SELECT request_id, subject, min(reason) AS reason FROM judged
          WHERE NOT address_set_forth GROUP BY ALL)
    GROUP BY request_id
),
per_request AS (
    SELECT request_id,
           count(DISTINCT subject) AS subjects_disclosed,
           count(DISTINCT subject) FILTER (WHERE NOT address_set_forth) AS subjects_without_address,
           -- the taxpayers this finding counts (rule subjects: from query)
           list({'taxpayer_ref': subject, 'event_id': event_id, 'source_system': source_system,
                 'request_id': request_id, 'item_no': item_no,
                 'reason': 'disclosed although the request did not set forth a usable address: ' || reason})
             FILTER (WHERE NOT address_set_forth) AS subjects
    FROM judged GROUP BY request_id
)
SELECT d.request_id,
       d.request_id AS entity_id,
       min(d.disclosing_agency) AS disclosing_agency,
       min(d.recipient_agency) AS recipient_agency,
       min(d.source_system) AS source_system,
       min(d.authority_id) AS authority_id,
       list({'source_system': d.source_system, 'event_id': d.event_id}) AS event_keys,
       count(*) AS event_count,
       min(d.occurred_at) AS window_start,
       max(d.occurred_at) AS window_end,
       sum(d.record_count) AS records_affected,
       min(p.subjects_without_address) AS subjects_affected,
       min(p.subjects_disclosed) AS subjects_disclosed,
       min(p.subjects) AS subjects,
       min(rs.address_reasons) AS address_reasons,
       list_concat($rule_citations, list(DISTINCT d.authority_id)) AS citations
FROM disclosures d JOIN per_request p ON p.request_id = d.request_id
LEFT JOIN reasons rs ON rs.request_id = d.request_id
WHERE p.subjects_without_address > 0
GROUP BY d.request_id
