"""Injected scenarios: what a disclosure auditor must catch, each instance labelled.

A scenario is a function registered with ``@scenario``; it adds hand-built events (and
request items) to the log and returns nothing: the Instance it creates collects the
labels. Scenario sizes are relative to the background traffic (an insider reads far more
than *their* peers, a spike is large for *that* recipient), so they stay meaningful at
every output size. Dates and agencies come from the catalog, never from this code.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from dwatch.errors import ConfigError
from dwatch.generate.background import Background
from dwatch.generate.identities import POPULATION, person_frame, tin_series, tin_text
from dwatch.generate.log import ITEM_FIELDS, Instance, SpecialLog, TamperSpec
from dwatch.generate.rand import Streams
from dwatch.generate.world import Agency, World, epoch

ITEM_CHUNK = 100_000


@dataclass
class Context:
    world: World
    log: SpecialLog
    streams: Streams
    background: Background
    events: int
    scale: float
    shared: dict[str, Any] = field(default_factory=dict)

    def rng(self, name: str, number: int) -> np.random.Generator:
        return self.streams.rng(f"scenario:{name}:{number}")


@dataclass(frozen=True)
class ScenarioDef:
    name: str
    build: Callable[[Context, Instance, np.random.Generator], None]
    default: int
    maximum: int | None
    requires: str | None
    summary: str


SCENARIOS: dict[str, ScenarioDef] = {}


def scenario(
    name: str,
    *,
    summary: str,
    default: int = 1,
    maximum: int | None = None,
    requires: str | None = None,
) -> Callable[[Callable[[Context, Instance, np.random.Generator], None]], Callable[..., None]]:
    def register(
        fn: Callable[[Context, Instance, np.random.Generator], None],
    ) -> Callable[..., None]:
        SCENARIOS[name] = ScenarioDef(name, fn, default, maximum, requires, summary)
        return fn

    return register


def _date(value: Any) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))


def _pick(rng: np.random.Generator, values: list[Any] | tuple[Any, ...]) -> Any:
    return values[int(rng.integers(len(values)))]


def _number(inst: Instance) -> int:
    return int(inst.instance_id.rsplit("-", 1)[1])


def _state_recipients(world: World) -> list[Agency]:
    return [a for a in world.recipients if a.flow == "state_tax"]


def _bulk_disclosure(
    ctx: Context, rng: np.random.Generator, agency: Agency, t: int, inst: Instance, **override: Any
) -> int:
    """An IRS disclosure that looks like the recipient's usual bulk transfer, with overrides."""
    world = ctx.world
    flow = world.flows[agency.flow]
    day = dt.datetime.fromtimestamp(t, dt.UTC).date()
    agreement = agency.agreement_at(day)
    fields: dict[str, Any] = {
        "source": world.discloser,
        "event_type": "disclosure",
        "recipient": agency.code,
        "actor": _pick(rng, [u for u in world.discloser.users if u[1] != "disclosure_manager"]),
        "request_id": f"R-{agreement.agreement_id}" if agreement else None,
        "legal_authority": flow.citations[0],
        "purpose": flow.purpose,
        "data_elements": list(flow.raw["bulk_data_elements"]),
        "record_count": int(
            flow.raw["bulk_records"] * max(agency.weight, 1) / 10 * rng.lognormal(0, 0.3)
        )
        + 1,
        "channel": flow.raw["bulk_channels"][0],
        "encrypted": True,
        "agreement_id": agreement.agreement_id if agreement else None,
        "description": f"Form 5466-B multiple-record disclosure, batch {day:%Y-%m}",
    }
    fields.update(override)
    return ctx.log.add(t=t, instance=inst, **fields)


# -- the 2025 ICE case -----------------------------------------------------------------


