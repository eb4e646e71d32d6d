"""The generator's world, read from ``catalog.yaml``: agencies, their logs, users and
agreements, the legitimate flows and the calendar (time zones, business hours, holidays).

Nothing here is random: the world is the same for every seed, so the agreements and
agencies it describes can be listed in the ground truth for other tools to check against.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import yaml

from dwatch import yamlfile
from dwatch.errors import ConfigError

CATALOG_PATH = Path(__file__).resolve().parent / "catalog.yaml"
DISCLOSER_SOURCE = 0  # index of the discloser's ledger among the source systems


@dataclass(frozen=True)
class Flow:
    """A legitimate flow of tax information under one authority."""

    key: str
    authority: str
    citations: tuple[str, ...]
    purpose: str
    raw: dict[str, Any]


@dataclass(frozen=True)
class Agreement:
    agreement_id: str
    recipient: str
    kind: str
    authority: str
    valid_from: dt.date
    valid_to: dt.date
    suspended_from: dt.date | None = None
    suspended_to: dt.date | None = None
    note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "agreement_id": self.agreement_id,
            "recipient": self.recipient,
            "kind": self.kind,
            "authority": self.authority,
            "valid_from": self.valid_from.isoformat(),
            "valid_to": self.valid_to.isoformat(),
            "suspended_from": self.suspended_from.isoformat() if self.suspended_from else None,
            "suspended_to": self.suspended_to.isoformat() if self.suspended_to else None,
            "note": self.note,
        }


@dataclass(frozen=True)
class Agency:
    code: str
    name: str
    category: str
    flow: str  # key into World.flows, or "criminal" / "ice"
    tz: str
    weight: float
    source_system: str
    timestamps: str  # "local" or "utc_z"
    event_prefix: str
    event_width: int
    users: tuple[tuple[str, str], ...]  # (actor_id, role)
    head: tuple[str, str]  # the official who signs requests: (actor_id, role)
    agreements: tuple[Agreement, ...] = ()

    def agreement_at(self, day: dt.date) -> Agreement | None:
        for agreement in self.agreements:
            if agreement.valid_from <= day <= agreement.valid_to:
                return agreement
        return None


@dataclass
class World:
    raw: dict[str, Any]
    start: dt.date
    end: dt.date
    holidays: frozenset[dt.date]
    flows: dict[str, Flow]
    discloser: Agency
    recipients: list[Agency]  # bulk-flow recipients (state, SSA, Census, DOJ, child support)
    criminal: list[Agency]
    ice: Agency
    sources: list[Agency] = field(default_factory=list)  # index = source id; 0 = discloser

    @property
    def agencies(self) -> list[Agency]:
        return [*self.recipients, *self.criminal, self.ice]

    def source_index(self, source_system: str) -> int:
        for i, agency in enumerate(self.sources):
            if agency.source_system == source_system:
                return i
        raise KeyError(source_system)

    def agency(self, code: str) -> Agency:
        for agency in [self.discloser, *self.agencies]:
            if agency.code == code:
                return agency
        raise KeyError(code)

    def is_business_day(self, day: dt.date) -> bool:
        return day.weekday() < 5 and day not in self.holidays

    def business_days(
        self, start: dt.date | None = None, end: dt.date | None = None
    ) -> list[dt.date]:
        day, last = start or self.start, end or self.end
        out = []
        while day <= last:
            if self.is_business_day(day):
                out.append(day)
            day += dt.timedelta(days=1)
        return out

    def next_business_day(self, day: dt.date) -> dt.date:
        while not self.is_business_day(day):
            day += dt.timedelta(days=1)
        return day


def _date(value: Any) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))


def _users(
    code: str, count: int, roles: list[str], prefix: str | None = None
) -> tuple[tuple[str, str], ...]:
    stem = prefix or f"{code.lower()}.u"
    # Role assignment cycles through the list so every agency has each role in proportion.
    return tuple((f"{stem}{j:04d}", roles[j % len(roles)]) for j in range(1, count + 1))


def _agreements(code: str, group: str, flow: Flow, cfg: dict[str, Any]) -> tuple[Agreement, ...]:
    prefix = cfg["prefix"].get(group)
    if prefix is None:
        return ()
    first = _date(cfg["first_valid_from"])
    term = int(cfg["term_years"])
    kind = flow.raw.get("agreement_kind", "mou")
    renewal = cfg.get("renewed", {}).get(code)
    suspended = {s["code"]: s for s in cfg.get("suspended", [])}.get(code)
    out: list[Agreement] = []
    first_to = first.replace(year=first.year + term) - dt.timedelta(days=1)
    if renewal:
        renewal = _date(renewal)
        first_to = renewal - dt.timedelta(days=1)
    sus = {}
    if suspended:
        sus = {
            "suspended_from": _date(suspended["from"]),
            "suspended_to": _date(suspended["to"]),
            "note": suspended.get("note"),
        }
    out.append(
        Agreement(
            f"{prefix}-{code}-{first.year}", code, kind, flow.authority, first, first_to, **sus
        )
    )
    if renewal:
        out.append(
            Agreement(
                f"{prefix}-{code}-{renewal.year}",
                code,
                kind,
                flow.authority,
                renewal,
                renewal.replace(year=renewal.year + term) - dt.timedelta(days=1),
            )
        )
    return tuple(out)


@cache
def load_world(path: Path = CATALOG_PATH) -> World:
    try:
        raw = yamlfile.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read the generator catalog: {exc}", where=str(path)) from exc
    try:
        return _build(raw)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ConfigError(
            f"generator catalog is malformed: {exc!r}",
            where=str(path),
            fix="compare with the structure documented at the top of catalog.yaml",
        ) from exc


def _build(raw: dict[str, Any]) -> World:
    flows = {
        key: Flow(key, f["authority"], tuple(f["citations"]), f["purpose"], f)
        for key, f in raw["flows"].items()
    }
    d = raw["discloser"]
    discloser = Agency(
        code=d["code"],
        name=d["name"],
        category="discloser",
        flow="discloser",
        tz=d["tz"],
        weight=0.0,
        source_system=d["source_system"],
        timestamps=d["timestamps"],
        event_prefix=d["event_id"]["prefix"],
        event_width=int(d["event_id"]["width"]),
        users=_users(d["code"], d["users"]["count"], d["users"]["roles"], d["users"]["prefix"]),
        head=(f"{d['code'].lower()}.gld.director", "disclosure_manager"),
    )
    recipients: list[Agency] = []
    criminal: list[Agency] = []
    for group, g in raw["agencies"].items():
        for member in g["members"]:
            code, name, tz, weight = member[0], member[1], member[2], float(member[3])
            src_tmpl = member[4] if len(member) > 4 else g.get("source_system", "{code}-fti-log")
            source = src_tmpl.format(code=code.lower())
            n_users = max(4, round(weight * g["users_per_weight"]))
            if group == "criminal":
                category, signer = member[5], member[6]
                agency = Agency(
                    code, name, category, "criminal", tz, weight, source,
                    g.get("timestamps", "utc_z"), f"{code}-FTI-", 7,
                    _users(code, n_users, g["roles"]),
                    (f"{code.lower()}.{signer}", signer),
                )  # fmt: skip
                criminal.append(agency)
                continue
            flow = flows[group]
            agency = Agency(
                code, name, g["category"], group, tz, weight, source,
                g.get("timestamps", "utc_z"), f"{code}-", 9,
                _users(code, n_users, g["roles"]),
                (f"{code.lower()}.head", "head_of_agency"),
                _agreements(code, group, flow, raw["agreements"]),
            )  # fmt: skip
            recipients.append(agency)
    ic = raw["ice_case"]
    mou = ic["agreement"]
    ice = Agency(
        ic["requester"], ic["requester_name"], ic["requester_category"], "ice", ic["tz"], 1.0,
        ic["source_system"], "utc_z", "ICE-FTI-", 8,
        _users(ic["requester"], ic["users"]["count"], ic["users"]["roles"], ic["users"]["prefix"]),
        (ic["signer"]["actor_id"], ic["signer"]["role"]),
        (Agreement(mou["id"], ic["requester"], mou["kind"], flows["criminal_i2"].authority,
                   _date(mou["valid_from"]), dt.date(2099, 12, 31)),),
    )  # fmt: skip
    world = World(
        raw=raw,
        start=_date(raw["window"]["start"]),
        end=_date(raw["window"]["end"]),
        holidays=frozenset(_date(h) for h in raw["holidays"]),
        flows=flows,
        discloser=discloser,
        recipients=recipients,
        criminal=criminal,
        ice=ice,
    )
    world.sources = [discloser, *recipients, *criminal, ice]
    return world


def registry_agreements(world: World) -> list[dict[str, Any]]:
    """The generated agreements in the policy registry's ``agreements`` shape, so a
    registry can be patched to know them (the ICE MOU is in the real registry already)."""
    out: list[dict[str, Any]] = []
    for agency in world.recipients:
        for g in agency.agreements:
            history: list[dict[str, Any]] = []
            if g.suspended_from and g.suspended_to:
                history = [
                    {"status": "suspended", "from": g.suspended_from.isoformat(), "note": g.note},
                    {
                        "status": "in_force",
                        "from": (g.suspended_to + dt.timedelta(days=1)).isoformat(),
                    },
                ]
            out.append(
                {
                    "id": g.agreement_id,
                    "title": f"{g.kind.replace('_', ' ')} between {world.discloser.code} and {agency.code}",
                    "kind": g.kind,
                    "parties": [world.discloser.code, agency.code],
                    "authorities": [g.authority],
                    "effective_from": g.valid_from.isoformat(),
                    # The registry reads effective_to as an exclusive instant (00:00 UTC);
                    # valid_to here is the last day in force, inclusive.
                    "effective_to": (g.valid_to + dt.timedelta(days=1)).isoformat(),
                    "status_history": history,
                    "sources": [{"cite": "synthetic agreement from dwatch.generate catalog.yaml"}],
                }
            )
    return out


# --- the calendar as an intensity over UTC hours ------------------------------------


@dataclass(frozen=True)
class Intensity:
    """Background activity per UTC hour of the window, split by time zone.

    ``cdf`` is the cumulative share of all background events up to the end of each hour;
    ``tz_cdf[h]`` the cumulative probability of each time zone given hour ``h``.
    """

    start_epoch: int
    tzs: tuple[str, ...]
    cdf: np.ndarray
    tz_cdf: np.ndarray


def local_activity(world: World, tz: str, hours_utc: np.ndarray, start_epoch: int) -> np.ndarray:
    """Relative activity of an agency in ``tz`` during each UTC hour (DST-correct)."""
    act = world.raw["activity"]
    hourly = np.asarray(act["hourly"], dtype=np.float64)
    utc = pl.Series((start_epoch + hours_utc.astype(np.int64) * 3600) * 1_000_000)
    local = utc.cast(pl.Datetime("us")).dt.replace_time_zone("UTC").dt.convert_time_zone(tz)
    frame = pl.DataFrame({"local": local}).select(
        pl.col("local").dt.hour().alias("hour"),
        pl.col("local").dt.weekday().alias("weekday"),  # 1 = Monday .. 7 = Sunday
        pl.col("local").dt.date().alias("day"),
        pl.col("local").dt.offset_by("3d").dt.month().alias("month_in_3d"),
        pl.col("local").dt.month().alias("month"),
    )
    w = hourly[frame["hour"].to_numpy()]
    weekend = frame["weekday"].to_numpy() >= 6
    holiday = frame["day"].is_in(sorted(world.holidays)).to_numpy() & ~weekend
    month_end = (frame["month_in_3d"] != frame["month"]).to_numpy() & ~weekend & ~holiday
    return (
        w
        * np.where(weekend, act["weekend"], 1.0)
        * np.where(holiday, act["holiday"], 1.0)
        * np.where(month_end, act["month_end"], 1.0)
    )


def epoch(day: dt.date) -> int:
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp())


def build_intensity(world: World, tz_weights: dict[str, float]) -> Intensity:
    start = epoch(world.start)
    end = epoch(world.end + dt.timedelta(days=1))
    hours = np.arange((end - start) // 3600)
    tzs = tuple(sorted(tz_weights))
    per_tz = np.stack(
        [tz_weights[tz] * local_activity(world, tz, hours, start) for tz in tzs], axis=1
    )
    total = per_tz.sum(axis=1)
    cdf = np.cumsum(total)
    cdf /= cdf[-1]
    tz_cdf = np.cumsum(per_tz, axis=1) / np.maximum(total, 1e-300)[:, None]
    tz_cdf[:, -1] = 1.0
    return Intensity(start, tzs, cdf, tz_cdf)


# The generated agreements' disposal clause: batches of monthly and weekly bulk flows are
# destroyed about 120 days after receipt (schedule.DISPOSAL_AFTER_DAYS); the clause allows
# 150, so lawful disposals are on time and a batch kept past it is a finding.
RETENTION_DAYS = 150


def registry_retention_terms(world: World) -> list[dict[str, Any]]:
    """Disposal terms of the generated agreements, in the registry's ``retention_terms`` shape."""
    agreements = [
        g.agreement_id
        for agency in world.recipients
        if agency.flow in world.flows
        and world.flows[agency.flow].raw["cadence"] in ("monthly", "weekly")
        for g in agency.agreements
    ]
    if not agreements:
        return []
    return [
        {
            "id": "generated-agreements-disposal",
            "title": f"disposal within {RETENTION_DAYS} days of receipt (generated agreements)",
            "agreements": agreements,
            "dispose_within_days": RETENTION_DAYS,
            "effective_from": world.start.isoformat(),
            "sources": [{"cite": "synthetic disposal clause from dwatch.generate"}],
        }
    ]
