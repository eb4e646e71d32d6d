-- Cases, triage and suppressions (issue 7). Compliance staff work cases, not alert rows:
-- alerts are grouped by recipient, request and court order into cases whose ids are derived
-- from that grouping key, so a decision recorded today still applies after tomorrow's run.

-- One row per case. Rebuilt by dwatch.report.cases.build_cases from alerts on every report run;
-- the id and first_seen_at survive rebuilds, everything else is refreshed.
CREATE TABLE IF NOT EXISTS cases (
    case_id VARCHAR PRIMARY KEY,          -- 'cs_' + 24 hex of sha256(grouping key): stable across runs
    grouping_key VARCHAR NOT NULL,        -- the key itself, readable: recipient|request|court orders (or entity)
    recipient_agency VARCHAR,
    request_id VARCHAR,
    court_order_ids VARCHAR[],            -- registry ids of court orders the alerts cite ([] when none)
    entity_type VARCHAR,                  -- set when the case has no recipient/request/order (e.g. a log source)
    entity_id VARCHAR,
    status VARCHAR NOT NULL,              -- open | suppressed (every open alert suppressed) | retracted (only retracted alerts)
    severity VARCHAR NOT NULL,            -- max severity of the case's active alerts
    risk_score DOUBLE NOT NULL,           -- severity weight x data sensitivity x log-scaled subjects/records (docs: dwatch/report/risk.yaml)
    sensitivity DOUBLE NOT NULL,
    subjects_affected BIGINT,             -- summed within a detector, max across detectors (detectors flagging one transfer overlap)
    records_affected BIGINT,
    event_count BIGINT,
    alert_count INTEGER NOT NULL,
    open_alert_count INTEGER NOT NULL,
    suppressed_alert_count INTEGER NOT NULL,
    retracted_alert_count INTEGER NOT NULL,
    detector_ids VARCHAR[],
    citations VARCHAR[],
    data_elements VARCHAR[],
    coverage_incomplete BOOLEAN NOT NULL DEFAULT false,
    window_start TIMESTAMPTZ,
    window_end TIMESTAMPTZ,
    title VARCHAR NOT NULL,               -- short plain-language headline
    first_seen_at TIMESTAMPTZ NOT NULL,
    refreshed_at TIMESTAMPTZ NOT NULL
);
COMMENT ON TABLE cases IS 'Alerts grouped by recipient, request and court order. case_id is derived from the grouping key, so it is stable across re-runs; severity is the max of its active alerts; risk_score = severity weight x sensitivity x log-scaled subjects.';

-- Which alert belongs to which case (one case per alert), and whether a suppression hides it.
CREATE TABLE IF NOT EXISTS case_alerts (
    alert_id VARCHAR PRIMARY KEY,
    case_id VARCHAR NOT NULL,
    suppression_id VARCHAR               -- the allowlist entry hiding this alert, if any
);

-- Append-only record of what analysts decided. Never updated or deleted by dwatch: the
-- current state is the latest row per target (views alert_triage_state, case_triage_state).
CREATE SEQUENCE IF NOT EXISTS triage_decision_seq START 1;
CREATE TABLE IF NOT EXISTS triage_decisions (
    decision_no BIGINT PRIMARY KEY DEFAULT nextval('triage_decision_seq'),  -- orders decisions made in the same instant
    target_type VARCHAR NOT NULL CHECK (target_type IN ('case', 'alert')),
    target_id VARCHAR NOT NULL,           -- a case_id or alert_id (both stable across runs)
    decision VARCHAR NOT NULL CHECK (decision IN ('acknowledged', 'violation', 'authorised', 'data_error', 'false_positive', 'reopened')),
    decided_by VARCHAR NOT NULL CHECK (length(trim(decided_by)) > 0),
    decided_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    note VARCHAR
);
COMMENT ON TABLE triage_decisions IS 'Append-only triage log: who decided what about a case or alert, when, and why. Current state = latest decision (views case_triage_state, alert_triage_state).';

