-- Receipts under a retention term, disposed of after the deadline, or not disposed of while
-- the holder's log runs past the deadline (a log that ends earlier cannot tell).
SELECT c.term_id,
       c.holder_code,
       c.custody_key,
       c.holder_code AS entity_id,
       c.disclosing_code AS disclosing_agency,
       c.recipient_code AS recipient_agency,
       c.request_id,
       coalesce(c.request_id, 'agreement ' || c.agreement_ref) AS custody_label,
       c.source_system,
       [c.event_id] AS event_ids,
       1 AS event_count,
       c.occurred_at AS window_start,
       coalesce(c.disposed_at, c.log_last_at) AS window_end,
       c.record_count AS records_affected,
       c.deadline,
       c.disposed_at,
       c.term_title,
       CASE WHEN c.disposed_at IS NOT NULL
            THEN 'Disposal was logged on ' || strftime(c.disposed_at, '%Y-%m-%d') || ', '
                 || date_diff('day', c.deadline, c.disposed_at) || ' day(s) late.'
            ELSE 'No disposal is logged; the holder''s log runs to '
                 || strftime(c.log_last_at, '%Y-%m-%d') || '.' END AS disposal_state,
       list_concat($rule_citations, [c.term_id], c.term_orders, c.term_agreements) AS citations
FROM dw_custody c
WHERE (c.disposed_at IS NOT NULL AND c.disposed_at > c.deadline)
   OR (c.disposed_at IS NULL AND c.log_last_at > c.deadline)
