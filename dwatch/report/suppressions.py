"""Allowlist entries: known-good activity that should not page anyone, for a while.

An entry names match criteria (any of detector, recipient, discloser, actor, source,
request, entity; each given one must match), a reason, an owner and an expiry date, all
required. It suppresses through its expiry date and then stops, so the alert comes back
and someone has to look again. Reports list every suppressed alert and the entry hiding it.
"""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from typing import Any

import duckdb

from dwatch.errors import InputError

CRITERIA: tuple[str, ...] = (
    "detector_id",
    "recipient_agency",
    "disclosing_agency",
    "actor_id",
    "source_system",
    "request_id",
    "entity_type",
    "entity_id",
)
# Allowlists that never lapse are how real violations get hidden for years.
MAX_DAYS = 366


def add_suppression(
    con: duckdb.DuckDBPyConnection,
    *,
    criteria: dict[str, str | None],
    reason: str,
    owner: str,
    expires_on: date,
    created_by: str | None = None,
    today: date | None = None,
    max_days: int = MAX_DAYS,
) -> str:
    """Add an allowlist entry; returns its id (sp_...)."""
    unknown = sorted(set(criteria) - set(CRITERIA))
    if unknown:
        raise InputError(
            f"unknown match criteria: {', '.join(unknown)}",
            where="suppression",
            fix=f"use any of: {', '.join(CRITERIA)}",
        )
    given = {k: v.strip() for k, v in criteria.items() if v and v.strip()}
    if not given:
        raise InputError(
            "a suppression needs at least one match criterion",
            where="suppression",
            fix="pass e.g. --detector RULE_ID and/or --recipient AGENCY",
        )
    if not reason or not reason.strip():
        raise InputError(
            "a suppression needs a reason", where="reason", fix='pass --reason "why this is lawful"'
        )
    if not owner or not owner.strip():
        raise InputError("a suppression needs an owner", where="owner", fix="pass --owner NAME")
    today = today or con.execute("SELECT CAST(now() AS DATE)").fetchone()[0]  # type: ignore[index]
    if expires_on < today:
        raise InputError(
            f"expiry date {expires_on} is already past (today is {today})",
            where="expires_on",
            fix="give a date from today on",
        )
    if expires_on > today + timedelta(days=max_days):
        raise InputError(
            f"expiry date {expires_on} is more than {max_days} days away",
            where="expires_on",
            fix=f"choose a date before {today + timedelta(days=max_days + 1)} and renew it when it lapses",
        )
    suppression_id = "sp_" + uuid.uuid4().hex[:16]
    columns = ["suppression_id", *given, "reason", "owner", "expires_on", "created_by"]
    values = [
        suppression_id,
        *given.values(),
        reason.strip(),
        owner.strip(),
        expires_on,
        created_by,
    ]
    con.execute(
        f"INSERT INTO suppressions ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})",
        values,
    )
    return suppression_id


def list_suppressions(
    con: duckdb.DuckDBPyConnection, *, as_of: date | None = None
) -> list[dict[str, Any]]:
    """Every entry, with whether it is active on ``as_of`` and how many alerts it hides."""
    today = as_of or con.execute("SELECT CAST(now() AS DATE)").fetchone()[0]  # type: ignore[index]
    cursor = con.execute(
        f"""
        SELECT s.suppression_id, {", ".join("s." + c for c in CRITERIA)}, s.reason, s.owner,
               s.expires_on, s.created_by, s.created_at, s.expires_on >= ?::DATE AS active,
               (SELECT count(*) FROM case_alerts ca WHERE ca.suppression_id = s.suppression_id) AS alerts_suppressed
        FROM suppressions s ORDER BY s.expires_on DESC, s.suppression_id
        """,
        [today],
    )
    columns = [c[0] for c in cursor.description]
    return [dict(zip(columns, r, strict=True)) for r in cursor.fetchall()]


def describe_criteria(entry: dict[str, Any]) -> str:
    return ", ".join(f"{c}={entry[c]}" for c in CRITERIA if entry.get(c)) or "(none)"
