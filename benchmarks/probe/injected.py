"""Injected cases: a violation of every kind the rules name, and behavioural anomalies.

Each case is an ``Instance`` with the detectors expected to find it; its events carry the
instance id. Per-taxpayer truth is recorded where the law counts per taxpayer.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from benchmarks.probe import vocab
from benchmarks.probe.audits import HI_ZONE, TX_AGENCY, hi_access, hi_users
from benchmarks.probe.lawful import BULK_FLOWS, bulk_transfer, criminal_chain
from benchmarks.probe.world import World

ML = ["ml.transfer_surprise", "ml.recipient_volume", "ml.first_seen_combination", "ml.actor_peers"]
ICE_HEAD = {"agency": "ICE", "actor": "acting.director@ice.dhs.gov", "role": "head_of_agency"}
ICE_OFFICERS = [f"ero.officer{n:02d}@ice.dhs.gov" for n in range(1, 13)]
DDC_ORDER = datetime(2025, 11, 21, 5, 0, tzinfo=UTC)
DMASS_ORDER = datetime(2026, 2, 5, 5, 0, tzinfo=UTC)


def flow(recipient: str) -> dict[str, Any]:
    return next(f for f in BULK_FLOWS if f["recipient"][0] == recipient)


def _ice_request(
    w: World, at: datetime, k: int, unusable_share: float, rid: str, inst: str
) -> dict[str, Any]:
    rng = w.rng
    q = w.add(
        "irs-disclosure-office",
        at,
        "request",
        disclosing="IRS",
        recipient=ICE_HEAD["agency"],
        actor=ICE_HEAD["actor"],
        actor_role=ICE_HEAD["role"],
        record_count=k,
        request_id=rid,
        legal_authority="26 U.S.C. § 6103(i)(2)",
        purpose="Removal Operations",
        agreement_id="IRS-ICE MOU",
        label="violation",
        instance=inst,
    )
    for n in range(1, k + 1):
        bad = rng.random() < unusable_share
        w.item(
            q,
            n,
            taxpayer_tin=vocab.tin(rng),
            supplied_name=vocab.name(rng),
            supplied_address=rng.choice(
                vocab.UNUSABLE_ADDRESSES if bad else vocab.USABLE_ADDRESSES
            ),
            tax_periods="2022,2023,2024",
            statute="8 U.S.C. 1253(a)(1)",
            reason="Final order of removal; failure to depart",
            match_method="name_address",
            usable=not bad,
        )
    return q


def _ice_disclosure(
    w: World, q: dict[str, Any], at: datetime, share: float, inst: str, truth: str | None
) -> tuple[dict[str, Any], list[str]]:
    asked = [i for i in w.items if i["event_id"] == q["event_id"]]
    sent = [i for i in asked if w.rng.random() < share] or asked[:1]
    d = w.add(
        "irs-disclosure-office",
        at,
        "disclosure",
        disclosing="IRS",
        recipient="DHS-ICE",
        actor="DISC\\bulk.match",
        actor_role="disclosure_officer",
        record_count=len(sent),
        request_id=q["request_id"],
        legal_authority=q["legal_authority"],
        purpose=q["purpose"],
        agreement_id="IRS-ICE MOU",
        data_elements=["name", "address"],
        channel="secure_file_transfer",
        encrypted=True,
        label="violation",
        instance=inst,
    )
    for n, i in enumerate(sent, start=1):
        w.item(d, n, taxpayer_tin=i["taxpayer_tin"])
        if truth == "address" and not i["usable"]:
            w.truth_subject(
                "disclosed_without_usable_address", i["taxpayer_tin"], inst, q["request_id"]
            )
        if truth == "enjoined":
            w.truth_subject(
                "disclosed_under_enjoined_flow", i["taxpayer_tin"], inst, q["request_id"]
            )
    w.add(
        "fed-le-receipts",
        at + timedelta(hours=3),
        "receipt",
        disclosing="IRS",
        recipient="DHS-ICE",
        actor="ero.data@ice.dhs.gov",
        actor_role="data_steward",
        record_count=len(sent),
        request_id=q["request_id"],
        legal_authority=q["legal_authority"],
        purpose="locate for removal",
        data_elements=["name", "address"],
        label="violation",
        instance=inst,
    )
    return d, [i["taxpayer_tin"] for i in sent]


def ice_flow(w: World) -> None:
    """The 2025 story: a bulk civil-removal request under 6103(i)(2), the August disclosure,
    ICE's uses of it, a disclosure after the D.D.C. order, uses after the D. Mass. order."""
    k = min(20_000, max(200, w.events_target // 20))
    bulk = w.instance(
        "ice_bulk_address_request",
        "rule",
        [
            "purpose_not_permitted",
            "bulk_case_by_case_request",
            "implausible_attestation",
            "request_missing_required_elements",
            "disclosure_without_valid_address",
        ],
        acceptable=[*ML, "agreement_not_valid", "disclosure_without_request"],
    )
    q = _ice_request(
        w, datetime(2025, 6, 27, 18, 5, tzinfo=UTC), k, 0.35, "ICE-ERO-2025-0627-001", bulk
    )
    _d, sent = _ice_disclosure(w, q, datetime(2025, 8, 7, 14, 14, tzinfo=UTC), 0.4, bulk, "address")
    after = w.instance(
        "ice_use_after_order",
        "rule",
        ["use_after_court_order"],
        acceptable=["purpose_not_permitted", *ML],
    )
    # ICE's uses before the D. Mass. order: for a purpose (i)(2) does not serve
    before = w.instance(
        "ice_use_before_order",
        "rule",
        ["purpose_not_permitted"],
        acceptable=["use_after_court_order", *ML],
    )
    uses = min(3_000, max(60, w.events_target // 200))
    for _ in range(uses):
        at = w.uniform_time(datetime(2025, 8, 8, tzinfo=UTC), datetime(2026, 6, 20, tzinfo=UTC))
        inst = after if at >= DMASS_ORDER else before
        t = w.rng.choice(sent)
        w.add(
            "fed-le-receipts",
            at,
            "access",
            disclosing="IRS",
            recipient="DHS-ICE",
            actor=w.rng.choice(ICE_OFFICERS),
            actor_role="deportation_officer",
            taxpayer_tin=t,
            request_id=q["request_id"],
            legal_authority=q["legal_authority"],
            purpose="locate for removal",
            data_elements=["name", "address"],
            label="violation",
            instance=inst,
        )
        if inst == after:
            w.truth_subject("used_after_order", t, inst, q["request_id"])
    late = w.instance(
        "ice_disclosure_under_order",
        "rule",
        ["disclosure_under_court_order"],
        acceptable=[
            "purpose_not_permitted",
            "agreement_not_valid",
            "implausible_attestation",
            "bulk_case_by_case_request",
            *ML,
        ],
    )
    q2 = _ice_request(
        w, datetime(2025, 11, 3, 15, 30, tzinfo=UTC), 60, 0.0, "ICE-ERO-2025-1103-007", late
    )
    _ice_disclosure(w, q2, datetime(2025, 12, 9, 15, 2, tzinfo=UTC), 0.8, late, "enjoined")


def chain_cases(w: World, when: datetime) -> None:
    """Case-by-case requests with one fact wrong."""
    fbi = {"agency": "DOJ-FBI", "role": "head_of_agency", "actor": "director.office@fbi.gov"}
    usao = {"agency": "USAO-SDNY", "role": "us_attorney", "actor": "usattorney.sdny@usdoj.gov"}
    dea = {"agency": "DEA", "role": "dea_administrator", "actor": "administrator@dea.gov"}
    step = timedelta(days=9)

    def case(kind: str, expected: list[str], acceptable: list[str] | None = None) -> str:
        return w.instance(kind, "rule", expected, acceptable=acceptable or [])

    inst = case("data_elements_not_permitted", ["data_elements_not_permitted"], ML)
    criminal_chain(
        w,
        when,
        requester=fbi,
        label="violation",
        instance=inst,
        disclosure_fields={"data_elements": ["name", "address", "wages", "bank_account"]},
    )
    inst = case(
        "disclosure_without_request",
        ["disclosure_without_request"],
        ["disclosure_without_valid_address", *ML],
    )
    c = criminal_chain(
        w,
        when + step,
        requester=dea,
        subjects=1,
        label="violation",
        instance=inst,
        log_request=False,
    )
    w.truth_subject(
        "disclosed_without_usable_address",
        c["disclosure"][0]["taxpayer_tin"],
        inst,
        c["disclosure"][0]["request_id"],
    )
    inst = case("requester_role_not_permitted", ["requester_role_not_permitted"], ML)
    criminal_chain(
        w,
        when + 2 * step,
        label="violation",
        instance=inst,
        requester={"agency": "DOJ-FBI", "role": "special_agent", "actor": "sa.whitfield@fbi.gov"},
    )
    inst = case("request_missing_required_elements", ["request_missing_required_elements"], ML)
    criminal_chain(
        w,
        when + 3 * step,
        requester=fbi,
        subjects=2,
        label="violation",
        instance=inst,
        item_fields={"tax_periods": None, "reason": None},
    )
    inst = case(
        "placeholder_address",
        ["disclosure_without_valid_address", "request_missing_required_elements"],
        ML,
    )
    bad = w.rng.choice(vocab.UNUSABLE_ADDRESSES[6:14])
    c = criminal_chain(
        w,
        when + 4 * step,
        requester=usao,
        subjects=3,
        label="violation",
        instance=inst,
        addresses=[vocab.USABLE_ADDRESSES[3], bad, vocab.USABLE_ADDRESSES[8]],
    )
    item = next(
        i for i in w.items if i["event_id"] == c["request"][0]["event_id"] and i["item_no"] == 2
    )
    w.truth_subject(
        "disclosed_without_usable_address", item["taxpayer_tin"], inst, item["request_id"]
    )
    inst = case("court_order_missing", ["court_order_missing"], ML)
    criminal_chain(
        w,
        when + 5 * step,
        requester=usao,
        authority="26 USC 6103(i)(1)",
        label="violation",
        instance=inst,
        request_fields={"case_number": "pending"},
        disclosure_fields={"case_number": "N/A"},
    )
    inst = case("unapproved_channel", ["unapproved_channel"], ML)
    criminal_chain(
        w,
        when + 6 * step,
        requester=fbi,
        label="violation",
        instance=inst,
        disclosure_fields={"channel": "email", "encrypted": False},
    )
    inst = case(
        "authority_unrecognised_text",
        ["authority_unrecognised"],
        ["disclosure_without_authority", "request_missing_required_elements", *ML],
    )
    criminal_chain(
        w,
        when + 7 * step,
        requester=usao,
        label="violation",
        instance=inst,
        authority="per standing arrangement with the Service",
    )
    custody_cases(w, when + 9 * step, fbi, dea)
    inst = case("backdated_entry", ["out_of_order_timestamps"], ML)
    c = criminal_chain(w, when + 8 * step, requester=fbi, label="violation", instance=inst)
    c["disclosure"][0]["logged_at"] += timedelta(days=6)


def bulk_cases(w: World, when: datetime) -> None:
    """Bulk transfers with one fact wrong."""

    def case(kind: str, expected: list[str], acceptable: list[str] | None = None) -> str:
        return w.instance(kind, "rule", expected, acceptable=acceptable or [])

    step = timedelta(days=5, hours=7)
    inst = case(
        "authority_unrecognised_subdivision",
        ["authority_unrecognised"],
        ["authority_not_in_force", "recipient_not_permitted", "purpose_not_permitted", *ML],
    )
    bulk_transfer(
        w, flow("NY-DTF"), when, label="violation", instance=inst, legal_authority="IRC 6103(d)(9)"
    )
    inst = case(
        "confidentiality_rule_cited", ["authority_not_in_force"], ["authority_unrecognised", *ML]
    )
    bulk_transfer(
        w,
        flow(TX_AGENCY),
        when + step,
        label="violation",
        instance=inst,
        legal_authority="26 U.S.C. 6103(a)",
    )
    inst = case(
        "no_authority", ["disclosure_without_authority"], ["accounting_entry_incomplete", *ML]
    )
    bulk_transfer(
        w, flow("CENSUS"), when + 2 * step, label="violation", instance=inst, legal_authority="N/A"
    )
    inst = case(
        "recipient_not_permitted",
        ["recipient_not_permitted"],
        ["purpose_not_permitted", "agreement_not_valid", *ML],
    )
    bulk_transfer(
        w,
        flow("SSA"),
        when + 3 * step,
        label="violation",
        instance=inst,
        recipient="DOJ-FBI",
        records=1_200,
    )
    inst = case("purpose_not_permitted", ["purpose_not_permitted"], ML)
    bulk_transfer(
        w,
        flow("NY-DTF"),
        when + 4 * step,
        label="violation",
        instance=inst,
        purpose="voter roll maintenance",
    )
    inst = case(
        "accounting_entry_incomplete",
        ["accounting_entry_incomplete"],
        ["purpose_not_permitted", *ML],
    )
    bulk_transfer(w, flow("SSA"), when + 5 * step, label="violation", instance=inst, purpose=None)
    inst = case(
        "redisclosure_forbidden",
        ["redisclosure_forbidden"],
        ["purpose_not_permitted", "recipient_not_permitted", *ML],
    )
    w.add(
        "txoag-fti-ledger",
        when + 6 * step,
        "redisclosure",
        disclosing=TX_AGENCY,
        recipient="TRAVIS-CO-SO",
        actor="cw007@oag.texas.gov",
        actor_role="caseworker",
        taxpayer_tin=vocab.tin(w.rng),
        legal_authority="IRC 6103(l)(6)",
        purpose="warrant service",
        channel="portal",
        encrypted=True,
        data_elements=["name", "address", "employer"],
        label="violation",
        instance=inst,
    )


def relabel_registry_cases(w: World) -> None:
    """Flows that become violations by the calendar: an agreement that lapsed, a safeguards
    review that aged out (dates in the probe's registry overlay)."""
    hud = w.instance("agreement_expired", "rule", ["agreement_not_valid"], acceptable=ML)
    lac = w.instance(
        "safeguards_review_lapsed", "rule", ["safeguards_review_not_current"], acceptable=ML
    )
    for e in w.events:
        if e["event_type"] != "disclosure" or e["label"] != "lawful":
            continue
        if e["recipient_agency"] == "HUD" and e["occurred_at"] >= datetime(
            2026, 1, 1, 5, tzinfo=UTC
        ):
            e.update(label="violation", instance=hud)
        if e["recipient_agency"] == "LACOUNTY-DCSS" and e["occurred_at"] >= datetime(
            2025, 4, 22, tzinfo=UTC
        ):
            e.update(label="violation", instance=lac)


NEW_RECIPIENTS = ("WY-DOR", "ND-OSTC", "VT-DOT", "SD-DOR")


def behaviour_cases(w: World, when: datetime, hi_pool: list[str], n: int = 0) -> None:
    """Behaviour no rule names: browsing, a records spike, a new recipient, off hours."""
    rng = w.rng
    inst = w.instance("insider_browsing", "behaviour", ["ml.actor_peers"])
    user = hi_users()[rng.randrange(36)]
    day = when.date()
    for n in range(6):
        d = day + timedelta(days=n)
        for _ in range(rng.randint(60, 90)):
            hi_access(
                w,
                w.local(d, HI_ZONE, 8, 0, jitter_min=480),
                user,
                rng.choice(hi_pool),
                label="anomaly",
                instance=inst,
            )
    inst = w.instance("record_spike", "behaviour", ["ml.recipient_volume", "ml.transfer_surprise"])
    start, stop = when + timedelta(days=10), when + timedelta(days=22)
    factor = rng.uniform(12, 30)
    for e in w.events:
        if (
            e["recipient_agency"] in ("CA-FTB", "CAL FTB")
            and start <= e["occurred_at"] < stop
            and e["label"] == "lawful"
            and e["event_type"] in ("disclosure", "receipt")
        ):
            e.update(label="anomaly", instance=inst, record_count=int(e["record_count"] * factor))
    inst = w.instance(
        "never_seen_recipient",
        "behaviour",
        ["ml.first_seen_combination"],
        acceptable=["ml.transfer_surprise", "ml.recipient_volume"],
    )
    bulk_transfer(
        w,
        flow("NY-DTF"),
        when + timedelta(days=30, hours=15),
        label="anomaly",
        instance=inst,
        recipient=NEW_RECIPIENTS[n % len(NEW_RECIPIENTS)],
    )
    inst = w.instance(
        "off_hours_transfer",
        "behaviour",
        ["ml.transfer_surprise"],
        acceptable=["ml.recipient_volume"],
    )
    sunday = (when + timedelta(days=40)).date()
    while sunday.weekday() != 6:
        sunday += timedelta(days=1)
    bulk_transfer(
        w,
        flow("NY-DTF"),
        w.local(sunday, "America/New_York", 3, 40),
        label="anomaly",
        instance=inst,
    )


def custody_cases(w: World, when: datetime, fbi: dict[str, Any], dea: dict[str, Any]) -> None:
    """The sender's ledger and the recipient's receipt log disagree, or data outlives its term."""
    step = timedelta(days=8)
    custody = [
        "transfer_not_received",
        "receipt_without_disclosure",
        "record_count_mismatch",
        "receipt_late",
    ]

    def case(kind: str, expected: list[str]) -> str:
        return w.instance(kind, "rule", expected, acceptable=[*custody, *ML])

    inst = case("transfer_not_received", ["transfer_not_received"])
    criminal_chain(
        w, when, requester=fbi, subjects=3, label="violation", instance=inst, receipt=False
    )
    inst = case("receipt_without_disclosure", ["receipt_without_disclosure"])
    c = criminal_chain(w, when + step, requester=fbi, subjects=3, label="violation", instance=inst)
    gone = c["disclosure"][0]
    w.events = [e for e in w.events if e is not gone]
    w.items = [i for i in w.items if i["event_id"] != gone["event_id"]]
    inst = case("record_count_mismatch", ["record_count_mismatch"])
    c = criminal_chain(
        w, when + 2 * step, requester=fbi, subjects=3, label="violation", instance=inst
    )
    c["receipt"][0]["record_count"] = 5
    inst = case("receipt_late", ["receipt_late"])
    c = criminal_chain(
        w, when + 3 * step, requester=fbi, subjects=2, label="violation", instance=inst, uses=0
    )
    late = c["disclosure"][0]["occurred_at"] + timedelta(days=5)
    c["receipt"][0].update(occurred_at=late, logged_at=late + timedelta(seconds=30))
    inst = case("use_after_disposal", ["use_after_disposal"])
    c = criminal_chain(
        w,
        when + 4 * step,
        requester=fbi,
        subjects=2,
        label="violation",
        instance=inst,
        uses=0,
        dispose_after_days=40,
    )
    use_at = c["disposal"][0]["occurred_at"] + timedelta(days=12)
    w.add(
        "fed-le-receipts",
        use_at,
        "access",
        disclosing="IRS",
        recipient=fbi["agency"],
        actor=c["receipt"][0]["actor_id"],
        actor_role="special_agent",
        label="violation",
        instance=inst,
        request_id=c["receipt"][0]["request_id"],
        legal_authority=c["receipt"][0]["legal_authority"],
        purpose="nontax_criminal_investigation",
        data_elements=c["receipt"][0]["data_elements"],
        taxpayer_tin=next(
            i["taxpayer_tin"] for i in w.items if i["request_id"] == c["receipt"][0]["request_id"]
        ),
    )
    inst = case("retention_exceeded", ["retention_exceeded"])
    early = (
        datetime(2025, 2, 3, 15, tzinfo=UTC) + (when - datetime(2025, 3, 4, 15, tzinfo=UTC)) / 10
    )
    criminal_chain(
        w,
        early,
        requester=dea,
        subjects=2,
        label="violation",
        instance=inst,
        dispose_after_days=420,
    )
