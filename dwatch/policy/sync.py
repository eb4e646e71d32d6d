"""Materialise the registry into the store's ``registry_*`` tables.

Rules run as SQL joins against these tables, and analysts query them. Each sync replaces
the tables' contents with the given registry and records its version; the caller owns the
transaction (``dwatch.store.transaction``) so the registry is never half-replaced.
"""

from __future__ import annotations

import json
from typing import Any

import duckdb

from dwatch.policy.models import BINDING_ORDER_STATUSES, as_instant
from dwatch.policy.registry import Registry

_TABLES = (
    "registry_authorities",
    "registry_authority_aliases",
    "registry_authority_requester_roles",
    "registry_court_orders",
    "registry_order_status",
    "registry_order_restraints",
    "registry_order_exceptions",
    "registry_agreements",
    "registry_agreement_aliases",
    "registry_agreement_status",
    "registry_recipients",
    "registry_recipient_aliases",
    "registry_recipient_patterns",
    "registry_parameters",
    "registry_reconciliations",
    "registry_retention_terms",
)


def _sources(entries: list[Any]) -> str:
    return json.dumps([s.model_dump(exclude_none=True) for s in entries])


def _insert(con: duckdb.DuckDBPyConnection, table: str, rows: list[tuple[Any, ...]]) -> None:
    if not rows:
        return
    marks = ", ".join("?" for _ in rows[0])
    con.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)


