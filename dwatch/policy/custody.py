"""Registry entries about custody after a disclosure: which logs reconcile, and disposal terms.

A monitor checks two sides of every transfer (the sender's ledger and the recipient's receipt
log) and that data is destroyed when an agreement or a court says so (domain primer,
"Accounting, reconciliation and disposal"). Both are law and policy, so both are data here.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from dwatch.policy.models import Source, When, _Strict

# Event fields that may pair a disclosure with its receipt (with the two agencies, always).
MatchField = Literal["request_id", "agreement_id", "data_elements", "taxpayer_ref"]


class Reconciliation(_Strict):
    """A sender's ledger that must agree with its recipients' receipt logs."""

    id: str = Field(min_length=1)
    title: str
    sender_agencies: list[str] = Field(default_factory=list, description="Empty = any.")
    recipient_agencies: list[str] = Field(default_factory=list, description="Empty = any.")
    sender_sources: list[str] = Field(
        default_factory=list, description="Ledger source_system; empty = any."
    )
    receiver_sources: list[str] = Field(
        default_factory=list, description="Receipt-log source_system; empty = any."
    )
    disclosure_event_types: list[str] = Field(default_factory=lambda: ["disclosure"])
    receipt_event_types: list[str] = Field(default_factory=lambda: ["receipt"])
    match_on: list[MatchField] = Field(default_factory=lambda: ["request_id"])
    # Transfers of fewer records are not reconciled (single-record lookups are often logged
    # as uses in the recipient's log rather than as receipts).
    min_record_count: int = Field(default=0, ge=0)
    clock_skew_hours: float = Field(default=1.0, ge=0)
    receipt_within_hours: float = Field(default=72.0, gt=0)
    missing_after_hours: float = Field(default=168.0, gt=0)
    record_count_tolerance: int = Field(default=0, ge=0)
    record_count_tolerance_ratio: float = Field(default=0.0, ge=0, lt=1)
    effective_from: When
    effective_to: When | None = None
    sources: list[Source] = Field(min_length=1)

    @model_validator(mode="after")
    def _windows(self) -> Reconciliation:
        if self.missing_after_hours < self.receipt_within_hours:
            raise ValueError(
                "missing_after_hours must be at least receipt_within_hours (a receipt is late"
                " before it is missing)"
            )
        return self


class RetentionTerm(_Strict):
    """When received data must be destroyed: days after receipt, or by a date, or both."""

    id: str = Field(min_length=1)
    title: str
    agreements: list[str] = Field(
        default_factory=list, description="Receipts under these agreements."
    )
    court_orders: list[str] = Field(default_factory=list, description="Orders that set the term.")
    recipient_agencies: list[str] = Field(default_factory=list)
    recipient_categories: list[str] = Field(default_factory=list)
    dispose_within_days: int | None = Field(default=None, gt=0)
    dispose_by: When | None = None
    effective_from: When
    effective_to: When | None = None
    sources: list[Source] = Field(min_length=1)

    @model_validator(mode="after")
    def _term(self) -> RetentionTerm:
        if self.dispose_within_days is None and self.dispose_by is None:
            raise ValueError(
                "give dispose_within_days (after receipt), dispose_by (a date), or both"
            )
        if not (self.agreements or self.recipient_agencies or self.recipient_categories):
            raise ValueError(
                "say whose data the term covers: agreements, recipient_agencies or recipient_categories"
            )
        return self