-- Allowlist entries. Every entry needs at least one match criterion, a reason, an owner and
-- an expiry date; after expires_on it stops suppressing (the alert comes back).
CREATE TABLE IF NOT EXISTS suppressions (
    suppression_id VARCHAR PRIMARY KEY,
    detector_id VARCHAR,                  -- match criteria: NULL = any; all given ones must match
    recipient_agency VARCHAR,
    disclosing_agency VARCHAR,
    actor_id VARCHAR,
    source_system VARCHAR,
    request_id VARCHAR,
    entity_type VARCHAR,
    entity_id VARCHAR,
    reason VARCHAR NOT NULL CHECK (length(trim(reason)) > 0),
    owner VARCHAR NOT NULL CHECK (length(trim(owner)) > 0),
    expires_on DATE NOT NULL,             -- suppresses through this date (UTC), not after
    created_by VARCHAR,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (coalesce(detector_id, recipient_agency, disclosing_agency, actor_id, source_system,
                    request_id, entity_type, entity_id) IS NOT NULL)
);
COMMENT ON TABLE suppressions IS 'Allowlist entries: match criteria (NULL = any), reason, owner and expiry are required; expired entries no longer suppress.';

-- Delivery outbox: a report notification is recorded before it is sent, so a failed send is
-- retried by the next run instead of being lost.
CREATE TABLE IF NOT EXISTS notifications (
    notification_id VARCHAR PRIMARY KEY,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    status VARCHAR NOT NULL CHECK (status IN ('pending', 'sent')),
    subject VARCHAR NOT NULL,
    recipients VARCHAR[] NOT NULL,
    case_ids VARCHAR[] NOT NULL,          -- the new cases this notification announces
    report_html_path VARCHAR NOT NULL,    -- written before sending; the message is rebuilt from it on retry
    attempts INTEGER NOT NULL DEFAULT 0,
    last_attempt_at TIMESTAMPTZ,
    last_error VARCHAR,
    sent_at TIMESTAMPTZ
);
COMMENT ON TABLE notifications IS 'Report e-mail outbox: pending until the SMTP server accepted it; attempts and last_error say why not.';

CREATE OR REPLACE VIEW case_triage_state AS
SELECT c.case_id,
       CASE WHEN d.decision IS NULL OR d.decision = 'reopened' THEN 'new'
            WHEN d.decision = 'acknowledged' THEN 'acknowledged'
            ELSE 'resolved' END AS triage_state,
       CASE WHEN d.decision IN ('violation', 'authorised', 'data_error', 'false_positive') THEN d.decision END AS resolution,
       d.decided_by, d.decided_at, d.note
FROM cases c
LEFT JOIN (
    SELECT * FROM triage_decisions WHERE target_type = 'case'
    QUALIFY row_number() OVER (PARTITION BY target_id ORDER BY decided_at DESC, decision_no DESC) = 1
) d ON d.target_id = c.case_id;
COMMENT ON VIEW case_triage_state IS 'Current triage state of every case: new, acknowledged or resolved (with resolution), from its latest decision.';

-- An alert's state is its own latest decision or its case's, whichever is later.
CREATE OR REPLACE VIEW alert_triage_state AS
WITH relevant AS (
    SELECT ca.alert_id, d.decision, d.decided_by, d.decided_at, d.note, d.decision_no
    FROM case_alerts ca
    JOIN triage_decisions d
      ON (d.target_type = 'alert' AND d.target_id = ca.alert_id)
      OR (d.target_type = 'case' AND d.target_id = ca.case_id)
), latest AS (
    SELECT * FROM relevant
    QUALIFY row_number() OVER (PARTITION BY alert_id ORDER BY decided_at DESC, decision_no DESC) = 1
)
SELECT a.alert_id, ca.case_id,
       CASE WHEN l.decision IS NULL OR l.decision = 'reopened' THEN 'new'
            WHEN l.decision = 'acknowledged' THEN 'acknowledged'
            ELSE 'resolved' END AS triage_state,
       CASE WHEN l.decision IN ('violation', 'authorised', 'data_error', 'false_positive') THEN l.decision END AS resolution,
       l.decided_by, l.decided_at, l.note
FROM alerts a
LEFT JOIN case_alerts ca USING (alert_id)
LEFT JOIN latest l USING (alert_id);
COMMENT ON VIEW alert_triage_state IS 'Current triage state of every alert: its own latest decision or its case''s, whichever came last.';

CREATE OR REPLACE VIEW active_suppressions AS
SELECT * FROM suppressions WHERE expires_on >= CAST(now() AS DATE);
COMMENT ON VIEW active_suppressions IS 'Allowlist entries that still suppress today (UTC).';

CREATE OR REPLACE VIEW open_cases AS
SELECT c.*, t.triage_state, t.resolution
FROM cases c JOIN case_triage_state t USING (case_id)
WHERE c.status = 'open' AND t.triage_state <> 'resolved'
ORDER BY c.risk_score DESC;
COMMENT ON VIEW open_cases IS 'Cases still needing an analyst: not retracted, not fully suppressed, not resolved; highest risk first.';
