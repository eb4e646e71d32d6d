"""Scenarios written the way another agency's system would log them, end to end.

Rule cases (detectors/rules/*.yaml) insert canonical rows directly; these logs go through
`ingest` first, as real exports do: UUID event ids, zoned local times, agency codes,
roles, purposes and data elements in other spellings, placeholder addresses our
generator never writes. Each scenario asserts the rule that must fire on its events, and
lawful traffic asserts that nothing fires on its events at all.
"""

from __future__ import annotations

import csv
import json
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest

from detectors.engine import detect_rules
from dwatch.ingest import ingest_paths
from dwatch.store import connect

KEY = b"unseen-scenarios-key-0123456789"
ICE_REQUEST = "ERO-REQ-2025-0617-A"
# (spelling, count): placeholders written as other systems write them
PLACEHOLDERS = [
    "UNKNOWN",
    "N/A",
    "NONE",
    "No Address",
    "General Delivery",
    "123 Main St",
    "000 Unknown Rd",
    "Address Withheld",
    "",
    "same as above",
]
GOOD = ["4512 Oak Ridge Dr, Houston, TX 77001", "PO Box 4411, Yuma AZ 85364"]
REQUESTED = 150  # above the case-by-case threshold of 100
DISCLOSED = 100  # the first 100 requested (30 of them with placeholder addresses)
PLACEHOLDER_ITEMS = 3 * len(PLACEHOLDERS)


class World:
    """Events grouped by scenario, written one JSON Lines file per source log."""

    def __init__(self) -> None:
        self.logs: dict[str, list[dict[str, Any]]] = {}
        self.scenario: dict[str, str] = {}
        self.items: list[dict[str, Any]] = []

    def event(self, scenario: str, source: str, **fields: Any) -> str:
        event_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{scenario}/{len(self.scenario)}"))
        row = {
            "event_id": event_id,
            "source_system": source,
            "disclosing_agency": "IRS",
            "actor_id": "irs.disclosure.office",
            "data_elements": ["name", "address"],
            "record_count": 1,
            "channel": "sftp",
            "encrypted": True,
            **fields,
        }
        self.logs.setdefault(source, []).append(row)
        self.scenario[event_id] = scenario
        return event_id

    def write(self, folder: Path) -> list[Path]:
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for source, rows in self.logs.items():
            # each log in its own time order, numbered without gaps
            rows.sort(key=lambda r: datetime.fromisoformat(r["occurred_at"]))
            path = folder / f"{source}.jsonl"
            with path.open("w", encoding="utf-8") as f:
                for n, row in enumerate(rows, start=1):
                    f.write(json.dumps({**row, "sequence_no": n}) + "\n")
            paths.append(path)
        items = folder / "request-items.csv"
        with items.open("w", encoding="utf-8", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(self.items[0]))
            writer.writeheader()
            writer.writerows(self.items)
        return [*paths, items]


