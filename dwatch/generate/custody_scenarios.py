"""Injected custody scenarios: the two sides of a transfer disagree, or data outlives its term.

Each builds on a state tax agency's usual monthly bulk transfer (agencies with a receipt log
and a disposal clause in the generated registry patch) so that only the custody fact is
wrong: a receipt never logged, a receipt the ledger never recorded, counts that differ, a
batch kept past the clause, a use after every delivery was destroyed.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np

from dwatch.generate.log import Instance
from dwatch.generate.scenarios import Context, _bulk_disclosure, _number, _pick, scenario
from dwatch.generate.world import RETENTION_DAYS, Agency


def _monthly_state_agency(ctx: Context, rng: np.random.Generator) -> Agency:
    world = ctx.world
    candidates = [
        a
        for a in world.recipients
        if a.flow in world.flows
        and world.flows[a.flow].raw["cadence"] == "monthly"
        and a.category == "state_tax_agency"
        and a.agreements
    ]
    return _pick(rng, candidates)


def _day_with_agreement(
    ctx: Context, rng: np.random.Generator, agency: Agency, start: dt.date, end: dt.date
) -> dt.date:
    for _ in range(200):
        day = ctx.log.business_day(rng, start, end)
        if agency.agreement_at(day) is not None:
            return day
    return ctx.log.business_day(rng, start, end)


def _receipt(
    ctx: Context,
    agency: Agency,
    t: int,
    inst: Instance | None,
    rng: np.random.Generator,
    **fields: Any,
) -> int:
    flow = ctx.world.flows[agency.flow]
    row: dict[str, Any] = {
        "source": agency,
        "event_type": "receipt",
        "recipient": agency.code,
        "disclosing": ctx.world.discloser.code,
        "actor": _pick(rng, agency.users),
        "legal_authority": flow.citations[0],
        "purpose": flow.purpose,
        "data_elements": list(flow.raw["bulk_data_elements"]),
        "channel": flow.raw["bulk_channels"][0],
        "encrypted": True,
    }
    row.update(fields)
    return ctx.log.add(t=t, instance=inst, **row)


def _middle(ctx: Context) -> tuple[dt.date, dt.date]:
    span = (ctx.world.end - ctx.world.start).days
    return (
        ctx.world.start + dt.timedelta(days=span // 5),
        ctx.world.start + dt.timedelta(days=span * 3 // 5),
    )


@scenario(
    "transfer_never_received",
    summary="A bulk disclosure in the sender's ledger that the recipient's receipt log never shows.",
)
def transfer_never_received(ctx: Context, inst: Instance, rng: np.random.Generator) -> None:
    agency = _monthly_state_agency(ctx, rng)
    day = _day_with_agreement(ctx, rng, agency, *_middle(ctx))
    t = ctx.log.at(day, ctx.world.discloser.tz, rng, 6.0, 18.0)
    _bulk_disclosure(ctx, rng, agency, t, inst)
    inst.details.update(recipient=agency.code, day=day.isoformat())


@scenario(
    "receipt_without_disclosure",
    summary="A recipient logs a bulk file received that the sender's ledger never recorded.",
)
def receipt_without_disclosure(ctx: Context, inst: Instance, rng: np.random.Generator) -> None:
    agency = _monthly_state_agency(ctx, rng)
    day = _day_with_agreement(ctx, rng, agency, *_middle(ctx))
    agreement = agency.agreement_at(day)
    assert agreement is not None
    _receipt(
        ctx, agency, ctx.log.at(day, agency.tz, rng), inst, rng,
        request_id=f"R-{agreement.agreement_id}", agreement_id=agreement.agreement_id,
        record_count=int(rng.integers(5_000, 60_000)),
        description=f"Bulk FTI file received, batch {day:%Y-%m}",
    )  # fmt: skip
    inst.details.update(recipient=agency.code, day=day.isoformat())


@scenario(
    "record_count_mismatch",
    summary="A bulk transfer whose receipt records several percent more records than were sent.",
)
def record_count_mismatch(ctx: Context, inst: Instance, rng: np.random.Generator) -> None:
    agency = _monthly_state_agency(ctx, rng)
    day = _day_with_agreement(ctx, rng, agency, *_middle(ctx))
    t = ctx.log.at(day, ctx.world.discloser.tz, rng, 6.0, 18.0)
    agreement = agency.agreement_at(day)
    assert agreement is not None
    sent = int(rng.integers(20_000, 80_000))
    received = sent + max(1, int(sent * rng.uniform(0.03, 0.12)))
    common = {"request_id": f"R-{agreement.agreement_id}", "agreement_id": agreement.agreement_id}
    _bulk_disclosure(ctx, rng, agency, t, inst, record_count=sent, **common)
    _receipt(
        ctx, agency, t + int(rng.integers(600, 3 * 3600)), inst, rng, record_count=received,
        description=f"Bulk FTI file received, batch {day:%Y-%m}", **common,
    )  # fmt: skip
    inst.details.update(recipient=agency.code, sent=sent, received=received)


@scenario(
    "retention_exceeded",
    summary="A bulk batch received and never destroyed although the agreement's disposal "
    "clause has passed while the recipient's log goes on.",
)
def retention_exceeded(ctx: Context, inst: Instance, rng: np.random.Generator) -> None:
    agency = _monthly_state_agency(ctx, rng)
    start, _ = _middle(ctx)
    latest = ctx.world.end - dt.timedelta(days=RETENTION_DAYS + 60)
    day = _day_with_agreement(ctx, rng, agency, start, max(start, latest))
    t = ctx.log.at(day, ctx.world.discloser.tz, rng, 6.0, 18.0)
    agreement = agency.agreement_at(day)
    assert agreement is not None
    count = int(rng.integers(10_000, 90_000)) * 10 + 7  # no lawful batch has this count
    common = {"request_id": f"R-{agreement.agreement_id}", "agreement_id": agreement.agreement_id}
    _bulk_disclosure(ctx, rng, agency, t, inst, record_count=count, **common)
    _receipt(
        ctx, agency, t + int(rng.integers(600, 3 * 3600)), inst, rng, record_count=count,
        description=f"Bulk FTI file received, batch {day:%Y-%m} (supplement)", **common,
    )  # fmt: skip
    inst.details.update(recipient=agency.code, records=count, days=RETENTION_DAYS)


@scenario(
    "use_after_disposal",
    summary="A supplemental extract is received, its disposal logged, then read again.",
)
def use_after_disposal(ctx: Context, inst: Instance, rng: np.random.Generator) -> None:
    world = ctx.world
    agency = _monthly_state_agency(ctx, rng)
    day = _day_with_agreement(ctx, rng, agency, *_middle(ctx))
    agreement = agency.agreement_at(day)
    assert agreement is not None
    flow = world.flows[agency.flow]
    request_id = f"R-{agreement.agreement_id}-S{_number(inst)}"
    count = int(rng.integers(200, 5_000))
    common = {"request_id": request_id, "agreement_id": agreement.agreement_id}
    ctx.log.add(
        t=ctx.log.at(day, agency.tz, rng), source=world.discloser, event_type="request",
        recipient=agency.code, actor=agency.head, legal_authority=flow.citations[0],
        purpose=flow.purpose, data_elements=list(flow.raw["bulk_data_elements"]),
        record_count=count, channel="paper", request_id=request_id,
        description="Written request of the agency head for a supplemental extract", instance=inst,
    )  # fmt: skip
    disc_day = ctx.log.add_business_days(day, 5)
    t = ctx.log.at(disc_day, world.discloser.tz, rng, 6.0, 18.0)
    _bulk_disclosure(ctx, rng, agency, t, inst, record_count=count, **common)
    user = _pick(rng, agency.users)
    _receipt(
        ctx, agency, t + int(rng.integers(600, 3 * 3600)), inst, rng, record_count=count,
        actor=user, description="Supplemental extract received", **common,
    )  # fmt: skip
    gone = ctx.log.add_business_days(disc_day, 30)
    ctx.log.add(
        t=ctx.log.at(gone, agency.tz, rng), source=agency, event_type="disposal",
        recipient=agency.code, disclosing=world.discloser.code, actor=user,
        data_elements=list(flow.raw["bulk_data_elements"]), record_count=count,
        description="Supplemental extract destroyed (secure overwrite)", instance=inst, **common,
    )  # fmt: skip
    reader = _pick(rng, agency.users)
    for k in range(int(rng.integers(1, 4))):
        ctx.log.add(
            t=ctx.log.at(ctx.log.add_business_days(gone, 3 + 2 * k), agency.tz, rng),
            source=agency, event_type="access", recipient=agency.code,
            disclosing=world.discloser.code, actor=reader,
            data_elements=list(flow.raw["bulk_data_elements"]), record_count=1,
            description="Analyst reviewed extract records", instance=inst, **common,
        )  # fmt: skip
    inst.details.update(recipient=agency.code, request_id=request_id, actor=reader[0])