@scenario(
    "ice_bulk_address_disclosure",
    maximum=1,
    summary="Bulk (i)(2) requests naming a very large number of people, one official attesting "
    "to all; a bulk address disclosure where a few percent of supplied addresses are placeholders.",
)
def ice_case(ctx: Context, inst: Instance, rng: np.random.Generator) -> None:
    world, log = ctx.world, ctx.log
    ic = world.raw["ice_case"]
    ice, irs = world.ice, world.discloser
    mou = ice.agreements[0]
    cite = ic["citation"]
    requests = []
    for n, req in enumerate(ic["requests"], start=1):
        day = _date(req["date"])
        names = max(1, round(req["names"] * ctx.scale))
        request_id = f"{ice.code}-IRS-{day.year}-{n:04d}"
        hook = log.add(
            t=log.at(day, ice.tz, rng),
            source=irs,
            event_type="request",
            recipient=ice.code,
            actor=ice.head,
            request_id=request_id,
            legal_authority=cite,
            purpose=ic["purpose"],
            data_elements=["name", "address"],
            record_count=names,
            channel=ic["channel"],
            encrypted=True,
            agreement_id=mou.agreement_id,
            case_number="MULTIPLE",
            description=ic["attestation"],
            instance=inst,
        )
        requests.append((hook, request_id, names))
    # Only the last request file is itemised: it is the one the IRS matched.
    req_hook, request_id, n_req = requests[-1]
    idx = np.arange(n_req, dtype=np.uint64)
    s = ctx.streams
    placeholder = s.u("ice-placeholder", idx) < ic["placeholder_share"]
    disclosed = s.u("ice-disclosed", idx) < ic["disclosed_share"]
    if disclosed.sum() < 3:  # tiny scales still disclose something
        disclosed[: min(3, n_req)] = True
    disclosed_idx = np.flatnonzero(disclosed)
    # Among disclosed items keep at least two placeholders so the case is always present.
    forced = disclosed_idx[:2]
    placeholder[forced] = True
    n_disc = len(disclosed_idx)
    taxpayers = (s.u("ice-taxpayer", idx) * POPULATION).astype(np.int64)
    ph_choice = (s.u("ice-placeholder-kind", idx) * len(ic["placeholders"])).astype(np.int64)
    jail_choice = (s.u("ice-jail", idx) * len(ic["jails"])).astype(np.int64)
    via_address = s.u("ice-match", idx) < 0.08
    periods = f"{2022},{2023},{2024}"

    def item_frame(lo: int, hi: int, for_disclosure: bool) -> pl.DataFrame:
        sel = (
            disclosed_idx[(disclosed_idx >= lo) & (disclosed_idx < hi)]
            if for_disclosure
            else np.arange(lo, hi)
        )
        people = person_frame(world, taxpayers[sel])
        kinds = [ic["placeholders"][k] for k in range(len(ic["placeholders"]))]
        texts = pl.Series(kinds, dtype=pl.String).gather(ph_choice[sel])
        jails = pl.Series(ic["jails"], dtype=pl.String).gather(jail_choice[sel])
        supplied = (
            pl.DataFrame(
                {
                    "t": texts,
                    "zip": people["zip"],
                    "jail": jails,
                    "real": people["supplied_address"],
                    "ph": placeholder[sel],
                }
            )
            .select(
                pl.when(~pl.col("ph"))
                .then(pl.col("real"))
                .when(pl.col("t") == "{zip}")
                .then(pl.col("zip"))
                .when(pl.col("t") == "{jail}")
                .then(pl.col("jail"))
                .otherwise(pl.col("t"))
            )
            .to_series()
        )
        if for_disclosure:
            item_no = np.searchsorted(disclosed_idx, sel) + 1
            match = np.where(via_address[sel], "address", "tin")
        else:
            item_no = sel + 1
            match = np.full(len(sel), None)
        return pl.DataFrame(
            {
                "item_no": item_no.astype(np.int64),
                "taxpayer_tin": tin_series(taxpayers[sel]),
                "supplied_name": people["supplied_name"],
                "supplied_address": supplied,
                "tax_periods": pl.Series([periods] * len(sel), dtype=pl.String),
                "statute": pl.Series([ic["statute"]] * len(sel), dtype=pl.String),
                "reason": pl.Series([ic["reason"]] * len(sel), dtype=pl.String),
                "match_method": pl.Series(list(match), dtype=pl.String),
                "_label": pl.Series(placeholder[sel] & for_disclosure, dtype=pl.Boolean),
            }
        )

    def frames(for_disclosure: bool) -> Callable[[], Iterator[pl.DataFrame]]:
        def gen() -> Iterator[pl.DataFrame]:
            for lo in range(0, n_req, ITEM_CHUNK):
                yield item_frame(lo, min(n_req, lo + ITEM_CHUNK), for_disclosure)

        return gen

    log.add_items(req_hook, request_id, frames(False))
    day = _date(ic["disclosure_date"])
    specialist = _pick(rng, [u for u in irs.users if u[1] == "disclosure_specialist"])
    t_disc = log.at(day, irs.tz, rng, 10.0, 16.0)
    disc_hook = log.add(
        t=t_disc,
        source=irs,
        event_type="disclosure",
        recipient=ice.code,
        actor=specialist,
        request_id=request_id,
        legal_authority=cite,
        purpose=ic["purpose"],
        data_elements=["name", "address"],
        record_count=n_disc,
        channel=ic["channel"],
        encrypted=True,
        agreement_id=mou.agreement_id,
        description=f"{ic['channel_note']}; {n_disc} last-known addresses matched of {n_req} submitted",
        instance=inst,
    )
    log.add_items(disc_hook, request_id, frames(True), instance=inst)
    officer = _pick(rng, ice.users)
    log.add(
        t=t_disc + int(rng.integers(1800, 6 * 3600)),
        source=ice,
        event_type="receipt",
        recipient=ice.code,
        actor=officer,
        request_id=request_id,
        legal_authority=ic["receipt_citation"],
        purpose=ic["civil_purpose"],
        data_elements=["name", "address"],
        record_count=n_disc,
        channel=ic["channel"],
        encrypted=True,
        agreement_id=mou.agreement_id,
        description="IRS address file received from IRS via Kiteworks; loaded for ERO field offices",
        instance=inst,
    )
    disclosed_tins = [tin_text(int(k)) for k in taxpayers[disclosed_idx[:500]]]
    # Uses between receipt and the order forbidding use (questionable purpose, not yet enjoined).
    forbidden = _date(ic["orders"]["use_forbidden"])
    for _ in range(int(rng.integers(5, 15))):
        use_day = log.business_day(
            rng, day + dt.timedelta(days=3), forbidden - dt.timedelta(days=2)
        )
        log.add(
            t=log.at(use_day, ice.tz, rng),
            source=ice,
            event_type="access",
            recipient=ice.code,
            actor=_pick(rng, ice.users),
            request_id=request_id,
            legal_authority=ic["receipt_citation"],
            purpose=ic["civil_purpose"],
            data_elements=["name", "address"],
            taxpayer_tin=_pick(rng, disclosed_tins),
            description="Address lookup for field operation",
            instance=inst,
        )
    inst.details.update(
        names_requested=[n for _, _, n in requests],
        items_submitted=n_req,
        addresses_disclosed=n_disc,
        placeholder_addresses_submitted=int(placeholder.sum()),
        placeholder_addresses_disclosed=int(placeholder[disclosed_idx].sum()),
        signer=ice.head[0],
        signer_role=ice.head[1],
        scale=ctx.scale,
        items_note="items = disclosed request items whose supplied address was a placeholder",
    )
    ctx.shared["ice"] = {"request_id": request_id, "tins": disclosed_tins, "received": day}