def _world() -> World:
    w = World()
    # 1. The IRS-ICE case: a bulk (i)(2) request signed below the head of the agency, for a
    #    civil purpose, with placeholder addresses; then the bulk disclosure.
    request = w.event(
        "ice_bulk",
        "irs-gld-register",
        occurred_at="2025-06-17T16:05:00-04:00",
        event_type="request",
        recipient_agency="US ICE",
        actor_id="ice.ad.jsmith",
        actor_role="Assistant Director",
        request_id=ICE_REQUEST,
        legal_authority="26 U.S.C. § 6103(i)(2)",
        purpose="Civil Immigration Enforcement",
        record_count=REQUESTED,
        agreement_id="IRS-ICE MOU",
    )
    disclosure = w.event(
        "ice_bulk",
        "irs-gld-register",
        occurred_at="2025-08-07T10:14:00-04:00",
        event_type="disclosure",
        recipient_agency="US ICE",
        request_id=ICE_REQUEST,
        legal_authority="26 U.S.C. § 6103(i)(2)",
        purpose="Civil Immigration Enforcement",
        record_count=DISCLOSED,
        channel="secure_file_transfer",
        agreement_id="IRS-ICE MOU",
    )
    for k in range(REQUESTED):
        address = PLACEHOLDERS[k % len(PLACEHOLDERS)] if k < PLACEHOLDER_ITEMS else GOOD[k % 2]
        tin = f"{900100000 + k}"
        w.items.append(
            {
                "request_id": ICE_REQUEST,
                "event_id": request,
                "item_no": k + 1,
                "taxpayer_tin": tin,
                "supplied_name": f"PERSON {k}",
                "supplied_address": address,
                "tax_periods": "2021;2022",
                "statute": "8 USC 1253(a)(1)",
                "reason": "failure to depart",
            }
        )
        if k < DISCLOSED:
            w.items.append(
                {
                    "request_id": ICE_REQUEST,
                    "event_id": disclosure,
                    "item_no": k + 1,
                    "taxpayer_tin": tin,
                    "supplied_name": "",
                    "supplied_address": "",
                    "tax_periods": "",
                    "statute": "",
                    "reason": "",
                }
            )
    # 2. A disclosure invoking the MOU with no request on record.
    w.event(
        "mou_without_request",
        "irs-gld-register",
        occurred_at="2025-09-15T13:00:00-04:00",
        event_type="disclosure",
        recipient_agency="ICE-ERO",
        request_id="ERO-2025-000912",
        legal_authority="IRC Sec. 6103(i)(2)",
        purpose="nontax_criminal_investigation",
        taxpayer_tin="900-77-0001",
        agreement_id="MOU-2025-04-07",
    )
    # 3. Lawful individual (i)(2) requests from officials the statute names, as titles.
    for n, (recipient, role) in enumerate(
        [("DOJ-FBI", "FBI Director"), ("USAO-SDNY", "U.S. Attorney")]
    ):
        req = f"DOJ-{n}-4410"
        event = w.event(
            "lawful_doj",
            "irs-gld-register",
            occurred_at=f"2025-10-0{n + 1}T09:00:00-05:00",
            event_type="request",
            recipient_agency=recipient,
            actor_id=f"doj.official.{n}",
            actor_role=role,
            request_id=req,
            legal_authority="26 U.S.C. 6103(i)(2)(A)",
            purpose="Nontax Criminal Investigation",
        )
        w.items.append(
            {
                "request_id": req,
                "event_id": event,
                "item_no": 1,
                "taxpayer_tin": f"900-55-00{n}1",
                "supplied_name": f"DEFENDANT {n}",
                "supplied_address": GOOD[n],
                "tax_periods": "2023",
                "statute": "18 USC 1343",
                "reason": "wire fraud proceeds",
            }
        )
        w.event(
            "lawful_doj",
            "irs-gld-register",
            occurred_at=f"2025-10-1{n}T11:00:00-05:00",
            event_type="disclosure",
            recipient_agency=recipient,
            request_id=req,
            legal_authority="26 U.S.C. 6103(i)(2)(A)",
            purpose="nontax_criminal_investigation",
            taxpayer_tin=f"900-55-00{n}1",
        )
    # 4. The D.D.C. order (Nov 21, 2025, Washington): either side of local midnight.
    for scenario, at, tin in [
        ("ddc_before_local_midnight", "2025-11-20T22:00:00-05:00", "900-44-0001"),
        ("ddc_after", "2025-11-21T15:30:00-05:00", "900-44-0002"),
    ]:
        w.event(
            scenario,
            "irs-gld-register",
            occurred_at=at,
            event_type="disclosure",
            recipient_agency="DHS/ICE",
            request_id=f"HSI-{tin}",
            legal_authority="26 USC 6103(i)(2)",
            purpose="nontax_criminal_investigation",
            taxpayer_tin=tin,
            case_number="4:25-cr-00311",
        )
    # 5. The D. Mass. order (Feb 5, 2026, Boston) on ICE's use of data it already holds.
    for scenario, at in [
        ("dmass_before_local_midnight", "2026-02-04T23:30:00-05:00"),
        ("dmass_after", "2026-02-05T09:15:00-05:00"),
    ]:
        w.event(
            scenario,
            "ice-fti-usage-audit",
            occurred_at=at,
            event_type="access",
            recipient_agency="ICE ERO",
            actor_id="ero.hou.officer12",
            request_id=ICE_REQUEST,
            legal_authority="26 U.S.C. 6103(i)(2)",
            purpose="nontax_criminal_investigation",
            record_count=25,
        )
    # 6. Lawful month-end state tax administration bulk, agency codes in other spellings,
    #    with and without the basic agreement named.
    for n, (code, cite) in enumerate(
        [
            ("NY DTF", "26 U.S.C. 6103(d)"),
            ("TX_CPA", "IRC 6103(d)(1)"),
            ("MI-TREAS", "Sec. 6103(d)"),
            ("Ga-Dor", "IRC §6103(d)"),
        ]
    ):
        w.event(
            "lawful_state_bulk",
            "irs-state-exchange",
            occurred_at=f"2025-01-31T23:4{n}:00-08:00",
            event_type="disclosure",
            recipient_agency=code,
            legal_authority=cite,
            purpose="State Tax Administration",
            data_elements=["Name", "SSN", "Mailing Address", "AGI", "W-2 Wages"],
            record_count=250_000,
            agreement_id=f"BASIC-{n}" if n % 2 else None,
        )
    # 7. Lawful benefit, child-support and statistical flows under full agency names.
    for recipient, cite, purpose, elements in [
        (
            "Social Security Administration",
            "26 U.S.C. 6103(l)(1)(A)",
            "social security administration",
            ["name", "SSN", "wages"],
        ),
        (
            "HHS/OCSE",
            "IRC 6103(l)(6)",
            "Child Support Enforcement",
            ["name", "Mailing Address", "SSN"],
        ),
        ("US Census Bureau", "26 U.S.C. 6103(j)(1)", "statistical", ["name", "address", "income"]),
    ]:
        w.event(
            "lawful_benefits",
            "irs-agency-exchange",
            occurred_at="2025-03-15T02:00:00+00:00",
            event_type="disclosure",
            recipient_agency=recipient,
            legal_authority=cite,
            purpose=purpose,
            data_elements=elements,
            record_count=90_000,
            channel="api",
        )
    # 8. An ex parte order recorded as "N/A" is no order.
    w.event(
        "i1_without_order",
        "irs-agency-exchange",
        occurred_at="2025-05-01T10:00:00-04:00",
        event_type="disclosure",
        recipient_agency="DOJ-FBI",
        request_id="EXP-1",
        legal_authority="26 USC 6103(i)(1)",
        purpose="nontax_criminal_proceeding",
        case_number="N/A",
        taxpayer_tin="900-12-0010",
    )
    return w


