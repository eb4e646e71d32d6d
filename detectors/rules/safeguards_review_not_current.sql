-- Disclosures under an authority that requires recipient safeguards, to a recipient whose
-- recorded Publication 1075 review was not current at the event's time: its status says
-- expired or none, or the next review was due (its recorded due date, else the last
-- review plus the registry's maximum age) and had not happened. Reviews the registry does
-- not record ("unknown") are not judged.
WITH judged AS (
    SELECT e.*,
           coalesce(CAST(e.recipient_safeguards_due_on AS TIMESTAMP),
                    e.recipient_safeguards_reviewed_on
                      + to_days(CAST($reg_safeguards_review_max_age_days AS INTEGER))) AS due_at
    FROM dw_events e
    WHERE e.is_disclosure AND e.auth_safeguards_required
      AND e.recipient_safeguards_status IN ('expired', 'none', 'current')
)
SELECT j.recipient_code,
       j.recipient_code AS entity_id,
       min(j.recipient_safeguards_status) AS review_status,
       coalesce(strftime(min(j.recipient_safeguards_reviewed_on), '%Y-%m-%d'), 'never') AS last_review,
       coalesce('overdue since ' || strftime(min(j.due_at), '%Y-%m-%d'),
                CASE min(j.recipient_safeguards_status) WHEN 'none' THEN 'no safeguards on record'
                     ELSE 'no review date on record' END) AS overdue,
       min(j.disclosing_agency) AS disclosing_agency,
       min(j.recipient_agency) AS recipient_agency,
       min(j.source_system) AS source_system,
       list(j.event_id) AS event_ids,
       count(*) AS event_count,
       min(j.occurred_at) AS window_start,
       max(j.occurred_at) AS window_end,
       sum(j.record_count) AS records_affected,
       list_concat($rule_citations, list(DISTINCT j.authority_id)) AS citations
FROM judged j
WHERE j.recipient_safeguards_status IN ('expired', 'none')
   OR (j.recipient_safeguards_status = 'current' AND (j.due_at IS NULL OR j.occurred_at >= j.due_at))
GROUP BY j.recipient_code