@scenario(
    "use_after_court_order",
    requires="ice_bulk_address_disclosure",
    summary="Recipient users read the bulk-disclosed data after a court order forbids its use.",
)
def use_after_order(ctx: Context, inst: Instance, rng: np.random.Generator) -> None:
    world, log = ctx.world, ctx.log
    ic = world.raw["ice_case"]
    ice = world.ice
    shared = ctx.shared["ice"]
    forbidden = _date(ic["orders"]["use_forbidden"])
    users = [ice.users[int(k)] for k in rng.choice(len(ice.users), size=3, replace=False)]
    n = int(rng.integers(5, 25))
    for _ in range(n):
        day = log.business_day(rng, forbidden + dt.timedelta(days=1), world.end)
        log.add(
            t=log.at(day, ice.tz, rng, 7.0, 19.0),
            source=ice,
            event_type="access",
            recipient=ice.code,
            actor=_pick(rng, users),
            request_id=shared["request_id"],
            legal_authority=ic["receipt_citation"],
            purpose=ic["civil_purpose"],
            data_elements=["name", "address"],
            taxpayer_tin=_pick(rng, shared["tins"]),
            description=_pick(
                rng,
                [
                    "Address lookup for field operation",
                    "Exported address list for team",
                    "Viewed IRS-sourced address",
                ],
            ),
            instance=inst,
        )
    inst.details.update(order_date=forbidden.isoformat(), users=[u[0] for u in users], accesses=n)


