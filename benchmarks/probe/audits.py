"""Recipient-side traffic: bursty FTI access audits, a child-support ledger, and a county
sheriff's Privacy Act requests to SSA."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from benchmarks.probe import vocab
from benchmarks.probe.world import END, START, World

HI_AGENCY = "HI-DOTAX"
HI_ZONE = "Pacific/Honolulu"
HI_ROLES = ("examiner", "examiner", "auditor", "analyst", "collections_officer")
TX_AGENCY = "TX-OAG-CSD"
TX_ZONE = "America/Chicago"


def hi_users(n: int = 36) -> list[tuple[str, str]]:
    return [(str(100_200 + 17 * i), HI_ROLES[i % len(HI_ROLES)]) for i in range(n)]


def active_weeks(w: World) -> set[tuple[int, int]]:
    """Audit campaigns: about two weeks in three are busy, the rest are quiet."""
    weeks = {d.isocalendar()[:2] for d in w.days()}
    return {wk for wk in sorted(weeks) if w.rng.random() < 0.68}


def hi_pool(w: World, target: int) -> list[str]:
    return [vocab.tin(w.rng) for _ in range(max(1_500, target // 10))]


def hi_access(w: World, at: datetime, user: tuple[str, str], tin: str, **kw: Any) -> dict[str, Any]:
    kind = w.rng.choices(["VIEW", "QUERY", "PRINT"], [70, 25, 5])[0]
    return w.add(
        "pub1075-audit",
        at,
        "access",
        disclosing="IRS",
        recipient=HI_AGENCY,
        actor=user[0],
        actor_role=user[1],
        taxpayer_tin=tin,
        audit_type=kind,
        outcome="S" if w.rng.random() > 0.01 else "F",
        **kw,
    )


def hi_audits(w: World, target: int, pool: list[str]) -> None:
    """Business-hours inspections in Hawaii time, in campaigns with quiet weeks between."""
    busy = active_weeks(w)
    days = [d for d in w.days() if d.weekday() < 5 and d.isocalendar()[:2] in busy]
    users = hi_users()
    per_user_day = max(0.2, target / max(1, len(days) * len(users)))
    for day in days:
        for user in users:
            for _ in range(_poisson(w, per_user_day)):
                at = w.local(day, HI_ZONE, 7, 30, jitter_min=540)
                hi_access(w, at, user, w.rng.choice(pool))


def _poisson(w: World, lam: float) -> int:
    # Knuth for small rates, a rounded normal beyond (rates here stay small).
    if lam > 30:
        return max(0, round(w.rng.gauss(lam, lam**0.5)))
    limit, k, p = 2.718281828459045 ** (-lam), 0, 1.0
    while True:
        p *= w.rng.random()
        if p <= limit:
            return k
        k += 1


def tx_ledger(w: World, target: int) -> None:
    """The child-support agency's own FTI ledger: monthly receipts and caseworkers' uses."""
    workers = [f"cw{n:03d}@oag.texas.gov" for n in range(1, 25)]
    pool = [vocab.tin(w.rng) for _ in range(max(800, target // 6))]
    common = {
        "legal_authority": "IRC 6103(l)(6)",
        "purpose": "child support",
        "data_elements": ["name", "address", "wages", "employer"],
    }
    # its own receipt of each monthly file, with the records the sender's ledger shows
    sent = [
        e
        for e in w.events
        if e["event_type"] == "disclosure" and e["recipient_agency"] == TX_AGENCY
    ]
    for transfer in sent:
        w.add(
            "txoag-fti-ledger",
            transfer["occurred_at"] + timedelta(minutes=w.rng.randint(120, 300)),
            "receipt",
            disclosing="IRS",
            recipient=TX_AGENCY,
            actor="csd-fti@oag.texas.gov",
            actor_role="recipient_service",
            record_count=transfer["record_count"],
            **common,
        )
    days = [d for d in w.days() if d.weekday() < 5]
    rate = target / max(1, len(days))
    for day in days:
        for _ in range(_poisson(w, rate)):
            at = w.local(day, TX_ZONE, 8, 0, jitter_min=540)
            w.add(
                "txoag-fti-ledger",
                at,
                "access",
                disclosing="IRS",
                recipient=TX_AGENCY,
                actor=w.rng.choice(workers),
                actor_role="caseworker",
                taxpayer_tin=w.rng.choice(pool),
                **common,
            )


SHERIFF = {"agency": "MCSO", "actor": "sheriff.office@mcso.maricopa.gov", "role": "head_of_agency"}
SSA_STAFF = ["ssa.oge.disclosure1@ssa.gov", "ssa.oge.disclosure2@ssa.gov"]


def county_request(
    w: World,
    at: datetime,
    *,
    label: str = "lawful",
    instance: str | None = None,
    reason: str | None = "Locate subject of felony warrant AZ-CR2025-0114",
) -> list[dict[str, Any]]:
    """A county sheriff's written request to SSA under the Privacy Act, and SSA's answer."""
    rng = w.rng
    rid = f"MCSO-{at:%y}{rng.randint(1000, 9999)}"
    common = {
        "request_id": rid,
        "legal_authority": vocab.cite(rng, "5 USC 552a(b)(7)"),
        "purpose": "law_enforcement",
    }
    q = w.add(
        "ssa-pa-disclosures",
        at,
        "request",
        disclosing="SSA",
        recipient=SHERIFF["agency"],
        actor=SHERIFF["actor"],
        actor_role=SHERIFF["role"],
        label=label,
        instance=instance,
        data_elements=["name", "address", "date_of_birth"],
        **common,
    )
    t = vocab.tin(rng)
    w.item(
        q,
        1,
        taxpayer_tin=t,
        supplied_name=vocab.name(rng),
        supplied_address=rng.choice(vocab.USABLE_ADDRESSES),
        reason=reason,
    )
    sent = at + timedelta(days=rng.randint(3, 15), hours=rng.randint(0, 6))
    if sent > END:  # still pending on the export date
        return [q]
    d = w.add(
        "ssa-pa-disclosures",
        sent,
        "disclosure",
        disclosing="SSA",
        recipient=SHERIFF["agency"],
        actor=rng.choice(SSA_STAFF),
        actor_role="disclosure_officer",
        taxpayer_tin=t,
        label=label,
        instance=instance,
        data_elements=["name", "address", "date_of_birth"],
        channel="portal",
        encrypted=True,
        **common,
    )
    return [q, d]


def county_requests(w: World, count: int) -> None:
    for _ in range(count):
        # requests come in until the export; those answered after it are pending there
        county_request(w, w.uniform_time(START, END - timedelta(days=2)))


def first_weekday(day: date) -> date:
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return day
