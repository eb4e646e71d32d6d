"""Notification lists: the taxpayers a case, a court order or a finding says were harmed.

One row per taxpayer (pseudonym) from ``alert_subjects`` of the open alerts in scope, with
what happened to them: the reasons the findings give, the findings, the requests, the kinds
of event, the recipients and the first and last time. The count is the distinct count the
report and the ``subject_counts`` view give for the same scope.

The store cannot name anyone. The key holder supplies the identifiers to match against
(``match_identifiers``): each is pseudonymised with the key and compared, and a match is
reported by its line in the supplied file, so no identifier is ever written out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

import duckdb

from dwatch.accounting.lookup import subjects_from_identifiers
from dwatch.errors import InputError

SCOPES = ("case", "order", "alert")
_SCOPE_SQL = {
    "case": "a.alert_id IN (SELECT alert_id FROM case_alerts WHERE case_id = $scope_id)",
    "order": "list_contains(a.citations, $scope_id)"
    " AND $scope_id IN (SELECT order_id FROM registry_court_orders)",
    "alert": "a.alert_id = $scope_id",
}
_EXISTS_SQL = {
    "case": "SELECT count(*) FROM cases WHERE case_id = $scope_id",
    "order": "SELECT count(*) FROM registry_court_orders WHERE order_id = $scope_id",
    "alert": "SELECT count(*) FROM alerts WHERE alert_id = $scope_id",
}
_WHERE_TO_LOOK = {
    "case": "dwatch alerts list",
    "order": "dwatch registry show",
    "alert": "dwatch alerts show CASE_ID",
}


@dataclass(frozen=True)
class AffectedTaxpayer:
    taxpayer_ref: str
    reasons: tuple[str, ...]
    alert_ids: tuple[str, ...]
    detector_ids: tuple[str, ...]
    request_ids: tuple[str, ...]
    event_types: tuple[str, ...]
    recipients: tuple[str, ...]
    first_at: datetime | None
    last_at: datetime | None
    match_rows: tuple[int, ...] = ()


@dataclass
class NotificationList:
    scope: str
    scope_id: str
    taxpayers: list[AffectedTaxpayer]
    identifiers_supplied: int | None = None  # lines the key holder supplied, when matching
    not_identifiers: list[int] = field(default_factory=list)

    @property
    def matched(self) -> int:
        return sum(1 for t in self.taxpayers if t.match_rows)


def affected_taxpayers(
    con: duckdb.DuckDBPyConnection, scope: str, scope_id: str
) -> NotificationList:
    """The distinct taxpayers the open alerts of the case, order or alert list."""
    if scope not in SCOPES:
        raise InputError(
            f"unknown scope {scope!r}", where="scope", fix=f"use one of {', '.join(SCOPES)}"
        )
    params = {"scope_id": scope_id}
    row = con.execute(_EXISTS_SQL[scope], params).fetchone()
    if not row or not row[0]:
        raise InputError(
            f"no {scope} {scope_id!r} in the store",
            where=f"--{scope}",
            fix=f"see the ids with `{_WHERE_TO_LOOK[scope]}`",
        )
    rows = con.execute(
        f"""
        WITH listed AS (
            SELECT s.*, a.detector_id FROM alert_subjects s JOIN alerts a USING (alert_id)
            WHERE a.status = 'open' AND {_SCOPE_SQL[scope]}
        ), named AS (
            SELECT DISTINCT l.source_system, l.event_id FROM listed l WHERE l.event_id IS NOT NULL
        ), events AS (
            SELECT e.source_system, e.event_id, e.occurred_at, e.event_type, e.recipient_agency
            FROM disclosure_events e JOIN named n ON n.event_id = e.event_id
            WHERE n.source_system IS NULL OR n.source_system = e.source_system
        )
        SELECT l.taxpayer_ref,
               list(DISTINCT l.reason ORDER BY l.reason),
               list(DISTINCT l.alert_id ORDER BY l.alert_id),
               list(DISTINCT l.detector_id ORDER BY l.detector_id),
               coalesce(list(DISTINCT l.request_id ORDER BY l.request_id)
                        FILTER (WHERE l.request_id IS NOT NULL), []),
               coalesce(list(DISTINCT e.event_type ORDER BY e.event_type)
                        FILTER (WHERE e.event_type IS NOT NULL), []),
               coalesce(list(DISTINCT e.recipient_agency ORDER BY e.recipient_agency)
                        FILTER (WHERE e.recipient_agency IS NOT NULL), []),
               min(e.occurred_at), max(e.occurred_at)
        FROM listed l
        LEFT JOIN events e ON e.event_id = l.event_id
             AND (l.source_system IS NULL OR e.source_system = l.source_system)
        GROUP BY l.taxpayer_ref
        ORDER BY l.taxpayer_ref
        """,
        params,
    ).fetchall()
    taxpayers = [AffectedTaxpayer(r[0], *(tuple(v) for v in r[1:7]), r[7], r[8]) for r in rows]
    return NotificationList(scope, scope_id, taxpayers)


def match_identifiers(
    found: NotificationList, identifier_lines: Iterable[str], key: bytes
) -> NotificationList:
    """Mark each affected taxpayer with the lines of the key holder's file that name them."""
    rows_by_ref: dict[str, list[int]] = {}
    supplied = 0
    not_identifiers = []
    for subject in subjects_from_identifiers(identifier_lines, key):
        supplied += 1
        if subject.taxpayer_ref is None:
            not_identifiers.append(subject.row)
        else:
            rows_by_ref.setdefault(subject.taxpayer_ref, []).append(subject.row)
    taxpayers = [
        AffectedTaxpayer(**{**t.__dict__, "match_rows": tuple(rows_by_ref.get(t.taxpayer_ref, ()))})
        for t in found.taxpayers
    ]
    return NotificationList(found.scope, found.scope_id, taxpayers, supplied, not_identifiers)
