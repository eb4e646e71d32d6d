"""Lawful traffic: bulk flows on their own rhythms, criminal requests, access audits.

Every event written here is lawful under the registry plus the probe's overlay; injected
cases (``injected.py``) reuse the same builders with one fact changed.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from benchmarks.probe import vocab
from benchmarks.probe.world import END, START, World

IRS_XFER = ("svc-fti-xfer@irs.gov", "transfer_service")
US_HOLIDAYS = {date(2025, 1, 1), date(2025, 1, 20), date(2025, 2, 17), date(2025, 5, 26),
               date(2025, 7, 4), date(2025, 9, 1), date(2025, 11, 27), date(2025, 12, 25),
               date(2026, 1, 1), date(2026, 1, 19), date(2026, 2, 16), date(2026, 5, 25)}  # fmt: skip

# Bulk flows: (recipient as written, authority, purpose as written, elements, median records,
# rhythm, local hour, source). Rhythms: nightly (every day), business (Mon-Fri, no
# holidays), weekly:<weekday>, monthly:<day>, yearly:<month>-<day>.
BULK_FLOWS: list[dict[str, Any]] = [
    {
        "recipient": ["CA-FTB", "CAL FTB"],
        "authority": "26 USC 6103(d)",
        "purpose": "State Tax Administration",
        "elements": ["Name", "SSN", "Mailing Address", "AGI", "W-2 Wages"],
        "records": 40_000,
        "rhythm": "nightly",
        "hour": 0,
        "source": "kiteworks-activity",
        "receiver": "ftb-batch@ftb.ca.gov",
    },
    {
        "recipient": ["NY-DTF"],
        "authority": "26 USC 6103(d)",
        "purpose": "state tax administration",
        "elements": ["Name", "SSN", "Address", "AGI"],
        "records": 25_000,
        "rhythm": "business",
        "hour": 20,
        "source": "kiteworks-activity",
        "receiver": "dtf.fti.intake@tax.ny.gov",
    },
    {
        "recipient": ["PR-HACIENDA"],
        "authority": "26 USC 6103(d)",
        "purpose": "state tax administration",
        "cite": "Sección 6103(d) del Código de Rentas Internas federal (26 U.S.C. 6103(d))",
        "elements": ["Name", "SSN", "Address", "AGI"],
        "records": 8_000,
        "rhythm": "weekly:1",
        "hour": 10,
        "source": "kiteworks-activity",
        "receiver": "sftp.fti@hacienda.pr.gov",
    },
    {
        "recipient": ["TX-OAG-CSD"],
        "authority": "26 USC 6103(l)(6)",
        "purpose": "child support",
        "elements": ["Name", "SSN", "Address", "Employer", "Wages"],
        "records": 60_000,
        "rhythm": "monthly:3",
        "hour": 10,
        "source": "kiteworks-activity",
        "receiver": "csd-fti@oag.texas.gov",
    },
    {
        "recipient": ["SSA", "US-SSA"],
        "authority": "26 USC 6103(l)(1)",
        "purpose": "social_security_administration",
        "elements": ["tin", "name", "income", "wages"],
        "records": 800_000,
        "agreement": "IRS-SSA CMA 1071",
        "rhythm": "weekly:5",
        "hour": 3,
        "source": "irs-matching-exchange",
        "channel": "sftp",
    },
    {
        "recipient": ["CENSUS", "USCB"],
        "authority": "26 USC 6103(j)(1)",
        "purpose": "statistical",
        "elements": ["name", "address", "income", "filing_status", "dependents"],
        "records": 3_000_000,
        "agreement": "Census-IRS Agreement 2024-01",
        "rhythm": "monthly:1",
        "hour": 6,
        "source": "irs-matching-exchange",
        "channel": "tape",
    },
    {
        "recipient": ["LACOUNTY-DCSS"],
        "authority": "26 USC 6103(l)(6)",
        "purpose": "child_support_enforcement",
        "elements": ["name", "address", "tin", "wages"],
        "records": 5_000,
        "rhythm": "monthly:12",
        "hour": 9,
        "source": "irs-matching-exchange",
        "channel": "sftp",
    },
    {
        "recipient": ["HUD"],
        "authority": "26 USC 6103(l)(7)",
        "purpose": "benefit_eligibility",
        "elements": ["name", "tin", "income"],
        "records": 2_000_000,
        "agreement": "IRS-HUD CMA 2023-07",
        "rhythm": "yearly:1-15",
        "hour": 7,
        "source": "irs-matching-exchange",
        "channel": "sftp",
    },
]


def runs_on(rhythm: str, day: date) -> bool:
    kind, _, arg = rhythm.partition(":")
    if kind == "nightly":
        return True
    if kind == "business":
        return day.weekday() < 5 and day not in US_HOLIDAYS
    if kind == "weekly":
        return day.weekday() == int(arg)
    if kind == "monthly":
        return day.day == int(arg)
    month, dom = (int(x) for x in arg.split("-"))
    return day.month == month and day.day == dom


def bulk_transfer(
    w: World,
    flow: dict[str, Any],
    at: datetime,
    *,
    records: int | None = None,
    label: str = "lawful",
    instance: str | None = None,
    receipt: bool = True,
    recipient: str | None = None,
    **override: Any,
) -> list[dict[str, Any]]:
    """One transfer of a bulk flow (and its receipt, when the flow's log records one)."""
    rng = w.rng
    recipient = recipient or rng.choice(flow["recipient"])
    n = (
        records
        if records is not None
        else max(1, int(rng.lognormvariate(0, 0.25) * flow["records"]))
    )
    fields: dict[str, Any] = {
        "legal_authority": flow.get("cite") or vocab.cite(rng, flow["authority"]),
        "purpose": flow["purpose"],
        "data_elements": flow["elements"],
        "record_count": n,
        "actor_role": IRS_XFER[1],
        "request_id": None,
        "channel": flow.get("channel", "secure_file_transfer"),
        "encrypted": True,
        "outcome": "success",
    }
    if flow.get("agreement"):
        fields["agreement_id"] = flow["agreement"]
    fields.update(override)
    sent = w.add(
        flow["source"],
        at,
        "disclosure",
        disclosing="IRS",
        recipient=recipient,
        actor=IRS_XFER[0],
        label=label,
        instance=instance,
        **fields,
    )
    out = [sent]
    if receipt and flow["source"] == "kiteworks-activity":
        got = at + timedelta(minutes=rng.randint(20, 480))
        out.append(
            w.add(
                flow["source"],
                got,
                "receipt",
                disclosing="IRS",
                recipient=recipient,
                actor=flow["receiver"],
                label=label,
                instance=instance,
                **{**fields, "actor_role": "recipient_service"},
            )
        )
    return out


def bulk_flows(w: World) -> None:
    for flow in BULK_FLOWS:
        zone = "America/New_York"
        for day in w.days():
            if runs_on(flow["rhythm"], day):
                bulk_transfer(w, flow, w.local(day, zone, flow["hour"], 5, jitter_min=50))


# ---------------------------------------------------------------- case-by-case requests

REQUESTERS: list[dict[str, Any]] = [
    {"agency": "FBI", "role": "fbi_director", "actor": "director.office@fbi.gov"},
    {"agency": "DOJ-FBI", "role": "head_of_agency", "actor": "director.office@fbi.gov"},
    {"agency": "DEA", "role": "dea_administrator", "actor": "administrator@dea.gov"},
    {"agency": "USAO-SDNY", "role": "us_attorney", "actor": "usattorney.sdny@usdoj.gov"},
    {"agency": "DOJ-USAO-DAZ", "role": "us_attorney", "actor": "usattorney.daz@usdoj.gov"},
    {"agency": "HSI", "role": "head_of_agency", "actor": "executive.director@hsi.dhs.gov"},
    {"agency": "ATF", "role": "head_of_agency", "actor": "director@atf.gov"},
]
AGENTS = [f"sa.{n:03d}@fieldoffice.gov" for n in range(1, 41)]
# Holders under a retention term in the probe's registry overlay: they log every disposal.
RETAINED_BY_TERM = frozenset({"DEA"})
AUTO = -1  # dispose_after_days: the holder's own habit
# A disclosure sent later than this before the export would have its receipt (up to 40 h
# later) cut off by the export: it is left pending, as an office's last requests are.
EXPORT_MARGIN = timedelta(days=2)
DISCLOSURE_STAFF = ["DISC\\mlopez", "DISC\\tkahale", "DISC\\rbrown", "DISC\\jnguyen"]


def criminal_chain(
    w: World,
    at: datetime,
    *,
    requester: dict[str, Any] | None = None,
    subjects: int | None = None,
    authority: str = "26 USC 6103(i)(2)",
    label: str = "lawful",
    instance: str | None = None,
    addresses: list[str] | None = None,
    item_fields: dict[str, Any] | None = None,
    request_fields: dict[str, Any] | None = None,
    disclosure_fields: dict[str, Any] | None = None,
    disclose: bool = True,
    log_request: bool = True,
    uses: int | None = None,
    receipt: bool = True,
    dispose_after_days: int | None = AUTO,
) -> dict[str, list[dict[str, Any]]]:
    """A request, its disclosure by the IRS disclosure office, receipt, a few uses and, for
    some holders (all under a retention term), the disposal of the data."""
    rng = w.rng
    req = requester or rng.choice(REQUESTERS)
    k = subjects or rng.randint(1, 4)
    request_id = f"DO-{at:%Y}-{rng.randint(10_000, 99_999)}-{rng.choice('ABCDEFGH')}"
    cite = vocab.cite(rng, authority) if authority in vocab.CITATIONS else authority
    purpose = "nontax_criminal_investigation"
    base = {"request_id": request_id, "legal_authority": cite, "purpose": purpose}
    chain: dict[str, list[dict[str, Any]]] = {
        "request": [],
        "disclosure": [],
        "receipt": [],
        "use": [],
    }
    people = [(vocab.tin(rng), vocab.name(rng)) for _ in range(k)]
    if authority == "26 USC 6103(i)(1)":
        base["case_number"] = f"{rng.randint(1, 4)}:{at:%y}-mj-{rng.randint(1000, 9999)}"
    if log_request:
        q = w.add(
            "irs-disclosure-office",
            at,
            "request",
            disclosing="IRS",
            recipient=req["agency"],
            actor=req["actor"],
            actor_role=req["role"],
            record_count=k,
            label=label,
            instance=instance,
            **{**base, **(request_fields or {})},
        )
        chain["request"].append(q)
        for n, (t, nm) in enumerate(people, start=1):
            addr = addresses[n - 1] if addresses else rng.choice(vocab.USABLE_ADDRESSES)
            fields = {
                "taxpayer_tin": t,
                "supplied_name": nm,
                "supplied_address": addr,
                "tax_periods": "2022,2023",
                "statute": rng.choice(vocab.CRIMINAL_STATUTES),
                "reason": rng.choice(vocab.CRIMINAL_REASONS),
                "match_method": "tin",
            }
            w.item(q, n, **{**fields, **(item_fields or {})})
    if not disclose:
        return chain
    sent_day = (at + timedelta(days=rng.randint(5, 30))).date()
    while sent_day.weekday() >= 5:
        sent_day += timedelta(days=1)
    sent_at = w.local(sent_day, "America/New_York", 8, 30, jitter_min=480)
    if sent_at > END - EXPORT_MARGIN:  # still pending on the export date: only the request
        return chain
    elements = ["name", "address", "tin"] if authority != "26 USC 6103(i)(1)" else ["full_return"]
    dfields = {
        **base,
        "data_elements": elements,
        "record_count": k,
        "channel": "secure_file_transfer",
        "encrypted": True,
        "actor_role": "disclosure_officer",
        **(disclosure_fields or {}),
    }
    if k == 1:
        dfields.setdefault("taxpayer_tin", people[0][0])
    d = w.add(
        "irs-disclosure-office",
        sent_at,
        "disclosure",
        disclosing="IRS",
        recipient=req["agency"],
        actor=rng.choice(DISCLOSURE_STAFF),
        label=label,
        instance=instance,
        **dfields,
    )
    chain["disclosure"].append(d)
    if k > 1:
        for n, (t, _) in enumerate(people, start=1):
            w.item(d, n, taxpayer_tin=t)
    got = sent_at + timedelta(hours=rng.randint(1, 40))
    agent = rng.choice(AGENTS)
    elements = d["data_elements"]
    if not receipt:
        return chain
    r = w.add(
        "fed-le-receipts",
        got,
        "receipt",
        disclosing="IRS",
        recipient=req["agency"],
        actor=agent,
        actor_role="special_agent",
        label=label,
        instance=instance,
        **{**base, "data_elements": elements, "record_count": k},
    )
    chain["receipt"].append(r)
    for _ in range(uses if uses is not None else rng.randint(0, 2)):
        t, _nm = rng.choice(people)
        use_at = got + timedelta(days=rng.randint(0, 20), hours=rng.randint(0, 8))
        if use_at > END:  # the logs are exported at END: nothing later is in them
            continue
        chain["use"].append(
            w.add(
                "fed-le-receipts",
                use_at,
                "access",
                disclosing="IRS",
                recipient=req["agency"],
                actor=agent,
                actor_role="special_agent",
                label=label,
                instance=instance,
                taxpayer_tin=t,
                **{**base, "data_elements": elements},
            )
        )
    if dispose_after_days == AUTO:
        keeps = req["agency"] not in RETAINED_BY_TERM and rng.random() > 0.2
        dispose_after_days = None if keeps else rng.randint(30, 200)
    disposed_at = (
        None
        if dispose_after_days is None
        else got + timedelta(days=dispose_after_days, hours=rng.randint(0, 8))
    )
    if disposed_at is not None and disposed_at <= END:  # later: still held on the export date
        chain["disposal"] = [
            w.add(
                "fed-le-receipts",
                disposed_at,
                "disposal",
                disclosing="IRS",
                recipient=req["agency"],
                actor=agent,
                actor_role="special_agent",
                label=label,
                instance=instance,
                **{**base, "data_elements": elements, "record_count": k},
            )
        ]
    return chain


def criminal_requests(w: World, count: int) -> None:
    for _ in range(count):
        # requests come in until the export; those answered after it are pending there
        day = w.uniform_time(START, END - EXPORT_MARGIN).date()
        if day.weekday() >= 5:
            day -= timedelta(days=2)
        at = w.local(day, "America/New_York", 8, 0, jitter_min=540)
        authority = "26 USC 6103(i)(1)" if w.rng.random() < 0.15 else "26 USC 6103(i)(2)"
        requester = w.rng.choice(REQUESTERS[3:5]) if authority.endswith("(i)(1)") else None
        criminal_chain(w, at, requester=requester, authority=authority)
