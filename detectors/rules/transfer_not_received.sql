-- Disclosures with no n-th receipt under the same key, judged only where the recipient's
-- receipt log began before the disclosure and reaches past the time a receipt was due.
SELECT p.reconciliation_id,
       p.match_key,
       p.recipient_code AS entity_id,
       min(p.disclosing_code) AS disclosing_agency,
       min(p.recipient_code) AS recipient_agency,
       min(p.request_id) AS request_id,
       coalesce(min(p.request_id), 'key ' || p.match_key) AS request_label,
       min(p.sent_source) AS source_system,
       list(p.sent_event_id ORDER BY p.sent_at) AS event_ids,
       count(*) AS event_count,
       min(p.sent_at) AS window_start,
       max(p.sent_at) AS window_end,
       sum(p.sent_records) AS records_affected,
       min(p.receipts_first_at) AS receipts_first_at,
       min(p.receipts_last_at) AS receipts_last_at,
       min(p.missing_after_hours) AS missing_after_hours,
       min(p.reconciliation_title) AS reconciliation_title,
       (SELECT string_agg(DISTINCT q.recv_source, ', ' ORDER BY q.recv_source) FROM dw_reconciliation_pairs q
        WHERE q.reconciliation_id = p.reconciliation_id AND q.recipient_code = p.recipient_code
          AND q.recv_source IS NOT NULL) AS receipt_sources,
       $rule_citations AS citations
FROM dw_reconciliation_pairs p
WHERE p.recv_event_id IS NULL
  AND p.receipts_first_at <= p.sent_at
  AND p.receipts_last_at >= p.sent_at + to_microseconds(CAST(p.missing_after_hours * 3600e6 AS BIGINT))
GROUP BY p.reconciliation_id, p.match_key, p.recipient_code
