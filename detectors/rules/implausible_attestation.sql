-- One official attesting to being personally and directly engaged in an implausible
-- number of investigations in a year: the subjects named across all case-by-case
-- requests they signed that year (each subject is one investigation attested). What is
-- implausible depends on who signs: the year is compared with the official's own earlier
-- years and with their peers' years - the same role at the same agency, else the same
-- role anywhere, else anyone at the same agency, else every signer - so an agency head's
-- ordinary year is judged against agency heads and that head's own history. Only with no
-- one to compare with does the fixed ceiling apply. An official whose log states several
-- roles in a year ("head_of_agency" on some requests, "fbi_director" on others) is compared
-- with the peers of every role stated, the most plausible comparison kept, so the
-- judgement never depends on which role a row happened to be read first.
WITH requests AS (
    SELECT e.* FROM dw_events e
    WHERE list_contains($request_event_types, e.event_type) AND e.auth_case_by_case
),
items AS (
    SELECT request_id, count(DISTINCT coalesce(taxpayer_ref, CAST(item_no AS VARCHAR))) AS items_named
    FROM dw_items WHERE list_contains($request_event_types, carrier_event_type)
    GROUP BY request_id
),
per_request AS (
    -- one official however the log cases or pads the id ("JSmith", "jsmith ")
    SELECT lower(trim(r.actor_id)) AS actor_id, r.request_id,
           -- roles compared folded: "Head of Agency" = head_of_agency; every role stated
           list(DISTINCT coalesce(nullif(regexp_replace(lower(r.actor_role), '[^a-z0-9]+', '_', 'g'), ''), 'unstated')) AS role_keys,
           list(DISTINCT r.actor_role) FILTER (WHERE r.actor_role IS NOT NULL) AS actor_roles,
           min(r.recipient_agency) AS recipient_agency, min(r.recipient_code) AS recipient_code,
           min(r.authority_id) AS authority_id, min(r.source_system) AS source_system,
           list(r.event_id) AS event_ids, min(r.occurred_at) AS t0, max(r.occurred_at) AS t1,
           greatest(max(r.record_count), coalesce(min(i.items_named), 0)) AS attested
    FROM requests r LEFT JOIN items i ON i.request_id = r.request_id
    GROUP BY lower(trim(r.actor_id)), r.request_id
),
years AS (
    -- one row per official and year: what they attested to that year
    SELECT actor_id, year(t0) AS yr, list_sort(list_distinct(flatten(list(role_keys)))) AS role_keys,
           nullif(array_to_string(list_sort(list_distinct(flatten(list(actor_roles)))), ' / '), '') AS actor_role,
           min(recipient_agency) AS recipient_agency, min(recipient_code) AS recipient_code,
           flatten(list(event_ids)) AS event_ids, min(t0) AS t0, max(t1) AS t1,
           count(*) AS requests_signed, sum(attested) AS attested,
           list(DISTINCT authority_id) AS authorities
    FROM per_request GROUP BY actor_id, year(t0)
),
context AS (
    SELECT y.*,
           (SELECT max(h.attested) FROM years h WHERE h.actor_id = y.actor_id AND h.yr < y.yr) AS own_history,
           (SELECT median(p.attested) FROM years p
             WHERE p.actor_id <> y.actor_id AND list_has_any(p.role_keys, y.role_keys)
               AND p.recipient_code = y.recipient_code) AS peers_role_agency,
           (SELECT median(p.attested) FROM years p
             WHERE p.actor_id <> y.actor_id AND list_has_any(p.role_keys, y.role_keys)) AS peers_role,
           (SELECT median(p.attested) FROM years p
             WHERE p.actor_id <> y.actor_id AND p.recipient_code = y.recipient_code) AS peers_agency,
           (SELECT median(p.attested) FROM years p WHERE p.actor_id <> y.actor_id) AS peers_all
    FROM years y
),
judged AS (
    SELECT c.*,
           coalesce(c.peers_role_agency, c.peers_role, c.peers_agency, c.peers_all) AS peer_reference,
           CASE WHEN c.peers_role_agency IS NOT NULL THEN 'peers in the same role at ' || c.recipient_code
                WHEN c.peers_role IS NOT NULL THEN 'peers in the same role at other agencies'
                WHEN c.peers_agency IS NOT NULL THEN 'other signers at ' || c.recipient_code
                WHEN c.peers_all IS NOT NULL THEN 'every other signer' END AS peer_group
    FROM context c
),
scored AS (
    SELECT j.*,
           greatest(j.own_history, j.peer_reference) AS reference,
           CASE WHEN greatest(j.own_history, j.peer_reference) IS NULL
                THEN j.attested / $without_context_max_per_year::DOUBLE
                ELSE j.attested / ($ratio_to_context * greatest(j.own_history, j.peer_reference, 1))::DOUBLE
           END AS score,
           CASE WHEN greatest(j.own_history, j.peer_reference) IS NULL
                THEN 'no earlier year or peer to compare with, and more than the ' || format('{:,d}', $without_context_max_per_year) || ' a year one official can plausibly conduct'
                ELSE format('{:.0f}', j.attested / greatest(j.own_history, j.peer_reference, 1)::DOUBLE)
                     || ' times the most plausible comparison ('
                     || concat_ws('; ',
                            'own busiest earlier year ' || format('{:,d}', j.own_history),
                            j.peer_group || ' typically ' || format('{:,d}', CAST(j.peer_reference AS BIGINT)))
                     || ')'
           END AS compared_with
    FROM judged j
)
SELECT s.actor_id,
       s.actor_id AS entity_id,
       coalesce(arg_max(s.actor_role, s.score), 'unstated') AS actor_role,
       arg_max(s.recipient_agency, s.score) AS recipient_agency,
       CAST(arg_max(s.yr, s.score) AS VARCHAR) AS year,
       arg_max(s.event_ids, s.score) AS event_ids,
       arg_max(s.t0, s.score) AS window_start,
       arg_max(s.t1, s.score) AS window_end,
       arg_max(s.requests_signed, s.score) AS requests_signed,
       arg_max(s.attested, s.score) AS investigations_attested,
       arg_max(s.compared_with, s.score) AS compared_with,
       max(s.score) AS score,
       list_concat($rule_citations, flatten(list(s.authorities))) AS citations
FROM scored s
WHERE s.attested >= $min_investigations AND s.score > 1
GROUP BY s.actor_id
