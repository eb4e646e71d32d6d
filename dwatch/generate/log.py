"""Hand-built events (bulk schedules, criminal requests, scenarios) and their labels.

Each hand-built event gets a *hook*: its event id is only known once the writer has given
it a sequence number, so items and ground-truth labels refer to hooks and are resolved to
(source_system, event_id) after the events are written.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl

from dwatch.generate.world import Agency, World

ITEM_FIELDS = (
    "item_no",
    "taxpayer_tin",
    "supplied_name",
    "supplied_address",
    "tax_periods",
    "statute",
    "reason",
    "match_method",
)


@dataclass
class Instance:
    """One injected scenario instance, as the ground truth will list it."""

    scenario: str
    instance_id: str
    hooks: list[int] = field(default_factory=list)
    # (request_id, event hook, item_no) of the request items that matter per taxpayer.
    item_refs: list[tuple[str, int, int]] = field(default_factory=list)
    # Filled while writing (tampering acts on rows that only exist then).
    events: list[tuple[str, str]] = field(default_factory=list)
    deleted: list[tuple[str, str]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class ItemBlock:
    """Request items carried by one hand-built event.

    ``frames`` yields frames with the ITEM_FIELDS columns and an optional boolean
    ``_label``: rows flagged True are added to ``instance``'s item labels.
    """

    hook: int
    request_id: str
    source: int
    frames: Callable[[], Iterator[pl.DataFrame]]
    instance: Instance | None = None


@dataclass
class TamperSpec:
    """Log tampering applied while writing: acts on the first background rows of
    ``source`` at or after ``after`` (epoch seconds)."""

    kind: str  # deleted_range | duplicate | out_of_order
    source: int
    after: int
    length: int
    shift: int  # seconds moved back (out_of_order)
    instance: Instance
    remaining: int = -1
    await_next: bool = False

    def __post_init__(self) -> None:
        self.remaining = self.length


class SpecialLog:
    def __init__(self, world: World) -> None:
        self.world = world
        self.rows: list[dict[str, Any]] = []
        self.items: list[ItemBlock] = []
        self.instances: list[Instance] = []
        self.tampers: list[TamperSpec] = []
        self.noise: dict[str, list[int]] = {"correction": []}
        self._src = {a.source_system: i for i, a in enumerate(world.sources)}

    # -- time helpers ----------------------------------------------------------------

    def at(
        self, day: dt.date, tz: str, rng: np.random.Generator, lo: float = 8.0, hi: float = 17.0
    ) -> int:
        """Epoch seconds of a random instant between local hours lo and hi on ``day``."""
        seconds = int(rng.uniform(lo * 3600, hi * 3600))
        local = dt.datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(tz)) + dt.timedelta(
            seconds=seconds
        )
        return int(local.timestamp())

    def business_day(self, rng: np.random.Generator, start: dt.date, end: dt.date) -> dt.date:
        days = self.world.business_days(start, end)
        return days[int(rng.integers(len(days)))]

    def add_business_days(self, day: dt.date, n: int) -> dt.date:
        while n > 0:
            day += dt.timedelta(days=1)
            if self.world.is_business_day(day):
                n -= 1
        return day

    # -- events --------------------------------------------------------------------

    def add(
        self,
        *,
        t: int,
        source: Agency,
        event_type: str,
        recipient: str,
        actor: tuple[str, str],
        data_elements: list[str],
        record_count: int = 1,
        disclosing: str | None = None,
        request_id: str | None = None,
        legal_authority: str | None = None,
        purpose: str | None = None,
        taxpayer_tin: str | None = None,
        channel: str | None = None,
        encrypted: bool | None = None,
        agreement_id: str | None = None,
        case_number: str | None = None,
        description: str | None = None,
        outcome: str = "success",
        instance: Instance | None = None,
    ) -> int:
        hook = len(self.rows)
        self.rows.append(
            {
                "_t": int(t),
                "_src": self._src[source.source_system],
                "event_type": event_type,
                "disclosing_agency": disclosing or self.world.discloser.code,
                "recipient_agency": recipient,
                "actor_id": actor[0],
                "actor_role": actor[1],
                "request_id": request_id,
                "legal_authority": legal_authority,
                "purpose": purpose,
                "data_elements": list(data_elements),
                "record_count": int(record_count),
                "taxpayer_tin": taxpayer_tin,
                "channel": channel,
                "encrypted": encrypted,
                "agreement_id": agreement_id,
                "case_number": case_number,
                "description": description,
                "outcome": outcome,
            }
        )
        if instance is not None:
            instance.hooks.append(hook)
        return hook

    def add_items(
        self,
        hook: int,
        request_id: str,
        frames: Callable[[], Iterator[pl.DataFrame]],
        instance: Instance | None = None,
    ) -> None:
        self.items.append(ItemBlock(hook, request_id, self.rows[hook]["_src"], frames, instance))

    def add_item_rows(
        self,
        hook: int,
        request_id: str,
        rows: list[dict[str, Any]],
        instance: Instance | None = None,
    ) -> None:
        frame = pl.DataFrame(
            [{k: r.get(k) for k in (*ITEM_FIELDS, "_label")} for r in rows],
            schema={
                **dict.fromkeys(ITEM_FIELDS, pl.String),
                "item_no": pl.Int64,
                "_label": pl.Boolean,
            },
        )
        self.add_items(hook, request_id, lambda: iter([frame]), instance)

    def instance(self, scenario: str, number: int, **details: Any) -> Instance:
        inst = Instance(scenario, f"{scenario}-{number}", details=dict(details))
        self.instances.append(inst)
        return inst

    def frame(self) -> pl.DataFrame:
        """All hand-built events, in time order, in the background chunk layout."""
        n = len(self.rows)
        columns: dict[str, Any] = {
            k: [r[k] for r in self.rows] for k in (self.rows[0] if self.rows else {"_t": 0})
        }
        schema: dict[str, pl.DataType] = {
            "_t": pl.Int64(),
            "_src": pl.Int32(),
            "data_elements": pl.List(pl.String()),
            "record_count": pl.Int64(),
            "encrypted": pl.Boolean(),
        }
        body = pl.DataFrame(
            columns if n else None,
            schema={
                k: schema.get(k, pl.String())
                for k in (self.rows[0].keys() if n else ["_t", "_src"])
            },
        )
        hooks = np.arange(n, dtype=np.int64)
        return body.with_columns(
            pl.lit(0, dtype=pl.Int8).alias("_kind"),
            pl.Series("_ord", hooks),
            pl.Series("_hook", hooks),
            pl.lit(0, dtype=pl.Int64).alias("_late"),
        ).sort("_t", "_ord")
