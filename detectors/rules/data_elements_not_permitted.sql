-- Requests, disclosures, receipts and uses carrying data elements the cited authority
-- forbids (e.g. taxpayer return information where only other return information may go)
-- or does not list as allowed: the recipient's own log of what it received or used under
-- the authority counts as much as the discloser's. Elements are judged as canonical codes
-- (registry data_element_aliases: "SSN" = tin).
WITH judged AS (
    SELECT e.*,
           list_distinct(list_concat(
               list_filter(coalesce(dl.data_element_codes, e.data_elements), lambda d: list_contains(e.auth_data_elements_forbidden, d)),
               CASE WHEN len(e.auth_data_elements_allowed) > 0
                    THEN list_filter(coalesce(dl.data_element_codes, e.data_elements), lambda d: NOT list_contains(e.auth_data_elements_allowed, d))
                    ELSE []::VARCHAR[] END)) AS offending
    FROM dw_events e
    LEFT JOIN dw_element_lists dl ON dl.data_elements = e.data_elements
    WHERE list_contains($event_types, e.event_type) AND e.citation_status = 'ok' AND e.auth_kind = 'disclosure_authority'
      AND (len(e.auth_data_elements_forbidden) > 0 OR len(e.auth_data_elements_allowed) > 0)
)
SELECT j.recipient_code,
       j.authority_id,
       j.recipient_code AS entity_id,
       string_agg(DISTINCT j.event_type, ' and ' ORDER BY j.event_type) AS event_kinds,
       min(j.disclosing_agency) AS disclosing_agency,
       min(j.recipient_agency) AS recipient_agency,
       min(j.source_system) AS source_system,
       list({'source_system': j.source_system, 'event_id': j.event_id}) AS event_keys,
       count(*) AS event_count,
       min(j.occurred_at) AS window_start,
       max(j.occurred_at) AS window_end,
       sum(j.record_count) AS records_affected,
       nullif(count(DISTINCT j.taxpayer_ref), 0) AS subjects_affected,
       list_sort(list_distinct(flatten(list(j.offending)))) AS offending_elements,
       array_to_string(min(j.cited_authorities), '; ') AS authorities_cited,
       list_concat($rule_citations, flatten(list(DISTINCT j.cited_authorities))) AS citations
FROM judged j
WHERE len(j.offending) > 0
GROUP BY j.recipient_code, j.authority_id