def sync_registry(con: duckdb.DuckDBPyConnection, registry: Registry) -> None:
    """Replace the registry_* tables' contents with ``registry``."""
    version = registry.version
    for table in _TABLES:
        con.execute(f"DELETE FROM {table}")

    _insert(
        con,
        "registry_authorities",
        [
            (
                a.id,
                a.title,
                a.kind,
                as_instant(a.effective_from),
                as_instant(a.effective_to),
                a.recipient_categories,
                [c.upper() for c in a.recipient_codes],
                a.purposes,
                a.data_elements_allowed,
                a.data_elements_forbidden,
                a.request.written_request,
                a.request.required_elements,
                a.request.requires_court_order,
                a.redisclosure_allowed,
                a.case_by_case,
                a.safeguards_required,
                bool(a.subdivisions),
                a.accounting_fields,
                _sources(a.sources),
                version,
                a.subdivisions,
            )
            for a in registry.authorities
        ],
    )
    _insert(
        con,
        "registry_authority_aliases",
        [(alias, a.id) for a in registry.authorities for alias in a.aliases],
    )
    _insert(
        con,
        "registry_authority_requester_roles",
        [
            (a.id, role, rr.recipient_categories, [c.upper() for c in rr.recipient_codes])
            for a in registry.authorities
            for rr in a.request.requester_roles
            for role in rr.roles
        ],
    )
    _insert(
        con,
        "registry_court_orders",
        [
            (
                o.id,
                o.case,
                o.court,
                o.docket,
                o.issued,
                o.kind,
                o.summary,
                _sources(o.sources),
                version,
            )
            for o in registry.court_orders
        ],
    )
    status_rows = []
    for o in registry.court_orders:
        for i, change in enumerate(o.status_history):
            nxt = o.status_history[i + 1].on if i + 1 < len(o.status_history) else None
            status_rows.append(
                (
                    o.id,
                    change.status,
                    as_instant(change.on),
                    as_instant(nxt),
                    change.status in BINDING_ORDER_STATUSES,
                    change.note,
                )
            )
    _insert(con, "registry_order_status", status_rows)
    # Agencies an order or agreement names are resolved as events' agencies are: a party
    # written "ICE" is the recipient DHS-ICE that the logs' "US ICE" resolves to.
    agencies = registry.resolve_agency
    _insert(
        con,
        "registry_order_restraints",
        [
            (
                o.id,
                n,
                r.description,
                [agencies(c) for c in r.disclosing_agencies],
                r.disclosing_categories,
                [agencies(c) for c in r.recipient_agencies],
                r.recipient_categories,
                [agencies(c) for c in r.holder_agencies],
                r.holder_categories,
                r.event_types,
                r.data_elements,
                r.purposes,
                as_instant(r.effective_from),
                as_instant(r.effective_to),
                r.words,
                r.reading,
            )
            for o in registry.court_orders
            for n, r in enumerate(o.restraints)
        ],
    )
    _insert(
        con,
        "registry_order_exceptions",
        [
            (o.id, n, k, x.description, x.authorities, x.purposes, x.requires_case_number)
            for o in registry.court_orders
            for n, r in enumerate(o.restraints)
            for k, x in enumerate(r.exceptions)
        ],
    )
    _insert(
        con,
        "registry_agreements",
        [
            (
                g.id,
                g.title,
                g.kind,
                [agencies(p) for p in g.parties],
                g.authorities,
                g.signed,
                as_instant(g.effective_from),
                g.ends,
                g.suspended_by_orders,
                _sources(g.sources),
                version,
            )
            for g in registry.agreements
        ],
    )
    _insert(
        con,
        "registry_agreement_aliases",
        [(alias.upper(), g.id) for g in registry.agreements for alias in {g.id, *g.aliases}],
    )
    agreement_status = []
    for g in registry.agreements:
        for i, change in enumerate(g.status_history):
            nxt = g.status_history[i + 1].on if i + 1 < len(g.status_history) else None
            agreement_status.append(
                (g.id, change.status, as_instant(change.on), as_instant(nxt), change.note)
            )
    _insert(con, "registry_agreement_status", agreement_status)
    _insert(
        con,
        "registry_recipients",
        [
            (
                r.code,
                r.name,
                r.category,
                r.parent,
                r.safeguards.status,
                r.safeguards.reviewed_on,
                r.safeguards.note,
                _sources(r.sources),
                version,
                r.safeguards.due_on,
                r.time_zone,
            )
            for r in registry.recipients
        ],
    )
    _insert(
        con,
        "registry_recipient_aliases",
        [(alias.upper(), r.code) for r in registry.recipients for alias in r.aliases],
    )
    _insert(
        con,
        "registry_recipient_patterns",
        [
            (i, p.pattern, p.category, p.name, p.safeguards.status)
            for i, p in enumerate(registry.recipient_patterns)
        ],
    )
    _sync_custody(con, registry)
    _insert(
        con,
        "registry_parameters",
        [(k, json.dumps(v)) for k, v in registry.parameters.model_dump(mode="json").items()],
    )
    con.execute(
        "INSERT INTO registry_versions (registry_version, declared_version, files)"
        " VALUES (?, ?, ?) ON CONFLICT (registry_version) DO UPDATE SET last_synced_at = now()",
        [version, registry.header.version, [str(f.name) for f in registry.files]],
    )


def _sync_custody(con: duckdb.DuckDBPyConnection, registry: Registry) -> None:
    _insert(
        con,
        "registry_reconciliations",
        [
            (
                r.id,
                r.title,
                [a.upper() for a in r.sender_agencies],
                [a.upper() for a in r.recipient_agencies],
                r.sender_sources,
                r.receiver_sources,
                r.disclosure_event_types,
                r.receipt_event_types,
                list(r.match_on),
                r.min_record_count,
                r.clock_skew_hours,
                r.receipt_within_hours,
                r.missing_after_hours,
                r.record_count_tolerance,
                r.record_count_tolerance_ratio,
                as_instant(r.effective_from),
                as_instant(r.effective_to),
                _sources(r.sources),
                registry.version,
            )
            for r in registry.reconciliations
        ],
    )
    _insert(
        con,
        "registry_retention_terms",
        [
            (
                t.id,
                t.title,
                t.agreements,
                t.court_orders,
                [a.upper() for a in t.recipient_agencies],
                t.recipient_categories,
                t.dispose_within_days,
                as_instant(t.dispose_by),
                as_instant(t.effective_from),
                as_instant(t.effective_to),
                _sources(t.sources),
                registry.version,
            )
            for t in registry.retention_terms
        ],
    )
