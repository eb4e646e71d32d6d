"""The probe's world: events with their truth, before any log layout is applied.

An event is a dict of canonical fields plus truth kept beside it (``label``, ``instance``,
``kind``, ``chain``). Sequence numbers are given per log in the order rows were *logged*,
which is not always the order things happened (late batches, back-dating).
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from benchmarks.probe import vocab

START = datetime(2025, 1, 1, tzinfo=UTC)
END = datetime(2026, 6, 30, 23, 0, tzinfo=UTC)

# The logs the probe writes: name -> (id style, zone the log writes its times in).
SOURCES: dict[str, tuple[str, str]] = {
    "kiteworks-activity": ("numeric", "America/New_York"),
    "pub1075-audit": ("numeric", "Pacific/Honolulu"),
    "irs-disclosure-office": ("uuid", "America/New_York"),
    "irs-matching-exchange": ("dated", "America/New_York"),
    "fed-le-receipts": ("prefixed", "America/Los_Angeles"),
    "txoag-fti-ledger": ("slashed", "America/Chicago"),
    "ssa-pa-disclosures": ("numeric", "America/Phoenix"),
}

# Logs whose rows are sometimes written hours after the event (normal for them).
LAGGY_SOURCES = frozenset({"fed-le-receipts", "txoag-fti-ledger"})


@dataclass
class Instance:
    """One injected case: a violation or a behavioural anomaly, and who should find it."""

    instance_id: str
    kind: str
    family: str  # rule | behaviour | log_integrity
    expected: list[str]  # detectors expected to find it (any one finds the instance)
    acceptable: list[str] = field(default_factory=list)  # also right if they alert on it
    note: str = ""


@dataclass
class World:
    seed: int
    events_target: int
    rng: random.Random = field(init=False)
    events: list[dict[str, Any]] = field(default_factory=list)
    items: list[dict[str, Any]] = field(default_factory=list)
    instances: dict[str, Instance] = field(default_factory=dict)
    subjects: list[dict[str, str]] = field(default_factory=list)  # per-taxpayer truth
    dropped: list[dict[str, Any]] = field(default_factory=list)  # deleted from a log
    _ids: dict[str, itertools.count[int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        for n, source in enumerate(SOURCES):
            self._ids[source] = itertools.count(4_100_000 + n * 7_919)

    # ------------------------------------------------------------------ building events

    def event_id(self, source: str, at: datetime) -> str:
        style = SOURCES[source][0]
        n = next(self._ids[source])
        if style == "uuid":
            return vocab.uid(self.rng)
        if style == "dated":
            return f"MX{at:%Y%m%d}-{n:07d}"
        if style == "prefixed":
            return f"RX-{self.rng.getrandbits(40):010x}"
        if style == "slashed":
            return f"TXOAG/{at:%Y}/{n:07d}"
        return str(n)

    def add(
        self,
        source: str,
        at: datetime,
        event_type: str,
        *,
        disclosing: str,
        recipient: str,
        actor: str,
        label: str = "lawful",
        instance: str | None = None,
        lag: timedelta | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """One event; ``lag`` is how long after it happened the log wrote it."""
        if lag is None and source in LAGGY_SOURCES and self.rng.random() < 0.05:
            # this log uploads in batches: isolated rows arrive half an hour to a day late
            lag = timedelta(hours=self.rng.uniform(0.5, 20))
        event: dict[str, Any] = {
            "source_system": source,
            "event_id": self.event_id(source, at),
            "occurred_at": at,
            "event_type": event_type,
            "disclosing_agency": disclosing,
            "recipient_agency": recipient,
            "actor_id": actor,
            "record_count": 1,
            "data_elements": ["name", "address", "tin"],
            **fields,
            "label": label,
            "instance": instance,
            "logged_at": at
            + (lag if lag is not None else timedelta(seconds=self.rng.randint(1, 90))),
        }
        self.events.append(event)
        return event

    def item(self, carrier: dict[str, Any], item_no: int, **fields: Any) -> dict[str, Any]:
        """A request item (one subject) carried by a request or disclosure event."""
        row = {
            "request_id": carrier["request_id"],
            "event_id": carrier["event_id"],
            "item_no": item_no,
            "source_system": carrier["source_system"],
            **fields,
        }
        self.items.append(row)
        return row

    def instance(self, kind: str, family: str, expected: list[str], **kw: Any) -> str:
        n = sum(1 for i in self.instances.values() if i.kind == kind) + 1
        instance_id = f"{kind}#{n}"
        self.instances[instance_id] = Instance(instance_id, kind, family, expected, **kw)
        return instance_id

    def truth_subject(
        self, truth_set: str, tin: str, instance: str | None, request_id: str
    ) -> None:
        self.subjects.append(
            {
                "truth_set": truth_set,
                "taxpayer": tin,
                "instance_id": instance or "",
                "request_id": request_id,
            }
        )

    # ------------------------------------------------------------------ time helpers

    def local(
        self, day: date, zone: str, hour: int, minute: int = 0, jitter_min: int = 0
    ) -> datetime:
        """A local wall time on ``day`` in ``zone``, as UTC, with some minutes of jitter."""
        minute = minute + (self.rng.randint(0, jitter_min) if jitter_min else 0)
        at = datetime(day.year, day.month, day.day, hour, 0, tzinfo=ZoneInfo(zone))
        return (at + timedelta(minutes=minute)).astimezone(UTC)

    def days(self, start: datetime = START, end: datetime = END) -> list[date]:
        d, out = start.date(), []
        while d <= end.date():
            out.append(d)
            d += timedelta(days=1)
        return out

    def uniform_time(self, start: datetime, end: datetime) -> datetime:
        span = (end - start).total_seconds()
        return start + timedelta(seconds=self.rng.uniform(0, span))

    # ------------------------------------------------------------------ sequence numbers

    def number_logs(self) -> None:
        """Sequence numbers per log in the order rows were logged (ties by time)."""
        self.events.sort(key=lambda e: (e["source_system"], e["logged_at"], e["occurred_at"]))
        for _source, rows in itertools.groupby(self.events, key=lambda e: e["source_system"]):
            n = 0
            for event in rows:
                # a twin takes the number of the row before it (two ids, one number)
                n += 0 if event.get("seq_twin") and n else 1
                event["sequence_no"] = n

    def lawful_count(self) -> int:
        return sum(1 for e in self.events if e["label"] == "lawful")