@pytest.fixture(scope="module")
def judged(tmp_path_factory: pytest.TempPathFactory) -> tuple[World, list[dict[str, Any]]]:
    folder = tmp_path_factory.mktemp("unseen")
    world = _world()
    paths = world.write(folder / "logs")
    con = connect(folder / "store.duckdb")
    try:
        results = ingest_paths(con, paths, key=KEY)
        assert all(r.rows_quarantined == 0 for r in results), [
            r.quarantined_by_reason for r in results
        ]
        detect_rules(con, run_id="unseen")
        alerts = _alerts(con)
    finally:
        con.close()
    return world, alerts


def _alerts(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    cur = con.execute(
        "SELECT detector_id, entity_id, event_ids, subjects_affected, evidence FROM alerts"
        " WHERE status = 'open' AND detector_kind = 'rule'"
    )
    names = [d[0] for d in cur.description]
    rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    for row in rows:
        row["evidence"] = json.loads(row["evidence"] or "{}")
    return rows


def _fired(
    judged: tuple[World, list[dict[str, Any]]], scenario: str
) -> dict[str, list[dict[str, Any]]]:
    """Alerts touching the scenario's events, by rule."""
    world, alerts = judged
    mine = {e for e, s in world.scenario.items() if s == scenario}
    assert mine, scenario
    fired: dict[str, list[dict[str, Any]]] = {}
    for alert in alerts:
        if mine & set(alert["event_ids"]):
            fired.setdefault(alert["detector_id"], []).append(alert)
    return fired


def test_ice_bulk_request_and_disclosure_are_caught_per_taxpayer(judged: Any) -> None:
    fired = _fired(judged, "ice_bulk")
    assert {
        "bulk_case_by_case_request",
        "request_missing_required_elements",
        "disclosure_without_valid_address",
        "requester_role_not_permitted",
        "purpose_not_permitted",
    } <= set(fired)
    [missing] = fired["request_missing_required_elements"]
    assert missing["evidence"]["missing_address"] == PLACEHOLDER_ITEMS
    [no_address] = fired["disclosure_without_valid_address"]
    assert no_address["subjects_affected"] == PLACEHOLDER_ITEMS  # all 30 were disclosed
    assert no_address["evidence"]["subjects_disclosed"] == DISCLOSED
    [bulk] = fired["bulk_case_by_case_request"]
    assert bulk["evidence"]["subjects_named"] == REQUESTED
    # a taxpayer named in the request counts only if their data was disclosed
    assert bulk["subjects_affected"] == DISCLOSED
    assert missing["subjects_affected"] == PLACEHOLDER_ITEMS  # the deficient items disclosed
    # "US ICE" is the immigration enforcement agency, so the (i)(2) recipient is permitted
    assert "recipient_not_permitted" not in fired


def test_an_mou_is_not_the_request_of_a_case(judged: Any) -> None:
    fired = _fired(judged, "mou_without_request")
    assert [a["entity_id"] for a in fired["disclosure_without_request"]] == ["DHS-ICE"]


def test_courts_orders_bind_from_their_local_day(judged: Any) -> None:
    assert "disclosure_under_court_order" not in _fired(judged, "ddc_before_local_midnight")
    assert "disclosure_under_court_order" in _fired(judged, "ddc_after")
    assert "use_after_court_order" not in _fired(judged, "dmass_before_local_midnight")
    [use] = _fired(judged, "dmass_after")["use_after_court_order"]
    assert use["evidence"]["restrained_code"] == "DHS-ICE"


def test_an_order_recorded_as_na_is_no_order(judged: Any) -> None:
    assert "court_order_missing" in _fired(judged, "i1_without_order")


@pytest.mark.parametrize("scenario", ["lawful_doj", "lawful_state_bulk", "lawful_benefits"])
def test_lawful_traffic_in_other_spellings_stays_quiet(judged: Any, scenario: str) -> None:
    fired = _fired(judged, scenario)
    assert not fired, {rule: [a["entity_id"] for a in alerts] for rule, alerts in fired.items()}
