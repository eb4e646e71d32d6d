"""A recipient user's day (``ml.actor_peers``' rows) aggregated from the events in one pass,
with the exact distinct taxpayers and most frequent role of each day.

Written plainly (``count(DISTINCT taxpayer_ref)``, ``mode(actor_role)``), DuckDB splits
the aggregate into three: the other sums, a grouping of every (user, day, taxpayer) and one
of every (user, day, role), joined back on the user-day, with the events materialized once
for the three. At 10M events (9.2M access events, 1.7M user-days) that was about 13 CPU
seconds, most of the ML step of a full run.

Here the one grouping also keeps, per user-day, the role's least and greatest value and
the distinct 64-bit hashes of its taxpayers. A day whose roles are one value (nulls aside)
has that role as its mode; a day whose taxpayers' hashes are all different has as many
distinct taxpayers as taxpayer rows (equal values hash equal, so different hashes are
different values). Every other day (a repeated hash: the same taxpayer read twice that
day, or, very rarely, two that share a hash; or several roles) is counted again the plain
way from its own events, so every answer is exactly the plain query's
(tests/ml/test_user_days.py). Those days' events are read by a second scan of their
users' events, which ends at once when there is no such day.

Measured on the 10M benchmark store (17 of 1.76M user-days counted again): 13.0 -> 8.4 CPU
seconds. The cost grows with the share of users having such a day (their events are all
read again): every day of 40% of the users counted again, 9.3; of 60%, 11.6; of all (users
who read some taxpayer twice every day), 18.8, 45% more than the plain query. The
generated logs hardly repeat a read; real ones may. A next step (not tried): an exact
128-bit key for a canonical pseudonym (``tp_`` + 32 hex) would settle repeated reads
without counting again, if its parse could be proved one-to-one cheaply per row.
"""

from __future__ import annotations

# The events' columns a user-day reads, and its key.
_KEY = ("recipient_agency", "actor_id")


def _same(left: str, right: str) -> str:
    """The user-day key of ``left`` equals ``right``'s (nulls equal)."""
    return " AND ".join(f"{left}.{c} IS NOT DISTINCT FROM {right}.{c}" for c in (*_KEY, "day"))


def user_days_ctes(events_cte: str, again_from: str, again_where: str) -> str:
    """The CTEs ending in ``days`` (one row per recipient agency, user and local day:
    role, source_system, disclosing_agency, zone, records, subjects, events, first_at,
    last_at, event_ids), after ``events_cte`` (``ev``: the events with ``local_ts`` and
    ``zone``). ``again_from`` and ``again_where`` read the same events again (``e``: the
    events table, joined to their zone as ``ev`` is; the WHERE clause ``ev`` has) for the
    days counted the plain way."""
    return f"""
    {events_cte},
    day_sums AS (
        SELECT recipient_agency, actor_id, CAST(local_ts AS DATE) AS day,
               min(actor_role) AS role_least, max(actor_role) AS role_greatest,
               coalesce(list_unique(list(hash(taxpayer_ref))
                                    FILTER (WHERE taxpayer_ref IS NOT NULL)), 0)
                   AS taxpayer_hashes,
               count(taxpayer_ref) AS taxpayer_rows,
               any_value(source_system) AS source_system,
               any_value(disclosing_agency) AS disclosing_agency,
               any_value(zone) AS zone,
               CAST(sum(record_count) AS BIGINT) AS records,
               count(*) AS events,
               min(occurred_at) AS first_at, max(occurred_at) AS last_at,
               list(event_id ORDER BY occurred_at, event_id) AS event_ids
        FROM ev GROUP BY recipient_agency, actor_id, CAST(local_ts AS DATE)
    ),
    -- Days the sums above cannot settle: counted again from their own events.
    recount AS (
        SELECT recipient_agency, actor_id, day FROM day_sums
        WHERE role_least <> role_greatest OR taxpayer_hashes < taxpayer_rows
    ),
    recount_events AS (
        SELECT e.recipient_agency, e.actor_id,
               CAST(timezone(coalesce(az.tz, sz.tz, 'UTC'), e.occurred_at) AS DATE) AS day,
               e.actor_role, e.taxpayer_ref
        {again_from}
        {again_where}
          -- Only these days' users (a superset: the key is matched below). The row-id
          -- term keeps DuckDB from sharing one materialized scan with ``ev`` (it would
          -- hold every event to serve a join that reads none when no day needs it).
          AND e.rowid >= 0
          AND coalesce(e.actor_id, chr(0)) IN (SELECT coalesce(actor_id, chr(0)) FROM recount)
    ),
    recounted AS (
        SELECT r.recipient_agency, r.actor_id, r.day,
               mode(r.actor_role) AS role, count(DISTINCT r.taxpayer_ref) AS subjects
        FROM recount_events r SEMI JOIN recount k ON {_same("k", "r")}
        GROUP BY ALL
    ),
    days AS (
        SELECT s.recipient_agency, s.actor_id, s.day,
               coalesce(CASE WHEN x.subjects IS NULL THEN s.role_greatest ELSE x.role END,
                        '(none)') AS role,
               s.source_system, s.disclosing_agency, s.zone, s.records,
               coalesce(x.subjects, s.taxpayer_rows) AS subjects,
               s.events, s.first_at, s.last_at, s.event_ids
        FROM day_sums s LEFT JOIN recounted x ON {_same("x", "s")}
    )"""
