-- Disclosures under an authority that requires recipient safeguards, to a recipient whose
-- recorded Publication 1075 review was not current at the event's time. Reviews the
-- registry does not record ("unknown") are not judged.
SELECT e.recipient_code,
       e.recipient_code AS entity_id,
       any_value(e.recipient_safeguards_status) AS review_status,
       coalesce(strftime(any_value(e.recipient_safeguards_reviewed_on), '%Y-%m-%d'), 'never') AS last_review,
       any_value(e.disclosing_agency) AS disclosing_agency,
       any_value(e.recipient_agency) AS recipient_agency,
       any_value(e.source_system) AS source_system,
       list(e.event_id) AS event_ids,
       count(*) AS event_count,
       min(e.occurred_at) AS window_start,
       max(e.occurred_at) AS window_end,
       sum(e.record_count) AS records_affected,
       list_concat($rule_citations, list(DISTINCT e.authority_id)) AS citations
FROM dw_events e
WHERE e.is_disclosure AND e.auth_safeguards_required
  AND (e.recipient_safeguards_status IN ('expired', 'none')
       OR (e.recipient_safeguards_status = 'current'
           AND (e.recipient_safeguards_reviewed_on IS NULL
                OR e.occurred_at > e.recipient_safeguards_reviewed_on + to_days(CAST($reg_safeguards_review_max_age_days AS INTEGER)))))
GROUP BY e.recipient_code
