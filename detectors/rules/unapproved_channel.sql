-- Federal tax information sent unencrypted or over a channel the registry does not
-- approve for it (e.g. e-mail, fax, removable media).
SELECT e.disclosing_code,
       e.recipient_code,
       coalesce(e.channel, 'unrecorded') AS channel_used,
       coalesce(CAST(e.encrypted AS VARCHAR), 'unrecorded') AS encryption,
       e.recipient_code AS entity_id,
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
  AND ((e.channel IS NOT NULL AND NOT list_contains($reg_approved_channels, e.channel))
       OR e.encrypted = false)
GROUP BY ALL
