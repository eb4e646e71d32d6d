-- Case triage rolls up from alert decisions (follow-up of issue 7). Until now a case's state
-- came only from decisions recorded on the case itself, so an analyst who resolved every
-- alert of a case one by one still saw the case as "new". The views keep their columns
-- (open_cases, the report, notifications and `dwatch alerts` read them); the append-only
-- triage_decisions log is not touched. DuckDB binds views when they are queried, so
-- open_cases picks these definitions up without being recreated.
--
-- A case decision speaks for the alerts the case held when it was made: an alert first
-- detected after it (a new finding joining the case) starts undecided, so it reopens the
-- case instead of silently inheriting a verdict nobody gave it.

CREATE OR REPLACE VIEW alert_triage_state AS
WITH relevant AS (
    SELECT a.alert_id, d.decision, d.decided_by, d.decided_at, d.note, d.decision_no
    FROM alerts a
    JOIN triage_decisions d ON d.target_type = 'alert' AND d.target_id = a.alert_id
    UNION ALL
    SELECT ca.alert_id, d.decision, d.decided_by, d.decided_at, d.note, d.decision_no
    FROM case_alerts ca
    JOIN alerts a USING (alert_id)
    JOIN triage_decisions d ON d.target_type = 'case' AND d.target_id = ca.case_id
    WHERE a.first_detected_at IS NULL OR d.decided_at >= a.first_detected_at
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
COMMENT ON VIEW alert_triage_state IS 'Current triage state of every alert: its own latest decision, or its case''s latest decision made since the alert was first detected, whichever came last.';

-- The case's state:
--   * its own latest decision, when that decision is the one in force for every active
--     (open, unsuppressed) alert: newer than any decision on those alerts, and made after
--     each of them joined the case (or when the case has no active alerts at all);
--   * otherwise rolled up from its active alerts' states (see alert_triage_state):
--       all resolved alike      -> resolved, with that resolution
--       all resolved, differing -> resolved, resolution 'mixed' (the note gives the split)
--       all acknowledged        -> acknowledged
--       some acknowledged or resolved, the rest not -> acknowledged (partial; the note says
--                                  how many of how many are resolved)
--       none                    -> new
--     decided_by / decided_at are those of the latest decision behind the roll-up.
CREATE OR REPLACE VIEW case_triage_state AS
WITH case_latest AS (
    SELECT target_id AS case_id, decision, decided_by, decided_at, note, decision_no
    FROM triage_decisions
    WHERE target_type = 'case'
    QUALIFY row_number() OVER (PARTITION BY target_id ORDER BY decided_at DESC, decision_no DESC) = 1
), active AS (
    SELECT ca.case_id, ca.alert_id, a.first_detected_at
    FROM case_alerts ca
    JOIN alerts a USING (alert_id)
    WHERE a.status = 'open' AND ca.suppression_id IS NULL
), candidate AS (
    SELECT act.alert_id, 'alert' AS via, d.decision, d.decided_by, d.decided_at, d.decision_no
    FROM active act
    JOIN triage_decisions d ON d.target_type = 'alert' AND d.target_id = act.alert_id
    UNION ALL
    SELECT act.alert_id, 'case' AS via, cl.decision, cl.decided_by, cl.decided_at, cl.decision_no
    FROM active act
    JOIN case_latest cl USING (case_id)
    WHERE act.first_detected_at IS NULL OR cl.decided_at >= act.first_detected_at
), effective AS (
    SELECT act.case_id, act.alert_id, c.via, c.decision, c.decided_by, c.decided_at, c.decision_no,
           c.decision IN ('violation', 'authorised', 'data_error', 'false_positive') AS is_resolved
    FROM active act
    LEFT JOIN (
        SELECT * FROM candidate
        QUALIFY row_number() OVER (PARTITION BY alert_id ORDER BY decided_at DESC, decision_no DESC) = 1
    ) c USING (alert_id)
), resolution_split AS (
    SELECT case_id,
           count(*) AS kinds,
           min(decision) AS only_resolution,
           string_agg(decision || ' ' || n, ', ' ORDER BY decision) AS split
    FROM (SELECT case_id, decision, count(*) AS n FROM effective WHERE is_resolved GROUP BY ALL)
    GROUP BY case_id
), rollup AS (
    SELECT case_id,
           count(*) AS active_alerts,
           count(*) FILTER (WHERE is_resolved) AS resolved,
           count(*) FILTER (WHERE decision = 'acknowledged') AS acknowledged,
           bool_and(coalesce(via = 'case', false)) AS case_decision_in_force
    FROM effective
    GROUP BY case_id
), last_behind_rollup AS (
    SELECT case_id, decided_by, decided_at
    FROM effective
    WHERE decision IS NOT NULL
    QUALIFY row_number() OVER (PARTITION BY case_id ORDER BY decided_at DESC, decision_no DESC) = 1
)
SELECT c.case_id,
       CASE WHEN use_case THEN
                CASE WHEN cl.decision IS NULL OR cl.decision = 'reopened' THEN 'new'
                     WHEN cl.decision = 'acknowledged' THEN 'acknowledged'
                     ELSE 'resolved' END
            WHEN r.resolved = r.active_alerts THEN 'resolved'
            WHEN r.resolved + r.acknowledged > 0 THEN 'acknowledged'
            ELSE 'new' END AS triage_state,
       CASE WHEN use_case THEN
                CASE WHEN cl.decision IN ('violation', 'authorised', 'data_error', 'false_positive') THEN cl.decision END
            WHEN r.resolved = r.active_alerts THEN
                CASE WHEN s.kinds = 1 THEN s.only_resolution ELSE 'mixed' END
            END AS resolution,
       CASE WHEN use_case THEN cl.decided_by ELSE lb.decided_by END AS decided_by,
       CASE WHEN use_case THEN cl.decided_at ELSE lb.decided_at END AS decided_at,
       CASE WHEN use_case THEN cl.note
            ELSE 'from alert decisions: ' || r.resolved || ' of ' || r.active_alerts
                 || ' active alert' || CASE WHEN r.active_alerts = 1 THEN '' ELSE 's' END || ' resolved'
                 || coalesce(' (' || s.split || ')', '')
                 || CASE WHEN r.acknowledged > 0 THEN ', ' || r.acknowledged || ' acknowledged' ELSE '' END
                 || CASE WHEN r.active_alerts - r.resolved - r.acknowledged > 0
                         THEN ', ' || (r.active_alerts - r.resolved - r.acknowledged) || ' not yet decided'
                         ELSE '' END
            END AS note
FROM cases c
LEFT JOIN case_latest cl USING (case_id)
LEFT JOIN rollup r USING (case_id)
LEFT JOIN resolution_split s USING (case_id)
LEFT JOIN last_behind_rollup lb USING (case_id),
LATERAL (SELECT r.case_id IS NULL OR r.case_decision_in_force AS use_case);
COMMENT ON VIEW case_triage_state IS 'Current triage state of every case: new, acknowledged or resolved (resolution violation, authorised, data_error, false_positive, or mixed when its alerts were resolved differently). The case''s own latest decision while it is in force for all its active alerts, otherwise rolled up from their alert decisions (partial progress shows as acknowledged, with a note).';
