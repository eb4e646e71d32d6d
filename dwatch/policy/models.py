"""The policy registry's shape: authorities, court orders, agreements, recipients.

These pydantic models are the registry's schema. Unknown keys are rejected (a typo in a
court order must not silently widen or narrow what it restrains). Dates are calendar days
in UTC unless a full timestamp is given; a status or validity that starts on a day starts
at 00:00 UTC of that day.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

OrderStatus = Literal["in_force", "stayed", "modified", "vacated", "expired", "reversed"]
# Statuses under which an order's restraints bind.
BINDING_ORDER_STATUSES: frozenset[str] = frozenset({"in_force", "modified"})
AgreementStatus = Literal["in_force", "suspended", "terminated", "expired"]
AuthorityKind = Literal[
    "disclosure_authority",  # permits a disclosure on its conditions
    "confidentiality_rule",  # the default prohibition a disclosure needs an exception to
    "accounting_requirement",  # what the discloser must record about each disclosure
    "safeguards_requirement",  # what a recipient must maintain to keep receiving
    "audit_standard",  # audit-trail requirements for systems holding FTI
    "penalty",  # the offence a violation amounts to
    "agreement_requirement",  # what a data-sharing or matching agreement must be
    "definition",  # defines terms; permits nothing
    "procedure",  # how disclosures are made, reported or regulated; permits nothing
]
SafeguardsStatus = Literal["current", "expired", "none", "not_required", "unknown"]


def _when(value: object) -> object:
    """Text with a time of day keeps it and its zone; a bare YYYY-MM-DD stays a day.

    Pydantic alone reads a quoted '2025-11-21T00:00:00-05:00' as the date 2025-11-21 and
    drops the offset (an unquoted one is a YAML timestamp and was kept): a court's local
    midnight would silently become 00:00 UTC. Unparseable text is left for pydantic to
    report against the field."""
    if isinstance(value, str) and len(text := value.strip()) > 10:
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            return value
    return value


When = Annotated[date | datetime, BeforeValidator(_when)]


def as_instant(value: date | datetime | None) -> datetime | None:
    """A registry day starts at 00:00 UTC; a naive timestamp is read as UTC."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime(value.year, value.month, value.day, tzinfo=UTC)


_SUBDIVISION_RE = re.compile(r"(\([A-Za-z0-9]{1,5}\))+")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class Source(_Strict):
    """Where an entry's content comes from (statute text, docket, reporting)."""

    cite: str = Field(min_length=1)
    url: str | None = None
    note: str | None = None


class RequesterRoles(_Strict):
    """Roles that may sign a request, optionally only for some recipients."""

    roles: list[str] = Field(min_length=1)
    recipient_categories: list[str] = Field(default_factory=list)
    recipient_codes: list[str] = Field(default_factory=list)


class RequestRequirements(_Strict):
    written_request: bool = False
    requester_roles: list[RequesterRoles] = Field(default_factory=list)
    # Elements each request item must set forth (name, address, tax_periods, statute, reason).
    required_elements: list[str] = Field(default_factory=list)
    requires_court_order: bool = False


