"""As-of questions about the registry, in Python (the engine asks the same in SQL).

An order, authority or agreement is judged at an instant: a registry day starts at
00:00 UTC, a status lasts until the next one, an ``effective_to`` is exclusive.
"""

from __future__ import annotations

from datetime import datetime

from dwatch.policy.models import BINDING_ORDER_STATUSES, StatusChange, as_instant
from dwatch.policy.registry import Registry


def order_status_at(registry: Registry, order_id: str, when: datetime) -> StatusChange | None:
    """The status entry in effect at ``when`` (None before the order's first entry)."""
    current: StatusChange | None = None
    for change in registry.court_orders_by_id[order_id].status_history:
        start = as_instant(change.on)
        if start is not None and start <= when:
            current = change
    return current


def order_binds_at(registry: Registry, order_id: str, when: datetime) -> bool:
    status = order_status_at(registry, order_id, when)
    return status is not None and status.status in BINDING_ORDER_STATUSES


def authority_in_force_at(registry: Registry, authority_id: str, when: datetime) -> bool:
    authority = registry.authorities_by_id[authority_id]
    start, end = as_instant(authority.effective_from), as_instant(authority.effective_to)
    return (start is None or when >= start) and (end is None or when < end)


def agreement_state_at(registry: Registry, agreement_id: str, when: datetime) -> str:
    """'in_force', 'not_yet_in_effect', 'expired', its own status, or 'suspended_by:<order>'."""
    agreement = registry.agreements_by_id[agreement_id]
    start, end = as_instant(agreement.effective_from), as_instant(agreement.effective_to)
    if start is not None and when < start:
        return "not_yet_in_effect"
    if end is not None and when >= end:
        return "expired"
    own = None
    for change in agreement.status_history:
        begun = as_instant(change.on)
        if begun is not None and begun <= when:
            own = change.status
    if own is not None and own != "in_force":
        return own
    for order_id in agreement.suspended_by_orders:
        if order_binds_at(registry, order_id, when):
            return f"suspended_by:{order_id}"
    return "in_force"