@scenario("redisclosure", summary="A recipient passes tax information on to a third agency.")
def redisclosure(ctx: Context, inst: Instance, rng: np.random.Generator) -> None:
    world, log = ctx.world, ctx.log
    ice_shared = ctx.shared.get("ice")
    if ice_shared and not ctx.shared.get("ice_redisclosed"):
        ctx.shared["ice_redisclosed"] = True
        ic = world.raw["ice_case"]
        holder, third = world.ice, _pick(rng, ic["third_agencies"])
        start = ice_shared["received"] + dt.timedelta(days=14)
        request_id, cite, purpose = (
            ice_shared["request_id"],
            ic["receipt_citation"],
            ic["civil_purpose"],
        )
        elements = ["name", "address"]
    else:
        holder = _pick(
            rng, [a for a in world.recipients if a.flow in ("child_support", "state_tax")]
        )
        flow = world.flows[holder.flow]
        third = f"{holder.code.split('-')[0]}-" + _pick(rng, world.raw["redisclosure_units"])
        start = world.start + dt.timedelta(days=60)
        agreement = holder.agreements[0] if holder.agreements else None
        request_id = f"R-{agreement.agreement_id}" if agreement else None
        cite, purpose = flow.citations[0], flow.purpose
        elements = list(flow.raw["access_data_elements"][0])
    day = log.business_day(rng, start, world.end - dt.timedelta(days=5))
    count = int(rng.integers(20, 2000))
    log.add(
        t=log.at(day, holder.tz, rng),
        source=holder,
        event_type="redisclosure",
        disclosing=holder.code,
        recipient=third,
        actor=_pick(rng, holder.users),
        request_id=request_id,
        legal_authority=cite,
        purpose=purpose,
        data_elements=elements,
        record_count=count,
        channel="email",
        encrypted=True,
        description=f"Shared extract with {third} task force",
        instance=inst,
    )
    inst.details.update(holder=holder.code, third_agency=third, records=count)


@scenario("no_authority", summary="A disclosure that cites no legal authority at all.")
def no_authority(ctx: Context, inst: Instance, rng: np.random.Generator) -> None:
    agency = _pick(rng, ctx.world.recipients)
    day = ctx.log.business_day(rng, ctx.world.start, ctx.world.end)
    missing = _pick(rng, [None, "", "N/A", "none"])
    _bulk_disclosure(
        ctx, rng, agency, ctx.log.at(day, ctx.world.discloser.tz, rng), inst,
        legal_authority=missing, purpose=None, agreement_id=None, request_id=None,
        record_count=int(rng.integers(50, 5000)), channel="sftp",
        description="Ad hoc extract requested by phone",
    )  # fmt: skip
    inst.details.update(recipient=agency.code, legal_authority=missing)


@scenario(
    "authority_recipient_mismatch",
    summary="A disclosure under an authority that does not permit that recipient.",
)
def recipient_mismatch(ctx: Context, inst: Instance, rng: np.random.Generator) -> None:
    world = ctx.world
    # Alternate: a state-tax citation to a criminal agency, an SSA citation to a state.
    if _number(inst) % 2 == 1:
        agency, flow = _pick(rng, world.criminal), world.flows["state_tax"]
    else:
        agency, flow = _pick(rng, _state_recipients(world)), world.flows["federal_benefits"]
    day = ctx.log.business_day(rng, world.start, world.end)
    cite = _pick(rng, flow.citations)
    ctx.log.add(
        t=ctx.log.at(day, world.discloser.tz, rng),
        source=world.discloser,
        event_type="disclosure",
        recipient=agency.code,
        actor=_pick(rng, world.discloser.users),
        request_id=f"{agency.code}-{day:%Y%m%d}-X",
        legal_authority=cite,
        purpose=flow.purpose,
        data_elements=["name", "address", "tin", "income"],
        record_count=int(rng.integers(1, 500)),
        channel="secure_file_transfer",
        encrypted=True,
        description="Extract provided on agency request",
        instance=inst,
    )
    inst.details.update(
        recipient=agency.code,
        category=agency.category,
        legal_authority=cite,
        authority=flow.authority,
    )