class Authority(_Strict):
    id: str = Field(min_length=1, description="Normalised citation, e.g. '26 USC 6103(i)(2)'.")
    title: str
    kind: AuthorityKind = "disclosure_authority"
    aliases: list[str] = Field(default_factory=list)
    effective_from: When | None = None
    effective_to: When | None = None
    # Who may receive: by category so agencies never seen before are judged right, plus
    # explicit codes where the statute names an agency. Empty both = not restricted here.
    recipient_categories: list[str] = Field(default_factory=list)
    recipient_codes: list[str] = Field(default_factory=list)
    purposes: list[str] = Field(
        default_factory=list, description="Allowed purpose codes; empty = any."
    )
    data_elements_allowed: list[str] = Field(default_factory=list, description="Empty = any.")
    data_elements_forbidden: list[str] = Field(default_factory=list)
    request: RequestRequirements = Field(default_factory=RequestRequirements)
    redisclosure_allowed: bool = True
    case_by_case: bool = Field(
        False, description="Meant for individual requests; bulk use is an outlier."
    )
    safeguards_required: bool = False
    # The deeper subdivisions the statute has under this provision, relative to it
    # ("(A)", "(B)(i)"): a citation of one resolves here. A subdivision not listed is
    # unrecognised, never read as this one (the statute may not have it).
    subdivisions: list[str] = Field(default_factory=list)
    accounting_fields: list[str] = Field(
        default_factory=list, description="For accounting requirements: what each entry must hold."
    )
    sources: list[Source] = Field(min_length=1)

    @field_validator("id")
    @classmethod
    def _id_is_canonical(cls, value: str) -> str:
        if "  " in value or value != value.strip():
            raise ValueError("authority id must be a single-spaced normalised citation")
        return value

    @field_validator("subdivisions")
    @classmethod
    def _subdivisions_are_paths(cls, value: list[str]) -> list[str]:
        bad = [s for s in value if not _SUBDIVISION_RE.fullmatch(s)]
        if bad:
            raise ValueError(
                f"subdivisions are paths relative to the authority, like '(A)' or '(B)(i)';"
                f" not {', '.join(map(repr, bad))}"
            )
        return value


class StatusChange(_Strict):
    status: OrderStatus
    on: When = Field(alias="from")
    note: str | None = None
    source: Source | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class RestraintException(_Strict):
    """Conduct an order does not reach; every listed condition must hold."""

    description: str
    authorities: list[str] = Field(default_factory=list)
    purposes: list[str] = Field(default_factory=list)
    requires_case_number: bool = False


class Restraint(_Strict):
    description: str
    # The order's own words for what it restrains and whom (quoted), and where they are
    # ambiguous (does an order against ICE reach HSI's criminal work?) the reading this
    # registry chose: every finding under the restraint says which reading it used.
    words: str | None = None
    reading: str | None = None
    disclosing_agencies: list[str] = Field(default_factory=list)
    disclosing_categories: list[str] = Field(default_factory=list)
    recipient_agencies: list[str] = Field(default_factory=list)
    recipient_categories: list[str] = Field(default_factory=list)
    # The enjoined holder of data already received: matches the agency on EITHER side of
    # a use event (logs differ on whether an access names the data's origin or the user).
    holder_agencies: list[str] = Field(default_factory=list)
    holder_categories: list[str] = Field(default_factory=list)
    event_types: list[str] = Field(min_length=1)
    data_elements: list[str] = Field(default_factory=list, description="Empty = any data.")
    purposes: list[str] = Field(default_factory=list, description="Empty = any purpose.")
    # Narrowing or widening over time ("modified") is expressed per restraint.
    effective_from: When | None = None
    effective_to: When | None = None
    exceptions: list[RestraintException] = Field(default_factory=list)


class CourtOrder(_Strict):
    id: str = Field(min_length=1)
    case: str
    court: str
    docket: str
    issued: date
    kind: str = "preliminary_injunction"
    summary: str
    status_history: list[StatusChange] = Field(min_length=1)
    restraints: list[Restraint] = Field(min_length=1)
    sources: list[Source] = Field(min_length=1)


class AgreementStatusChange(_Strict):
    status: AgreementStatus
    on: When = Field(alias="from")
    note: str | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Agreement(_Strict):
    """An MOU or matching agreement. Its end is given either inclusive (``valid_through``:
    the last day it is in effect) or exclusive (``effective_to``: the first instant it
    no longer is), never both."""

    id: str = Field(min_length=1)
    title: str
    kind: Literal["mou", "computer_matching_agreement", "data_sharing_agreement", "other"] = "mou"
    aliases: list[str] = Field(default_factory=list)
    parties: list[str] = Field(min_length=2, description="Agency codes.")
    authorities: list[str] = Field(min_length=1)
    signed: date | None = None
    effective_from: When
    effective_to: When | None = None
    valid_through: date | None = None
    status_history: list[AgreementStatusChange] = Field(default_factory=list)
    # Suspended for as long as any of these orders binds.
    suspended_by_orders: list[str] = Field(default_factory=list)
    sources: list[Source] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_end(self) -> Agreement:
        if self.effective_to is not None and self.valid_through is not None:
            raise ValueError(
                "give the end once: valid_through (last day in effect, inclusive) or"
                " effective_to (first moment no longer in effect, exclusive)"
            )
        return self

    @property
    def ends(self) -> datetime | None:
        """The first instant the agreement is no longer in effect (exclusive)."""
        if self.valid_through is not None:
            return as_instant(self.valid_through + timedelta(days=1))
        return as_instant(self.effective_to)


