SELECT p.reconciliation_id,
       p.match_key,
       p.sent_event_id,
       p.recipient_code AS entity_id,
       p.disclosing_code AS disclosing_agency,
       p.recipient_code AS recipient_agency,
       p.request_id,
       coalesce(p.request_id, 'key ' || p.match_key) AS request_label,
       p.recv_source AS source_system,
       [p.sent_event_id, p.recv_event_id] AS event_ids,
       2 AS event_count,
       p.sent_at AS window_start,
       p.recv_at AS window_end,
       round(p.lag_hours, 1) AS lag_hours,
       p.receipt_within_hours,
       p.recv_records AS records_affected,
       p.reconciliation_title,
       $rule_citations AS citations
FROM dw_reconciliation_pairs p
WHERE p.sent_event_id IS NOT NULL AND p.recv_event_id IS NOT NULL
  AND p.lag_hours > p.receipt_within_hours