@scenario(
    "authority_purpose_mismatch",
    summary="Civil immigration enforcement under a criminal-investigation authority.",
)
def purpose_mismatch(ctx: Context, inst: Instance, rng: np.random.Generator) -> None:
    world, log = ctx.world, ctx.log
    flow = world.flows["criminal_i2"]
    ic = world.raw["ice_case"]
    use_ice = _number(inst) % 2 == 1
    agency = (
        world.ice
        if use_ice
        else _pick(rng, [a for a in world.criminal if a.code.startswith("DHS")])
    )
    # Before the first restraining order, so only the purpose is wrong.
    start = max(world.start, agency.agreements[0].valid_from) if agency.agreements else world.start
    day = log.business_day(rng, start, _date(ic["orders"]["dc_injunction"]) - dt.timedelta(days=10))
    request_id = f"{agency.code}-{day.year}-C{int(rng.integers(1000, 9999))}"
    # Signed by the head of the agency so that only the purpose is wrong.
    signer = (
        agency.head
        if agency.head[1] == "head_of_agency"
        else (f"{agency.code.lower()}.director", "head_of_agency")
    )
    elements = ["name", "address"]
    subjects = int(rng.integers(1, 4))
    req = log.add(
        t=log.at(day, agency.tz, rng), source=world.discloser, event_type="request", recipient=agency.code,
        actor=signer, request_id=request_id, legal_authority=_pick(rng, flow.citations),
        purpose=ic["civil_purpose"], data_elements=elements, record_count=subjects,
        channel="secure_file_transfer", encrypted=True, description="Request for last known address",
        agreement_id=agency.agreements[0].agreement_id if use_ice else None,
        instance=inst,
    )  # fmt: skip
    taxpayers = rng.integers(0, POPULATION, size=subjects)
    people = person_frame(world, taxpayers)
    rows = [
        {"item_no": i + 1, "taxpayer_tin": tin_text(int(k)), "supplied_name": people["supplied_name"][i],
         "supplied_address": people["supplied_address"][i], "tax_periods": f"{day.year - 1}",
         "statute": ic["civil_statute"], "reason": ic["civil_reason"]}
        for i, k in enumerate(taxpayers)
    ]  # fmt: skip
    log.add_item_rows(req, request_id, rows)
    disc_day = log.add_business_days(day, int(rng.integers(5, 15)))
    disc = log.add(
        t=log.at(disc_day, world.discloser.tz, rng), source=world.discloser, event_type="disclosure",
        recipient=agency.code, actor=_pick(rng, world.discloser.users), request_id=request_id,
        legal_authority=flow.citations[0], purpose=ic["civil_purpose"], data_elements=elements,
        record_count=subjects, channel="secure_file_transfer", encrypted=True,
        agreement_id=agency.agreements[0].agreement_id if use_ice else None,
        description="Disclosure of last known address", instance=inst,
    )  # fmt: skip
    log.add_item_rows(disc, request_id, [{**r, "match_method": "tin"} for r in rows])
    inst.details.update(
        recipient=agency.code, purpose=ic["civil_purpose"], authority=flow.authority
    )


@scenario(
    "authority_data_elements_mismatch",
    summary="Taxpayer return information (full return, income) disclosed under (i)(2).",
)
def elements_mismatch(ctx: Context, inst: Instance, rng: np.random.Generator) -> None:
    world, log = ctx.world, ctx.log
    flow = world.flows["criminal_i2"]
    agency = _pick(rng, world.criminal)
    day = log.business_day(rng, world.start, world.end - dt.timedelta(days=40))
    request_id = f"{agency.code}-{day.year}-T{int(rng.integers(1000, 9999))}"
    taxpayers = rng.integers(0, POPULATION, size=int(rng.integers(1, 4)))
    people = person_frame(world, taxpayers)
    req = log.add(
        t=log.at(day, agency.tz, rng), source=world.discloser, event_type="request", recipient=agency.code,
        actor=agency.head, request_id=request_id, legal_authority=flow.citations[0],
        purpose=flow.purpose, data_elements=["name", "address", "tin"], record_count=len(taxpayers),
        channel="paper", description="Written request of the head of the agency",
        case_number=f"{agency.code.split('-')[-1]}-{day.year}-{int(rng.integers(10000, 99999))}",
    )  # fmt: skip
    rows = [
        {"item_no": i + 1, "taxpayer_tin": tin_text(int(k)), "supplied_name": people["supplied_name"][i],
         "supplied_address": people["supplied_address"][i], "tax_periods": f"{day.year - 2},{day.year - 1}",
         "statute": _pick(rng, flow.raw["statutes"]), "reason": _pick(rng, flow.raw["reasons"])}
        for i, k in enumerate(taxpayers)
    ]  # fmt: skip
    log.add_item_rows(req, request_id, rows)
    elements = _pick(rng, [["name", "address", "tin", "full_return"], ["name", "tin", "income", "wages"],
                           ["name", "address", "income", "bank_account"]])  # fmt: skip
    disc = log.add(
        t=log.at(log.add_business_days(day, int(rng.integers(5, 20))), world.discloser.tz, rng),
        source=world.discloser, event_type="disclosure", recipient=agency.code,
        actor=_pick(rng, world.discloser.users), request_id=request_id, legal_authority=flow.citations[0],
        purpose=flow.purpose, data_elements=elements, record_count=len(taxpayers),
        channel="secure_file_transfer", encrypted=True, description="Response to (i)(2) request",
        instance=inst,
    )  # fmt: skip
    log.add_item_rows(disc, request_id, [{**r, "match_method": "tin"} for r in rows])
    inst.details.update(recipient=agency.code, data_elements=elements, authority=flow.authority)


