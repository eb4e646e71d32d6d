"""Analysts' decisions about cases and alerts: append-only, keyed on stable ids.

Lifecycle: new -> acknowledged -> resolved as violation / authorised / data_error /
false_positive (``reopened`` returns it to new). Every decision records who, when and a note;
nothing is ever updated or deleted, so the log is the audit trail and the current state is
read from it by the views ``alert_triage_state`` (an alert's latest decision, or its case's
if later) and ``case_triage_state`` (the case's latest decision, or else rolled up from its
alerts' decisions: all resolved alike, ``mixed``, or partial progress; see docs/reports.md).
Because case and alert ids are derived from what they are about, a decision survives every
re-run.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb

from dwatch.errors import InputError

RESOLUTIONS: tuple[str, ...] = ("violation", "authorised", "data_error", "false_positive")
DECISIONS: tuple[str, ...] = ("acknowledged", *RESOLUTIONS, "reopened")
_MIN_PREFIX = 6


@dataclass(frozen=True)
class Target:
    target_type: str  # case | alert
    target_id: str


def resolve_target(con: duckdb.DuckDBPyConnection, ident: str) -> Target:
    """A case or alert id, or an unambiguous prefix of one (at least 6 characters)."""
    ident = ident.strip()
    for target_type, table, column in (
        ("case", "cases", "case_id"),
        ("alert", "alerts", "alert_id"),
    ):
        exact = con.execute(f"SELECT 1 FROM {table} WHERE {column} = ?", [ident]).fetchone()
        if exact:
            return Target(target_type, ident)
    matches: list[Target] = []
    if len(ident) >= _MIN_PREFIX:
        for target_type, table, column in (
            ("case", "cases", "case_id"),
            ("alert", "alerts", "alert_id"),
        ):
            rows = con.execute(
                f"SELECT {column} FROM {table} WHERE starts_with({column}, ?) LIMIT 5", [ident]
            ).fetchall()
            matches.extend(Target(target_type, r[0]) for r in rows)
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise InputError(
            f"{ident!r} matches {len(matches)} ids: {', '.join(m.target_id for m in matches)}",
            where="case/alert id",
            fix="give more characters of the id",
        )
    raise InputError(
        f"no case or alert with id {ident!r}",
        where="case/alert id",
        fix="run `dwatch alerts list` (cases start cs_, alerts al_); run `dwatch report` first if the list is empty",
    )


def record_decision(
    con: duckdb.DuckDBPyConnection,
    ident: str,
    decision: str,
    *,
    decided_by: str,
    note: str | None = None,
    decided_at: datetime | None = None,
) -> dict[str, Any]:
    """Append one decision; returns it as stored."""
    if decision not in DECISIONS:
        raise InputError(
            f"unknown decision {decision!r}",
            where="decision",
            fix=f"use one of: {', '.join(DECISIONS)}",
        )
    if not decided_by or not decided_by.strip():
        raise InputError("a decision needs who made it", where="decided_by", fix="pass --by NAME")
    if decision != "acknowledged" and not (note and note.strip()):
        raise InputError(
            f"a {decision} decision needs a note saying why",
            where="note",
            fix='pass --note "what you checked and why you decided this"',
        )
    target = resolve_target(con, ident)
    row = con.execute(
        "INSERT INTO triage_decisions (target_type, target_id, decision, decided_by, decided_at, note)"
        " VALUES (?, ?, ?, ?, coalesce(?::TIMESTAMPTZ, now()), ?)"
        " RETURNING decision_no, target_type, target_id, decision, decided_by, decided_at, note",
        [target.target_type, target.target_id, decision, decided_by.strip(), decided_at, note],
    ).fetchall()[0]  # fetchall: a half-read result blocks later work on the connection
    keys = (
        "decision_no",
        "target_type",
        "target_id",
        "decision",
        "decided_by",
        "decided_at",
        "note",
    )
    return dict(zip(keys, row, strict=True))


def decision_history(con: duckdb.DuckDBPyConnection, target: Target) -> list[dict[str, Any]]:
    """Every decision about the target (and, for an alert, about its case), oldest first."""
    cursor = con.execute(
        """
        SELECT d.decision_no, d.target_type, d.target_id, d.decision, d.decided_by, d.decided_at, d.note
        FROM triage_decisions d
        WHERE (d.target_type = ? AND d.target_id = ?)
           OR (? = 'alert' AND d.target_type = 'case'
               AND d.target_id = (SELECT case_id FROM case_alerts WHERE alert_id = ?))
        ORDER BY d.decided_at, d.decision_no
        """,
        [target.target_type, target.target_id, target.target_type, target.target_id],
    )
    columns = [c[0] for c in cursor.description]
    return [dict(zip(columns, r, strict=True)) for r in cursor.fetchall()]