class SafeguardsReview(_Strict):
    status: SafeguardsStatus = "unknown"
    reviewed_on: date | None = None
    # When the next review is due (the Office of Safeguards' schedule); past it without a
    # new review the recipient is "overdue since" that day. Absent: the last review plus
    # the registry's safeguards_review_max_age_days.
    due_on: date | None = None
    note: str | None = None


class SafeguardsReviewEntry(SafeguardsReview):
    """A review recorded on its own (``safeguard_reviews:``), naming the recipient by code,
    alias or name as events do; it replaces that recipient's ``safeguards``."""

    recipient: str = Field(min_length=1)
    sources: list[Source] = Field(default_factory=list)


class Recipient(_Strict):
    code: str = Field(min_length=1)
    name: str
    category: str
    aliases: list[str] = Field(default_factory=list)
    parent: str | None = None
    safeguards: SafeguardsReview = Field(default_factory=SafeguardsReview)
    # The agency's own IANA zone (its officials' working hours); the ML detectors read it
    # before their configuration's time_zones.
    time_zone: str | None = None
    sources: list[Source] = Field(default_factory=list)

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"{value!r} is not an IANA time zone (e.g. America/Chicago)") from exc
        return value

    @field_validator("code")
    @classmethod
    def _upper(cls, value: str) -> str:
        if value != value.upper():
            raise ValueError("recipient codes are upper case (events store them upper case)")
        return value


class RecipientPattern(_Strict):
    """Agencies recognised by the shape of their code (any state's tax agency)."""

    pattern: str = Field(min_length=1, description="Regular expression over the upper-case code.")
    category: str
    name: str
    safeguards: SafeguardsReview = Field(default_factory=SafeguardsReview)


class Parameters(_Strict):
    safeguards_review_max_age_days: int = 3 * 365 + 1
    # Event types that move data out of the discloser; the rest are uses by the holder.
    disclosure_event_types: list[str] = Field(default_factory=lambda: ["disclosure"])
    use_event_types: list[str] = Field(default_factory=lambda: ["access", "redisclosure"])
    # Event types that ask for data (their actor is the requester an authority may name).
    request_event_types: list[str] = Field(default_factory=lambda: ["request"])
    missing_citation_placeholders: list[str] = Field(default_factory=list)
    # Identifiers written to mean "none" (a case number of "N/A", "pending"); compared on
    # letters and digits, so "N/A", "n.a." and "(none)" are one.
    missing_value_placeholders: list[str] = Field(default_factory=list)
    # Data elements as other systems name them, per canonical element ("tin": ["SSN",
    # "social security number"]); compared as lower-case words joined by underscores.
    data_element_aliases: dict[str, list[str]] = Field(default_factory=dict)
    # Purposes as other systems state them, per purpose code ("child_support_enforcement":
    # ["child support"]). Compared on letters and digits, so "Non-Tax Criminal
    # Investigation" is nontax_criminal_investigation without an alias.
    purpose_aliases: dict[str, list[str]] = Field(default_factory=dict)
    approved_channels: list[str] = Field(default_factory=list)
    # Request-item addresses are judged from their structure (dwatch/address.py); these
    # words only mark a part that looks like structure as a placeholder ("Unknown",
    # "desconocido"); dummies are a form's example towns and street lines ("Anytown",
    # "123 Fake St"), compared folded on the city and on the house number and street name.
    address_placeholders: list[str] = Field(default_factory=list)
    address_dummies: list[str] = Field(default_factory=list)


class RegistryHeader(_Strict):
    version: str = Field(min_length=1)
    title: str = "Disclosure Watch policy registry"
    updated: date | None = None
    note: str | None = None
