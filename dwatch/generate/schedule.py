"""Legitimate hand-built traffic: scheduled bulk transfers and criminal request chains.

Bulk transfers follow each flow's cadence (monthly to state tax agencies, daily to SSA,
weekly to child-support agencies, yearly to Census) with heavy-tailed record counts; each
is logged by the IRS (disclosure) and by the recipient (receipt), and state batches are
later disposed of. A few are corrected afterwards (benign noise). Criminal (i)(1)/(i)(2)
requests are individual and few, with complete request items.
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np

from dwatch.generate.identities import person_frame, tin_text
from dwatch.generate.log import SpecialLog
from dwatch.generate.rand import Streams
from dwatch.generate.world import Agency, Flow, World

BULK_SHARE = 0.3  # at most this share of the requested events goes to bulk schedules
CORRECTION_SHARE = 0.01
CHAIN_EVERY = 20_000  # one criminal request chain per this many events (at least 3)
DISPOSAL_AFTER_DAYS = 120


def _occurrences(world: World, agency: Agency, index: int, cadence: str) -> list[dt.date]:
    days: list[dt.date] = []
    if cadence == "daily":
        return world.business_days()
    year, month = world.start.year, world.start.month
    if cadence == "monthly":
        anchor = 3 + index % 8
        while dt.date(year, month, 1) <= world.end:
            day = world.next_business_day(dt.date(year, month, anchor))
            if world.start <= day <= world.end:
                days.append(day)
            month += 1
            if month == 13:
                year, month = year + 1, 1
    elif cadence == "weekly":
        day = world.start + dt.timedelta(days=(1 - world.start.weekday()) % 7)  # Tuesdays
        while day <= world.end:
            b = world.next_business_day(day)
            if b <= world.end:
                days.append(b)
            day += dt.timedelta(days=7)
    elif cadence == "yearly":
        for y in range(world.start.year, world.end.year + 1):
            day = world.next_business_day(dt.date(y, 3, 3))
            if world.start <= day <= world.end:
                days.append(day)
    return days


def _bulk_records(flow: Flow, agency: Agency, mean_weight: float, rng: np.random.Generator) -> int:
    base = flow.raw["bulk_records"] * agency.weight / mean_weight
    # Lognormal with a wide sigma: most batches near the agency's norm, a long upper tail.
    return max(1, round(base * float(rng.lognormal(0.0, 0.7))))


def build_schedule(log: SpecialLog, streams: Streams, events: int) -> int:
    """Add the bulk schedule; returns the number of events added."""
    world = log.world
    rng = streams.rng("schedule")
    plans: list[tuple[Agency, Flow, list[dt.date]]] = []
    total = 0
    for i, agency in enumerate(world.recipients):
        flow = world.flows[agency.flow]
        days = _occurrences(world, agency, i, flow.raw["cadence"])
        plans.append((agency, flow, days))
        per = 3 if flow.raw["cadence"] in ("monthly", "weekly") else 2
        total += per * len(days)
    budget = max(1, int(events * BULK_SHARE))
    # Small outputs keep every flow but thin each one evenly (every s-th batch), so each
    # recipient still sees a regular cadence.
    stride = max(1, math.ceil(total / budget))
    mean_weight = {
        key: float(np.mean([a.weight for a in world.recipients if a.flow == key]))
        for key in world.flows
        if any(a.flow == key for a in world.recipients)
    }
    irs = world.discloser
    irs_bulk_users = [
        u for u in irs.users if u[1] in ("data_services_analyst", "disclosure_specialist")
    ]
    added = 0
    for r, (agency, flow, days) in enumerate(plans):
        channel = flow.raw["bulk_channels"][r % len(flow.raw["bulk_channels"])]
        recipient_cite = flow.citations[r % len(flow.citations)]
        added += _standing_requests(log, agency, flow, rng)
        for k, day in enumerate(days):
            if k % stride != r % stride:
                continue
            agreement = agency.agreement_at(day)
            if (
                agreement
                and agreement.suspended_from
                and agreement.suspended_from <= day <= (agreement.suspended_to or day)
            ):
                continue  # the IRS stops bulk transfers while the agreement is suspended
            count = _bulk_records(flow, agency, mean_weight[agency.flow], rng)
            request_id = f"R-{agreement.agreement_id}" if agreement else None
            batch = f"{day:%Y-%m}" if flow.raw["cadence"] != "daily" else f"{day:%Y-%m-%d}"
            t = log.at(day, irs.tz, rng, 6.0, 18.0)  # same UTC date as the local one
            cite = (
                flow.citations[0]
                if rng.random() > 0.1
                else flow.citations[int(rng.integers(len(flow.citations)))]
            )
            common = {
                "recipient": agency.code,
                "request_id": request_id,
                "purpose": flow.purpose,
                "data_elements": list(flow.raw["bulk_data_elements"]),
                "record_count": count,
                "channel": channel,
                "encrypted": True,
                "agreement_id": agreement.agreement_id if agreement else None,
            }
            log.add(
                t=t,
                source=irs,
                event_type="disclosure",
                actor=irs_bulk_users[int(rng.integers(len(irs_bulk_users)))],
                legal_authority=cite,
                description=f"Form 5466-B multiple-record disclosure, batch {batch}",
                **common,
            )
            added += 1
            user = agency.users[int(rng.integers(len(agency.users)))]
            log.add(
                t=t + int(rng.integers(600, 3 * 3600)),
                source=agency,
                event_type="receipt",
                actor=user,
                legal_authority=recipient_cite,
                description=f"Bulk FTI file received, batch {batch}",
                **common,
            )
            added += 1
            if flow.raw["cadence"] in ("monthly", "weekly"):
                disposal_day = world.next_business_day(day + dt.timedelta(days=DISPOSAL_AFTER_DAYS))
                if disposal_day <= world.end:
                    log.add(
                        t=log.at(disposal_day, agency.tz, rng),
                        source=agency,
                        event_type="disposal",
                        actor=user,
                        description=f"Batch {batch} destroyed (secure overwrite, NIST SP 800-88)",
                        **{**common, "channel": None, "encrypted": None},
                    )
                    added += 1
            if rng.random() < CORRECTION_SHARE:
                fix_day = log.add_business_days(day, int(rng.integers(1, 4)))
                if fix_day <= world.end:
                    # The ledger amends its own entry (the authority first cited in another
                    # form): the entry's outcome says it records no new transfer, and it
                    # repeats the count both sides logged, so the two logs still agree.
                    restated = flow.citations[int(rng.integers(len(flow.citations)))]
                    noise = log.add(
                        t=log.at(fix_day, irs.tz, rng),
                        source=irs,
                        event_type="disclosure",
                        actor=irs_bulk_users[int(rng.integers(len(irs_bulk_users)))],
                        legal_authority=restated,
                        description=(
                            f"CORRECTION to batch {batch}: authority cited amended to {restated};"
                            " no additional records sent"
                        ),
                        outcome="correction",
                        **common,
                    )
                    log.noise["correction"].append(noise)
                    added += 1
    return added


def _standing_requests(
    log: SpecialLog, agency: Agency, flow: Flow, rng: np.random.Generator
) -> int:
    """The written request of the agency head that each renewed agreement rests on
    (bulk flows run on standing requests, e.g. 6103(d)(1) "on written request")."""
    world = log.world
    added = 0
    for agreement in agency.agreements:
        day = world.next_business_day(agreement.valid_from - dt.timedelta(days=30))
        if not (world.start <= day <= world.end):
            continue
        log.add(
            t=log.at(day, agency.tz, rng),
            source=world.discloser,
            event_type="request",
            recipient=agency.code,
            actor=agency.head,
            request_id=f"R-{agreement.agreement_id}",
            legal_authority=flow.citations[0],
            purpose=flow.purpose,
            data_elements=list(flow.raw["bulk_data_elements"]),
            record_count=int(flow.raw["bulk_records"]),
            channel="paper",
            # The agreement is not in force yet when the request is made: no agreement_id.
            description="Written request of the agency head for continued bulk disclosure",
        )
        added += 1
    return added


# -- criminal request chains ------------------------------------------------------------


def _periods(rng: np.random.Generator, year: int) -> str:
    n = int(rng.integers(1, 4))
    return ",".join(str(y) for y in range(year - n, year))


def build_criminal_chains(log: SpecialLog, streams: Streams, events: int) -> int:
    world = log.world
    rng = streams.rng("criminal")
    n_chains = max(3, round(events / CHAIN_EVERY))
    weights = np.array([a.weight for a in world.criminal])
    weights /= weights.sum()
    irs = world.discloser
    specialists = [u for u in irs.users if u[1] == "disclosure_specialist"]
    added = 0
    last_request = world.end - dt.timedelta(days=75)
    counters: dict[str, int] = {}
    for _ in range(n_chains):
        agency = world.criminal[int(rng.choice(len(world.criminal), p=weights))]
        court_ordered = rng.random() < 0.25
        flow = world.flows["criminal_i1" if court_ordered else "criminal_i2"]
        day = log.business_day(rng, world.start, last_request)
        counters[agency.code] = counters.get(agency.code, 0) + 1
        request_id = f"{agency.code}-{day.year}-{counters[agency.code]:04d}"
        n_subjects = int(rng.integers(1, 5))
        taxpayers = rng.integers(0, 1_900_000, size=n_subjects)
        people = person_frame(world, taxpayers)
        elements = list(
            flow.raw["data_elements"][int(rng.integers(len(flow.raw["data_elements"])))]
        )
        statute = flow.raw["statutes"][int(rng.integers(len(flow.raw["statutes"])))]
        reason = flow.raw["reasons"][int(rng.integers(len(flow.raw["reasons"])))]
        periods = _periods(rng, day.year)
        if court_ordered:
            case = f"1:{day:%y}-mj-{int(rng.integers(100, 9999)):05d}"
            note = "Ex parte order of the U.S. District Court authorising disclosure, attached"
        else:
            case = f"{agency.code.split('-')[-1]}-{day.year}-{int(rng.integers(10000, 99999))}"
            note = "Written request signed by the head of the agency for a non-tax criminal investigation"
        cite = flow.citations[int(rng.integers(len(flow.citations)))]
        channel = flow.raw["channels"][int(rng.integers(len(flow.raw["channels"])))]
        common = {
            "recipient": agency.code,
            "request_id": request_id,
            "purpose": flow.purpose,
            "data_elements": elements,
            "record_count": n_subjects,
            "case_number": case,
        }
        req = log.add(
            t=log.at(day, agency.tz, rng),
            source=irs,
            event_type="request",
            actor=agency.head,
            legal_authority=cite,
            channel=channel,
            encrypted=channel != "paper" or None,
            description=note,
            **common,
        )
        tins = [tin_text(int(k)) for k in taxpayers]
        rows = [
            {
                "item_no": i + 1,
                "taxpayer_tin": tins[i],
                "supplied_name": people["supplied_name"][i],
                "supplied_address": people["supplied_address"][i],
                "tax_periods": periods,
                "statute": statute,
                "reason": reason,
                "match_method": None,
            }
            for i in range(n_subjects)
        ]
        log.add_item_rows(req, request_id, rows)
        disc_day = log.add_business_days(day, int(rng.integers(7, 30)))
        t_disc = log.at(disc_day, irs.tz, rng)
        disc = log.add(
            t=t_disc,
            source=irs,
            event_type="disclosure",
            actor=specialists[int(rng.integers(len(specialists)))],
            legal_authority=flow.citations[0],
            channel=channel,
            encrypted=channel != "paper" or None,
            description="Disclosure in response to request; identity verified by TIN",
            **common,
        )
        log.add_item_rows(disc, request_id, [{**r, "match_method": "tin"} for r in rows])
        receipt_day = log.add_business_days(disc_day, int(rng.integers(0, 3)))
        agent = agency.users[int(rng.integers(len(agency.users)))]
        log.add(
            t=max(t_disc + 600, log.at(receipt_day, agency.tz, rng)),
            source=agency,
            event_type="receipt",
            actor=agent,
            legal_authority=cite,
            channel=channel,
            encrypted=channel != "paper" or None,
            description="FTI received and logged for the investigation",
            **common,
        )
        added += 3
        for _ in range(int(rng.integers(1, 5))):
            use_day = log.add_business_days(receipt_day, int(rng.integers(1, 40)))
            if use_day > world.end:
                break
            who = tins[int(rng.integers(n_subjects))]
            log.add(
                t=log.at(use_day, agency.tz, rng),
                source=agency,
                event_type="access",
                actor=agency.users[int(rng.integers(len(agency.users)))],
                taxpayer_tin=who,
                description="Case agent reviewed disclosed information",
                **{**common, "record_count": 1},
            )
            added += 1
    return added
