-- Receipts with no n-th disclosure under the same key, judged only where the sender's
-- ledger began a full receipt window before the receipt and reaches past it.
SELECT p.reconciliation_id,
       p.match_key,
       p.recipient_code AS entity_id,
       min(p.disclosing_code) AS disclosing_agency,
       min(p.recipient_code) AS recipient_agency,
       min(p.request_id) AS request_id,
       coalesce(min(p.request_id), 'key ' || p.match_key) AS request_label,
       min(p.recv_source) AS source_system,
       list(p.recv_event_id ORDER BY p.recv_at) AS event_ids,
       count(*) AS event_count,
       min(p.recv_at) AS window_start,
       max(p.recv_at) AS window_end,
       sum(p.recv_records) AS records_affected,
       min(p.ledger_first_at) AS ledger_first_at,
       min(p.ledger_last_at) AS ledger_last_at,
       min(p.reconciliation_title) AS reconciliation_title,
       $rule_citations AS citations
FROM dw_reconciliation_pairs p
WHERE p.sent_event_id IS NULL
  AND p.ledger_first_at <= p.recv_at - to_microseconds(CAST(p.missing_after_hours * 3600e6 AS BIGINT))
  AND p.ledger_last_at >= p.recv_at
GROUP BY p.reconciliation_id, p.match_key, p.recipient_code