@scenario("expired_agreement", summary="A disclosure under an agreement that has expired.")
def expired_agreement(ctx: Context, inst: Instance, rng: np.random.Generator) -> None:
    world = ctx.world
    renewed = [
        a
        for a in world.recipients
        if len(a.agreements) > 1 and a.agreements[0].valid_to < world.end
    ]
    agency = _pick(rng, renewed)
    old = agency.agreements[0]
    day = ctx.log.business_day(rng, old.valid_to + dt.timedelta(days=1), world.end)
    _bulk_disclosure(
        ctx, rng, agency, ctx.log.at(day, world.discloser.tz, rng), inst,
        agreement_id=old.agreement_id, request_id=f"R-{old.agreement_id}",
    )  # fmt: skip
    inst.details.update(
        recipient=agency.code, agreement_id=old.agreement_id, expired=old.valid_to.isoformat()
    )


@scenario("suspended_agreement", summary="A disclosure while the agreement is suspended.")
def suspended_agreement(ctx: Context, inst: Instance, rng: np.random.Generator) -> None:
    world = ctx.world
    candidates = [(a, g) for a in world.recipients for g in a.agreements if g.suspended_from]
    agency, agreement = _pick(rng, candidates)
    assert agreement.suspended_from and agreement.suspended_to
    day = ctx.log.business_day(
        rng, agreement.suspended_from, min(agreement.suspended_to, world.end)
    )
    _bulk_disclosure(
        ctx, rng, agency, ctx.log.at(day, world.discloser.tz, rng), inst,
        agreement_id=agreement.agreement_id,
    )  # fmt: skip
    inst.details.update(
        recipient=agency.code,
        agreement_id=agreement.agreement_id,
        suspended=[agreement.suspended_from.isoformat(), agreement.suspended_to.isoformat()],
    )


@scenario(
    "insider_browsing",
    summary="One recipient user reads far more records than peers in the same agency and role.",
)
def insider_browsing(ctx: Context, inst: Instance, rng: np.random.Generator) -> None:
    world, log = ctx.world, ctx.log
    agencies = [
        a
        for a in world.recipients
        if a.flow in ("state_tax", "child_support") and len(a.users) >= 8
    ]
    agency = _pick(rng, agencies)
    flow = world.flows[agency.flow]
    roles = [r for _, r in agency.users]
    role = max(set(roles), key=lambda r: (roles.count(r), r))
    user = _pick(rng, [u for u in agency.users if u[1] == role])
    days = log.world.business_days(
        world.start + dt.timedelta(days=30), world.end - dt.timedelta(days=30)
    )
    first = int(rng.integers(len(days) - 10))
    period = days[first : first + 10]
    peer_rate = ctx.background.expected_user_rate(agency.code)
    n = int(max(40, round(15 * peer_rate * len(period))))
    n = min(n, 50_000)
    taxpayers = rng.integers(0, POPULATION, size=n)
    tins = tin_series(taxpayers).to_list()
    agreement = agency.agreement_at(period[0])
    for k in range(n):
        day = period[int(rng.integers(len(period)))]
        log.add(
            t=log.at(day, agency.tz, rng, 7.5, 18.5),
            source=agency,
            event_type="access",
            recipient=agency.code,
            actor=user,
            request_id=f"R-{agreement.agreement_id}" if agreement else None,
            legal_authority=flow.citations[0],
            purpose=flow.purpose,
            data_elements=list(flow.raw["access_data_elements"][0]),
            taxpayer_tin=tins[k],
            description="Viewed taxpayer record",
            instance=inst,
        )
    inst.details.update(
        recipient=agency.code, actor_id=user[0], actor_role=role,
        period=[period[0].isoformat(), period[-1].isoformat()],
        injected_reads=n, expected_peer_reads=round(peer_rate * len(period), 2),
    )  # fmt: skip


