-- Subject-level findings and whole chains (issue 13, items 2 and 3).
--
-- alerts.subjects_affected was a number only, and case_subjects listed every subject named
-- anywhere in an alert's evidence events (a request's every item, although only some were
-- disclosed, or disclosed without an address). Cases then took the max, and the report
-- summed cases, so overlapping findings on the same taxpayers were counted twice.
-- Now each per-taxpayer finding lists the taxpayers whose rights it says were violated, with
-- the reason and where each came from, and every count of taxpayers is a distinct count
-- over that list. Filled by the rule engine (detectors/engine.py) through the alert merge
-- (detectors/alerts.py): a re-run replaces an alert's rows; a retracted alert keeps its last.
CREATE TABLE IF NOT EXISTS alert_subjects (
    alert_id VARCHAR NOT NULL,
    taxpayer_ref VARCHAR NOT NULL,       -- the pseudonym; raw identifiers are never stored
    reason VARCHAR NOT NULL,             -- why this taxpayer counts (the rule's subjects.reason)
    request_id VARCHAR,
    event_id VARCHAR,                    -- the event that named the taxpayer (or carried the item)
    item_no BIGINT,                      -- the request item, when the taxpayer came from one
    source_system VARCHAR                -- the log of that event or item
);
COMMENT ON TABLE alert_subjects IS 'Taxpayers whose rights a finding says were violated, one row per (alert, taxpayer, event or request item) with the reason; per-taxpayer counts are count(DISTINCT taxpayer_ref) over it.';

-- Evidence keys: event ids repeat across logs, so an event is (source_system, event_id).
-- role 'finding': an event the finding is about; 'chain': an event linked to one of them
-- by its request (the request that enabled a disclosure, the disclosures and receipts a
-- request enabled). alerts.event_ids stays the capped list of bare ids it always was.
CREATE TABLE IF NOT EXISTS alert_events (
    alert_id VARCHAR NOT NULL,
    source_system VARCHAR NOT NULL,
    event_id VARCHAR NOT NULL,
    event_type VARCHAR,
    request_id VARCHAR,
    role VARCHAR NOT NULL CHECK (role IN ('finding', 'chain'))
);
COMMENT ON TABLE alert_events IS 'Every event behind a finding keyed (source_system, event_id): the events it is about (role finding) and the rest of their request chain (role chain: requests, disclosures, receipts).';

-- Subjects per case: the taxpayers the case's open alerts list, one row each, with every
-- reason and detector that counts them. Replaces 0009's view (every subject named anywhere
-- in the evidence events); `via` keeps its meaning (request_item or event).
CREATE OR REPLACE VIEW case_subjects AS
SELECT ca.case_id, s.taxpayer_ref,
       CASE WHEN bool_or(s.item_no IS NOT NULL) THEN 'request_item' ELSE 'event' END AS via,
       list(DISTINCT s.reason ORDER BY s.reason) AS reasons,
       list(DISTINCT a.detector_id ORDER BY a.detector_id) AS detector_ids,
       list(DISTINCT s.request_id ORDER BY s.request_id) FILTER (WHERE s.request_id IS NOT NULL) AS request_ids
FROM case_alerts ca
JOIN alerts a USING (alert_id)
JOIN alert_subjects s USING (alert_id)
WHERE a.status = 'open'
GROUP BY ca.case_id, s.taxpayer_ref;
COMMENT ON VIEW case_subjects IS 'Taxpayers (pseudonyms) whose rights the open alerts of each case say were violated: one row per case and taxpayer, with the reasons and detectors.';

-- Distinct taxpayers per court order, recipient, request and case (open alerts): never a
-- sum of overlapping findings. A court order is any registry order an alert cites; a
-- recipient is its registry code where the registry places it ("US ICE" = DHS-ICE).
CREATE OR REPLACE VIEW subject_counts AS
WITH listed AS (
    SELECT a.alert_id, coalesce(r.code, a.recipient_agency) AS recipient_agency,
           coalesce(s.request_id, a.request_id) AS request_id,
           a.citations, ca.case_id, s.taxpayer_ref
    FROM alerts a
    JOIN alert_subjects s USING (alert_id)
    LEFT JOIN case_alerts ca USING (alert_id)
    LEFT JOIN registry_recipient_resolution r ON r.agency = a.recipient_agency
    WHERE a.status = 'open'
), scoped AS (
    SELECT 'court_order' AS scope, o.order_id AS scope_id, l.alert_id, l.taxpayer_ref
    FROM listed l, unnest(l.citations) AS c(citation)
    JOIN registry_court_orders o ON o.order_id = c.citation
    UNION ALL SELECT 'recipient', recipient_agency, alert_id, taxpayer_ref FROM listed WHERE recipient_agency IS NOT NULL
    UNION ALL SELECT 'request', request_id, alert_id, taxpayer_ref FROM listed WHERE request_id IS NOT NULL
    UNION ALL SELECT 'case', case_id, alert_id, taxpayer_ref FROM listed WHERE case_id IS NOT NULL
)
SELECT scope, scope_id, count(DISTINCT taxpayer_ref) AS subjects, count(DISTINCT alert_id) AS alerts
FROM scoped
GROUP BY scope, scope_id
ORDER BY scope, subjects DESC, scope_id;
COMMENT ON VIEW subject_counts IS 'Distinct taxpayers whose rights open alerts say were violated, per court order, recipient, request and case (scope, scope_id).';

COMMENT ON COLUMN cases.subjects_affected IS 'Distinct taxpayers the case''s active alerts list in alert_subjects (alerts that list none, such as models, give a floor: max within the case, never added).';
