"""Which of several cited authorities an event is judged under.

A log may cite several authorities for one event ("6103(i)(2) and 6103(l)(3)"). The
disclosure is lawful when ONE of them permits all of it - recipient, purpose, data
elements and requester - so the event is judged under the first cited authority that
does; when none does, under the one it fails least (citation order breaks ties), and the
rules' findings quote every authority cited (``dw_events.cited_authorities``).

Only events whose citation names two or more authorities are judged here; the table is
empty for logs that never do, and ``dw_events`` reads its choice by event key.
"""

from __future__ import annotations

from typing import Any

import duckdb

CHOICE_COLUMNS = (
    "CREATE OR REPLACE TEMP TABLE dw_authority_choice"
    " (source_system VARCHAR, event_id VARCHAR, authority_id VARCHAR, failures INTEGER)"
)

# One row per (event, cited authority) with the dimensions it fails; the least failing is
# kept. The tests mirror the rules that judge each dimension (recipient_not_permitted,
# purpose_not_permitted, data_elements_not_permitted, requester_role_not_permitted,
# authority_not_in_force).
_CHOICE_SQL = """
WITH multi AS (
    SELECT e.source_system, e.event_id, e.event_type, e.occurred_at, e.recipient_code,
           e.recipient_category, e.purpose_code, e.actor_role, e.data_elements,
           unnest(e.cited_authorities) AS authority_id,
           unnest(generate_series(1, len(e.cited_authorities))) AS ord
    FROM dw_events e
    WHERE e.legal_authority IN (SELECT legal_authority FROM dw_citations WHERE len(authority_ids) > 1)
),
judged AS (
    SELECT m.source_system, m.event_id, m.authority_id, m.ord,
           CAST(NOT (a.kind = 'disclosure_authority'
                     AND (a.effective_from IS NULL OR m.occurred_at >= a.effective_from)
                     AND (a.effective_to IS NULL OR m.occurred_at < a.effective_to)) AS INTEGER)
         + CAST(len(a.recipient_categories) + len(a.recipient_codes) > 0
                AND NOT (list_contains(a.recipient_codes, m.recipient_code)
                         OR coalesce(list_contains(a.recipient_categories, m.recipient_category), false)) AS INTEGER)
         + CAST(coalesce(m.purpose_code IS NOT NULL AND len(a.purposes) > 0
                         AND NOT list_contains(a.purposes, m.purpose_code), false) AS INTEGER)
         + CAST(len(list_filter(coalesce(dl.data_element_codes, m.data_elements),
                    lambda d: list_contains(a.data_elements_forbidden, d)
                              OR (len(a.data_elements_allowed) > 0
                                  AND NOT list_contains(a.data_elements_allowed, d)))) > 0 AS INTEGER)
         + CAST(list_contains($request_event_types, m.event_type)
                AND EXISTS (SELECT 1 FROM registry_authority_requester_roles r WHERE r.authority_id = m.authority_id)
                AND NOT EXISTS (
                    SELECT 1 FROM registry_authority_requester_roles r
                    WHERE r.authority_id = m.authority_id
                      AND regexp_replace(lower(r.role), '[^a-z0-9]+', '', 'g')
                          = regexp_replace(lower(m.actor_role), '[^a-z0-9]+', '', 'g')
                      AND (len(r.recipient_categories) + len(r.recipient_codes) = 0
                           OR list_contains(r.recipient_codes, m.recipient_code)
                           OR coalesce(list_contains(r.recipient_categories, m.recipient_category), false)))
                AS INTEGER) AS failures
    FROM multi m
    JOIN registry_authorities a ON a.authority_id = m.authority_id
    LEFT JOIN dw_element_lists dl ON dl.data_elements = m.data_elements
)
SELECT source_system, event_id, authority_id, failures
FROM judged
QUALIFY row_number() OVER (PARTITION BY source_system, event_id ORDER BY failures, ord) = 1
"""


def choose_authorities(con: duckdb.DuckDBPyConnection, reg_params: dict[str, Any]) -> int:
    """Fill ``dw_authority_choice`` (created empty before ``dw_events``); returns its rows."""
    multi = con.execute("SELECT count(*) FROM dw_citations WHERE len(authority_ids) > 1").fetchone()
    if not multi or not multi[0]:
        return 0
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE _authority_choice AS {_CHOICE_SQL}",
        {"request_event_types": reg_params["reg_request_event_types"]},
    )
    con.execute("INSERT INTO dw_authority_choice SELECT * FROM _authority_choice")
    row = con.execute("SELECT count(*) FROM _authority_choice").fetchone()
    con.execute("DROP TABLE _authority_choice")
    return int(row[0]) if row else 0