@scenario(
    "off_hours_unusual_channel",
    summary="A bulk transfer in the middle of a weekend night over an unusual, unencrypted channel.",
)
def off_hours(ctx: Context, inst: Instance, rng: np.random.Generator) -> None:
    world = ctx.world
    agency = _pick(rng, _state_recipients(world))
    days = [d for d in (world.start + dt.timedelta(days=i) for i in range((world.end - world.start).days))
            if d.weekday() == 6]  # fmt: skip
    day = _pick(rng, days)
    channel = _pick(rng, ["email", "removable_media", "fax"])
    t = ctx.log.at(day, world.discloser.tz, rng, 1.0, 4.5)
    _bulk_disclosure(ctx, rng, agency, t, inst, channel=channel, encrypted=False)
    inst.details.update(
        recipient=agency.code,
        channel=channel,
        occurred_at_utc=dt.datetime.fromtimestamp(t, dt.UTC).isoformat(),
    )


@scenario(
    "volume_spike",
    summary="A burst of disclosures far above normal for one (recipient, authority) pair.",
)
def volume_spike(ctx: Context, inst: Instance, rng: np.random.Generator) -> None:
    world, log = ctx.world, ctx.log
    agency = _pick(
        rng, [a for a in world.recipients if world.flows[a.flow].raw.get("disclosure_share", 0) > 0]
    )
    flow = world.flows[agency.flow]
    expected = ctx.background.expected_daily_disclosures(agency.code)
    n = int(min(20_000, max(30, round(25 * expected))))
    day = log.business_day(
        rng, world.start + dt.timedelta(days=20), world.end - dt.timedelta(days=5)
    )
    agreement = agency.agreement_at(day)
    if (
        agreement
        and agreement.suspended_from
        and agreement.suspended_from <= day <= (agreement.suspended_to or day)
    ):
        day = agreement.suspended_to + dt.timedelta(days=3)  # keep the spike a pure volume signal
        day = world.next_business_day(day)
        agreement = agency.agreement_at(day)
    taxpayers = rng.integers(0, POPULATION, size=n)
    tins = tin_series(taxpayers).to_list()
    elements = list(
        (flow.raw.get("disclosure_data_elements") or flow.raw["access_data_elements"])[0]
    )
    for k in range(n):
        log.add(
            t=log.at(day, world.discloser.tz, rng, 8.0, 18.0),
            source=world.discloser,
            event_type="disclosure",
            recipient=agency.code,
            actor=_pick(rng, world.discloser.users),
            request_id=f"R-{agreement.agreement_id}" if agreement else None,
            legal_authority=flow.citations[0],
            purpose=flow.purpose,
            data_elements=elements,
            taxpayer_tin=tins[k],
            channel=flow.raw.get("individual_channel"),
            encrypted=True,
            agreement_id=agreement.agreement_id if agreement else None,
            description="Individual record disclosed on agency request",
            instance=inst,
        )
    inst.details.update(
        recipient=agency.code, authority=flow.authority, day=day.isoformat(),
        injected=n, expected_daily=round(expected, 2),
    )  # fmt: skip


