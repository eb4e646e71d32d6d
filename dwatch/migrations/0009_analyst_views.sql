-- Views for analysts' common questions (issue 8). Numbered after the registry (0004) and
-- cases (0006) migrations whose tables they read. open_cases itself is defined in 0006.
-- docs/analyst-guide.md shows each in use; tests run every query of that guide.

-- Court orders whose restraints bind at a given instant, from the registry's status history:
--   SELECT * FROM orders_in_force(TIMESTAMPTZ '2026-03-01 00:00:00+00');
CREATE OR REPLACE MACRO orders_in_force(at_time) AS TABLE
SELECT o.order_id, o.case_name, o.court, o.docket, o.issued,
       s.status, s.valid_from AS status_since, s.valid_to AS status_until, s.note,
       (SELECT count(*) FROM registry_order_restraints r WHERE r.order_id = o.order_id) AS restraints
FROM registry_court_orders o
JOIN registry_order_status s ON s.order_id = o.order_id
WHERE s.binding
  AND s.valid_from <= CAST(at_time AS TIMESTAMPTZ)
  AND (s.valid_to IS NULL OR s.valid_to > CAST(at_time AS TIMESTAMPTZ))
ORDER BY o.issued, o.order_id;

-- The events behind each case's alerts (evidence ids may be capped per alert; see
-- alerts.event_count), resolved to the subjects they name: a single-subject event's
-- taxpayer_ref, and the request items the event carried.
CREATE OR REPLACE VIEW case_evidence_events AS
SELECT DISTINCT ca.case_id, a.alert_id, a.source_system AS alert_source, u.event_id
FROM case_alerts ca
JOIN alerts a USING (alert_id),
     unnest(a.event_ids) AS u(event_id)
WHERE a.status = 'open';
COMMENT ON VIEW case_evidence_events IS 'Evidence event ids of the open alerts of each case.';

CREATE OR REPLACE VIEW case_subjects AS
SELECT DISTINCT c.case_id, s.taxpayer_ref, s.via
FROM case_evidence_events c
JOIN (
    SELECT event_id, source_system, taxpayer_ref, 'event' AS via
    FROM disclosure_events WHERE taxpayer_ref IS NOT NULL
    UNION ALL
    SELECT event_id, source_system, taxpayer_ref, 'request_item' AS via
    FROM request_items WHERE taxpayer_ref IS NOT NULL
) s ON s.event_id = c.event_id
   AND (c.alert_source IS NULL OR s.source_system IS NULL OR s.source_system = c.alert_source);
COMMENT ON VIEW case_subjects IS 'Subjects (taxpayer pseudonyms) affected per case: named by an evidence event or by a request item it carried.';

-- Subjects affected per case: the count the detectors reported, and the distinct subjects
-- found in the evidence the store holds (lower when evidence ids were capped).
CREATE OR REPLACE VIEW case_subject_counts AS
SELECT c.case_id, c.title, c.status, c.severity, c.recipient_agency, c.request_id,
       c.subjects_affected AS subjects_reported,
       count(DISTINCT s.taxpayer_ref) AS subjects_in_evidence,
       c.records_affected, c.event_count
FROM cases c
LEFT JOIN case_subjects s USING (case_id)
GROUP BY ALL
ORDER BY subjects_reported DESC NULLS LAST, c.case_id;
COMMENT ON VIEW case_subject_counts IS 'Per case: subjects the detectors reported and distinct subjects present in the evidence events and request items.';

-- Which authorities each recipient's events cite: normalised authority id, or the raw
-- citation when the registry does not recognise it.
CREATE OR REPLACE VIEW authority_usage_by_recipient AS
SELECT e.recipient_agency,
       r.category AS recipient_category,
       e.event_type,
       coalesce(e.authority_id,
                CASE WHEN e.legal_authority IS NULL THEN '(none cited)' ELSE '(unrecognised)' END) AS authority,
       a.title AS authority_title,
       count(*) AS events,
       sum(e.record_count) AS records,
       count(DISTINCT e.legal_authority) AS citation_spellings,
       min(e.occurred_at) AS first_seen,
       max(e.occurred_at) AS last_seen
FROM disclosure_events e
LEFT JOIN registry_recipient_resolution r ON r.agency = e.recipient_agency
LEFT JOIN registry_authorities a ON a.authority_id = e.authority_id
GROUP BY ALL;
COMMENT ON VIEW authority_usage_by_recipient IS 'Events per recipient, event type and cited authority (normalised; unrecognised and missing citations shown as such).';
