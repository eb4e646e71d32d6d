-- Disclosures under a case-by-case authority that needs a written request, with no
-- request on record (no request event with the same request_id, by the same recipient, at
-- or before the disclosure). An MOU sets the terms of such requests; it is not one. The
-- request must be the recipient's own: the agency asking is the agency the data goes to,
-- so another agency's request that happens to carry the same number (offices number
-- their requests independently) does not stand for it.
WITH requests AS (
    SELECT request_id, recipient_code, min(occurred_at) AS first_requested
    FROM dw_events
    WHERE list_contains($request_event_types, event_type) AND request_id IS NOT NULL
    GROUP BY request_id, recipient_code
)
SELECT e.recipient_code,
       e.authority_id,
       coalesce(e.request_id, 'none') AS request_ref,
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
WHERE e.is_disclosure AND e.auth_written_request
  -- only authorities that act on an individual request per case: a bulk authority's
  -- written request is standing (a state's basic agreement) and is not logged per
  -- transfer, and an agreement (an MOU) never stands for the request of a case
  AND e.auth_case_by_case
  -- an ex parte court order on record (its case number) is the request's judicial form
  AND NOT (e.auth_requires_court_order AND e.case_number_given)
  AND NOT EXISTS (
      SELECT 1 FROM requests r
      WHERE r.request_id = e.request_id AND r.first_requested <= e.occurred_at
        -- a request with no recipient recorded is taken as the disclosure's own
        AND (r.recipient_code IS NULL OR e.recipient_code IS NULL
             OR r.recipient_code = e.recipient_code))
GROUP BY e.recipient_code, e.authority_id, coalesce(e.request_id, 'none')
