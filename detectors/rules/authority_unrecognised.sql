-- Requests and disclosures citing something that is not a registered authority:
-- well-formed but unknown to the registry (a subdivision the statute does not have is
-- unknown, never its parent), a general citation of a whole act or section that names no
-- provision ("26 USC 6103", "Privacy Act"), or not a citation at all (malformed).
SELECT e.recipient_code,
       e.legal_authority,
       e.citation_status,
       CASE e.citation_status
            WHEN 'general' THEN 'a general citation of a whole act, section or subsection: it names no provision that permits a disclosure'
            WHEN 'unknown' THEN 'unrecognised: a provision the policy registry does not hold (a subdivision the statute may not have)'
            ELSE 'malformed: not a citation the registry can read' END AS reading,
       e.recipient_code AS entity_id,
       string_agg(DISTINCT e.event_type, ' and ' ORDER BY e.event_type) AS event_kinds,
       min(e.disclosing_agency) AS disclosing_agency,
       min(e.recipient_agency) AS recipient_agency,
       min(e.source_system) AS source_system,
       list(e.event_id) AS event_ids,
       count(*) AS event_count,
       min(e.occurred_at) AS window_start,
       max(e.occurred_at) AS window_end,
       sum(e.record_count) AS records_affected
FROM dw_events e
WHERE list_contains($event_types, e.event_type)
  AND e.citation_status IN ('unknown', 'malformed', 'general')
GROUP BY e.recipient_code, e.legal_authority, e.citation_status