@scenario("never_seen_recipient", summary="A disclosure to an agency never seen before.")
def never_seen(ctx: Context, inst: Instance, rng: np.random.Generator) -> None:
    world = ctx.world
    code = world.raw["unknown_recipients"][
        (_number(inst) - 1) % len(world.raw["unknown_recipients"])
    ]
    flow = world.flows[_pick(rng, ["state_tax", "child_support", "criminal_i2"])]
    day = ctx.log.business_day(rng, world.start, world.end)
    elements = ["name", "address", "tin"]
    ctx.log.add(
        t=ctx.log.at(day, world.discloser.tz, rng), source=world.discloser, event_type="disclosure",
        recipient=code, actor=_pick(rng, world.discloser.users), request_id=f"{code}-{day:%Y%m%d}",
        legal_authority=flow.citations[0], purpose=flow.purpose, data_elements=elements,
        record_count=int(rng.integers(1, 3000)), channel="secure_file_transfer", encrypted=True,
        description="Extract provided on agency request", instance=inst,
    )  # fmt: skip
    inst.details.update(recipient=code)


# -- log tampering: applied by the writer to rows that only exist at write time ----------


def _tamper(
    ctx: Context, inst: Instance, rng: np.random.Generator, kind: str, length: int, shift: int
) -> None:
    world = ctx.world
    number = _number(inst)
    big = sorted(world.recipients, key=lambda a: -a.weight)[:3]
    sources = [world.discloser, *big]
    source = sources[(number - 1 + len(kind)) % len(sources)]
    span = (world.end - world.start).days
    day = world.start + dt.timedelta(days=int(span * rng.uniform(0.15, 0.7)))
    ctx.log.tampers.append(
        TamperSpec(kind, world.source_index(source.source_system), epoch(day), length, shift, inst)
    )
    inst.details.update(source_system=source.source_system, after=day.isoformat())


@scenario(
    "tamper_deleted_range", summary="A contiguous range of sequence numbers is missing from a log."
)
def tamper_deleted(ctx: Context, inst: Instance, rng: np.random.Generator) -> None:
    n = int(rng.integers(3, 40)) if ctx.events >= 20_000 else int(rng.integers(2, 6))
    _tamper(ctx, inst, rng, "deleted_range", n, 0)
    inst.details["note"] = (
        "events = the entries either side of the gap; deleted = the removed entries"
    )


@scenario("tamper_duplicate_event", summary="One entry appears twice with the same event id.")
def tamper_duplicate(ctx: Context, inst: Instance, rng: np.random.Generator) -> None:
    _tamper(ctx, inst, rng, "duplicate", 1, 0)


@scenario(
    "tamper_out_of_order", summary="Entries whose timestamps go backwards against their sequence."
)
def tamper_out_of_order(ctx: Context, inst: Instance, rng: np.random.Generator) -> None:
    _tamper(
        ctx, inst, rng, "out_of_order", int(rng.integers(2, 6)), int(rng.integers(2, 20)) * 86_400
    )


# -- selection ---------------------------------------------------------------------------


def resolve_counts(requested: dict[str, int] | None) -> dict[str, int]:
    """Instance count per scenario: defaults overridden by ``requested``."""
    counts = {name: d.default for name, d in SCENARIOS.items()}
    for name, n in (requested or {}).items():
        if name not in SCENARIOS:
            raise ConfigError(
                f"unknown scenario {name!r}",
                where="scenarios",
                fix=f"use one of: {', '.join(SCENARIOS)}",
            )
        if int(n) < 0:
            raise ConfigError(f"scenario count must be >= 0, got {n}", where=f"scenarios.{name}")
        counts[name] = int(n)
    for name, d in SCENARIOS.items():
        if d.maximum is not None and counts[name] > d.maximum:
            raise ConfigError(
                f"{name} can be injected at most {d.maximum} time(s), asked for {counts[name]}",
                where=f"scenarios.{name}",
                fix=f"use {name}={d.maximum}; raise --scale for a larger case instead",
            )
        if d.requires and counts[name] and not counts[d.requires]:
            raise ConfigError(
                f"{name} needs {d.requires} (it uses that data)",
                where=f"scenarios.{name}",
                fix=f"set {d.requires}=1 or {name}=0",
            )
    return counts


def inject(ctx: Context, counts: dict[str, int]) -> None:
    for name, d in SCENARIOS.items():
        for number in range(1, counts.get(name, 0) + 1):
            inst = ctx.log.instance(name, number)
            d.build(ctx, inst, ctx.rng(name, number))


__all__ = ["ITEM_FIELDS", "SCENARIOS", "Context", "inject", "resolve_counts"]

# Custody scenarios live in their own module; importing it registers them.
from dwatch.generate import custody_scenarios as _custody_scenarios  # noqa: E402, F401
