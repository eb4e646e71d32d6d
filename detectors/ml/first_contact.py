"""What stood behind a first contact: the recipient's own request, or a newly effective agreement.

A lawful first disclosure to a recipient (or under a new authority, purpose or channel) is
normally covered: it answers a request the recipient itself logged before it, or it falls
shortly after an agreement between the parties, for that authority, took effect. An
unsolicited disclosure to an agency with no agreement has neither. Both are read from data:
request events from the logs, agreements and their effective dates, status history and
suspending court orders from the policy registry tables the store carries
(``registry_agreements``, ``registry_agreement_status``, ``registry_order_status``).
"""

from __future__ import annotations

from datetime import datetime

import duckdb
import polars as pl

from detectors.ml import features

# An agency as the registry knows it: its alias resolved, else its own text upper-cased.
_CODE = "coalesce({alias}.code, upper(trim({col})))"


def combination_cover_frame(
    con: duckdb.DuckDBPyConnection,
    *,
    event_types: list[str],
    request_event_types: list[str],
    agreement_days: int,
    window_from: datetime | None = None,
    window_to: datetime | None = None,
) -> pl.DataFrame:
    """``features.combination_frame`` per window, plus what covered each combination's
    first contact:

    - ``answered``: transfers that answered a request the recipient logged at or before
      them (same request id; a request with no recipient is taken as the transfer's own);
    - ``cover_agreement`` / ``cover_effective_from``: the latest registry agreement naming
      both parties (the recipient and, when known, the sender) and the authority (an
      agreement listing no authority covers any), in force at the first contact (not past
      its end, not suspended by its status history or a binding court order), that took
      effect at most ``agreement_days`` days before it.
    """
    sql = f"""
    WITH {features._events_cte("e.disclosing_agency")},
    req AS (
        SELECT r.request_id, {_CODE.format(alias="ra", col="r.recipient_agency")} AS code,
               min(r.occurred_at) AS first_requested
        FROM disclosure_events r
        LEFT JOIN registry_recipient_aliases ra ON ra.alias = upper(trim(r.recipient_agency))
        WHERE r.event_type IN (SELECT unnest($request_event_types::VARCHAR[]))
          AND r.request_id IS NOT NULL
          AND ($to::TIMESTAMPTZ IS NULL OR r.occurred_at < $to::TIMESTAMPTZ)
        GROUP BY ALL
    ),
    tagged AS (
        SELECT ev.*, {_CODE.format(alias="ra", col="ev.recipient_agency")} AS recipient_code,
               {_CODE.format(alias="sa", col="ev.disclosing_agency")} AS sender_code
        FROM ev
        LEFT JOIN registry_recipient_aliases ra ON ra.alias = upper(trim(ev.recipient_agency))
        LEFT JOIN registry_recipient_aliases sa ON sa.alias = upper(trim(ev.disclosing_agency))
    ),
    answered AS (
        SELECT DISTINCT t.source_system, t.event_id
        FROM tagged t JOIN req ON req.request_id = t.request_id
         AND req.first_requested <= t.occurred_at
         AND (req.code IS NULL OR req.code = t.recipient_code)
    ),
    combo AS (
        SELECT recipient_agency, {features._AUTHORITY} AS authority,
               coalesce(purpose, '(none)') AS purpose, coalesce(channel, '(none)') AS channel,
               {features.COMBINATION_AGGREGATES},
               count(a.event_id) AS answered,
               any_value(recipient_code) AS recipient_code,
               any_value(sender_code) AS sender_code
        FROM tagged t LEFT JOIN answered a USING (source_system, event_id)
        GROUP BY recipient_agency, authority, purpose, channel
    ),
    cover AS (
        SELECT c.recipient_agency, c.authority, c.purpose, c.channel,
               g.agreement_id AS cover_agreement, g.effective_from AS cover_effective_from
        FROM combo c JOIN registry_agreements g
          ON list_contains(g.parties, c.recipient_code)
         AND (c.sender_code IS NULL OR list_contains(g.parties, c.sender_code))
         AND (len(coalesce(g.authorities, [])) = 0 OR list_contains(g.authorities, c.authority))
         AND g.effective_from <= c.first_at
         AND g.effective_from > c.first_at - to_days(CAST($agreement_days AS INTEGER))
         AND (g.effective_to IS NULL OR g.effective_to > c.first_at)
        WHERE NOT EXISTS (
            SELECT 1 FROM registry_agreement_status s
            WHERE s.agreement_id = g.agreement_id AND s.status <> 'in_force'
              AND s.valid_from <= c.first_at AND (s.valid_to IS NULL OR s.valid_to > c.first_at))
          AND NOT EXISTS (
            SELECT 1 FROM registry_order_status o
            WHERE list_contains(coalesce(g.suspended_by_orders, []), o.order_id) AND o.binding
              AND o.valid_from <= c.first_at AND (o.valid_to IS NULL OR o.valid_to > c.first_at))
        QUALIFY row_number() OVER (
            PARTITION BY c.recipient_agency, c.authority, c.purpose, c.channel
            ORDER BY g.effective_from DESC, g.agreement_id) = 1
    )
    SELECT combo.* EXCLUDE (recipient_code, sender_code),
           cover.cover_agreement, cover.cover_effective_from
    FROM combo LEFT JOIN cover USING (recipient_agency, authority, purpose, channel)
    ORDER BY first_at, recipient_agency
    """
    params = features._params(event_types, window_from, window_to)
    params.update(request_event_types=request_event_types, agreement_days=agreement_days)
    return features._frame(con, sql, params)
