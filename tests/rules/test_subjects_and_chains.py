"""Subject-level findings and whole chains (issue 13 items 2 and 3), end to end.

Logs go in as rule cases do (detectors.engine.load_case), the whole catalog runs and merges
into ``alerts``, cases are built and the report is gathered: the per-taxpayer counts must
be the true number of taxpayers, and each finding must name its whole chain by
(source_system, event_id).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pytest

from detectors.engine import RuleCase, evaluate_rules, load_case, load_rules, run_rules
from dwatch.policy import load_registry
from dwatch.report.cases import build_cases
from dwatch.report.citations import load_directory
from dwatch.report.data import gather
from dwatch.store import connect, transaction

ORDER = "ddc-25-cv-00457-pi"  # a registry order restraining disclosures to DHS-ICE
AUTHORITY = "26 U.S.C. 6103(i)(2)"  # requires each request to set forth an address
GOOD = "1200 Main St, Houston, TX 77002"


def _item(
    event_id: str, source: str, item_no: int, ref: str, address: str | None
) -> dict[str, Any]:
    item: dict[str, Any] = {
        "request_id": "R1",
        "event_id": event_id,
        "source_system": source,
        "item_no": item_no,
        "taxpayer_ref": ref,
    }
    if address is not None:
        item.update(
            supplied_name="A B",
            supplied_address=address,
            tax_periods="2024",
            statute="18 USC 1956",
            reason="r",
        )
    return item


def _store(tmp_path: Path, case: RuleCase) -> duckdb.DuckDBPyConnection:
    con = connect(tmp_path / "store.duckdb")
    load_case(con, case)
    with transaction(con):
        run_rules(con, load_registry(), run_id="t1")
    return con


def _alerts(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, Any]]:
    cursor = con.execute("SELECT * FROM alerts WHERE status = 'open'")
    names = [d[0] for d in cursor.description]
    rows = [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]
    return {r["detector_id"]: r for r in rows}


def _listed(con: duckdb.DuckDBPyConnection, alert_id: str) -> list[str]:
    rows = con.execute(
        "SELECT DISTINCT taxpayer_ref FROM alert_subjects WHERE alert_id = ? ORDER BY 1",
        [alert_id],
    ).fetchall()
    return [r[0] for r in rows]


@pytest.fixture
def overlapping(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    """A request naming five taxpayers, two (tp_1, tp_2) with a placeholder address and one
    (tp_5) never disclosed; the disclosure of tp_1..tp_4 comes after an injunction binds.
    Two findings overlap on tp_1 and tp_2: the injunction violation (tp_1..tp_4) and the
    missing address (tp_1, tp_2). Four taxpayers' rights were violated, not six."""
    common = {"recipient_agency": "DHS-ICE", "request_id": "R1", "legal_authority": AUTHORITY}
    case = RuleCase(
        name="overlap",
        alerts=0,
        events=[
            {
                "event_id": "Q1",
                "event_type": "request",
                "occurred_at": "2025-11-20T15:00:00Z",
                "purpose": "nontax_criminal_investigation",
                "record_count": 5,
                **common,
            },
            {
                "event_id": "D1",
                "event_type": "disclosure",
                "occurred_at": "2025-12-01T15:00:00Z",
                "purpose": "nontax_criminal_investigation",
                "record_count": 4,
                **common,
            },
        ],
        request_items=[
            _item("Q1", "case-log", 1, "tp_1", "Failed to Provide"),
            _item("Q1", "case-log", 2, "tp_2", "NA NA"),
            _item("Q1", "case-log", 3, "tp_3", GOOD),
            _item("Q1", "case-log", 4, "tp_4", GOOD),
            _item("Q1", "case-log", 5, "tp_5", "Unknown"),
            *(_item("D1", "case-log", n, f"tp_{n}", None) for n in range(1, 5)),
        ],
    )
    con = _store(tmp_path, case)
    yield con
    con.close()


def test_overlapping_findings_count_each_taxpayer_once(
    overlapping: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    con = overlapping
    alerts = _alerts(con)
    order = alerts["disclosure_under_court_order"]
    address = alerts["disclosure_without_valid_address"]
    assert _listed(con, order["alert_id"]) == ["tp_1", "tp_2", "tp_3", "tp_4"]
    assert _listed(con, address["alert_id"]) == ["tp_1", "tp_2"]
    reasons = con.execute(
        "SELECT reason FROM alert_subjects WHERE alert_id = ? ORDER BY taxpayer_ref",
        [address["alert_id"]],
    ).fetchall()
    # each taxpayer says why their address was not one
    assert all(r[0].startswith("disclosed although the request did not set forth") for r in reasons)
    assert all("placeholder" in r[0] for r in reasons), reasons
    # tp_5 lacked an address too, but nothing about tp_5 was disclosed
    deficient = alerts["request_missing_required_elements"]
    assert _listed(con, deficient["alert_id"]) == ["tp_1", "tp_2"]
    assert deficient["subjects_affected"] == 2

    build_cases(con)
    counts = dict(
        con.execute(
            "SELECT scope || ':' || scope_id, subjects FROM subject_counts"
            " WHERE scope IN ('request', 'court_order', 'recipient')"
        ).fetchall()
    )
    assert counts == {"request:R1": 4, f"court_order:{ORDER}": 4, "recipient:DHS-ICE": 4}
    every_case = con.execute("SELECT count(DISTINCT taxpayer_ref) FROM case_subjects").fetchone()
    assert every_case == (4,)
    # case_subjects names only the taxpayers whose rights a case's findings say were violated
    address_case = con.execute(
        "SELECT list(taxpayer_ref ORDER BY taxpayer_ref) FROM case_subjects cs"
        " JOIN case_alerts ca USING (case_id) WHERE ca.alert_id = ?",
        [address["alert_id"]],
    ).fetchone()
    assert address_case is not None and "tp_5" not in address_case[0]

    report = gather(con, load_directory(con), out_dir=tmp_path / "report")
    assert report.summary["subjects_in_open_cases"] == 4
    sections = {s.info.citation_id: s for s in [*report.orders, *report.authorities]}
    assert sections[ORDER].subjects == 4
    assert sections["26 USC 6103(i)(2)"].subjects == 4


def test_a_rerun_replaces_subjects_and_every_case_counts_distinct(
    overlapping: duckdb.DuckDBPyConnection,
) -> None:
    con = overlapping
    with transaction(con):
        run_rules(con, load_registry(), run_id="t2")
    build_cases(con)
    rows = con.execute(
        "SELECT count(*), count(DISTINCT (alert_id, taxpayer_ref, event_id, item_no)) FROM alert_subjects"
    ).fetchone()
    assert rows is not None and rows[0] == rows[1]
    assert con.execute(
        "SELECT subjects FROM subject_counts WHERE scope = 'request' AND scope_id = 'R1'"
    ).fetchone() == (4,)
    for case_id, reported in con.execute(
        "SELECT case_id, subjects_affected FROM open_cases"
    ).fetchall():
        listed = con.execute(
            "SELECT count(*) FROM case_subjects WHERE case_id = ?", [case_id]
        ).fetchone()
        assert listed is not None and (reported or 0) == listed[0], case_id


def test_a_request_finding_names_its_disclosure_and_receipt_from_other_logs(
    tmp_path: Path,
) -> None:
    """Three logs number their entries alike: the request, the disclosure it enabled and the
    recipient's receipt are each entry "7" of their own log; a fourth log's entry "7"
    belongs to another request and is no part of the chain."""
    common = {
        "recipient_agency": "DHS-ICE",
        "request_id": "R1",
        "legal_authority": AUTHORITY,
        "purpose": "nontax_criminal_investigation",
    }
    case = RuleCase(
        name="chain",
        alerts=0,
        events=[
            {
                "event_id": "7",
                "source_system": "irs-requests",
                "event_type": "request",
                "occurred_at": "2025-06-20T15:00:00Z",
                **common,
            },
            {
                "event_id": "7",
                "source_system": "irs-disclosures",
                "event_type": "disclosure",
                "occurred_at": "2025-07-01T15:00:00Z",
                **common,
            },
            {
                "event_id": "7",
                "source_system": "ice-receipts",
                "event_type": "receipt",
                "occurred_at": "2025-07-01T18:00:00Z",
                **common,
            },
            {
                "event_id": "7",
                "source_system": "fbi-receipts",
                "event_type": "receipt",
                "occurred_at": "2025-07-01T18:00:00Z",
                "recipient_agency": "DOJ-FBI",
                "request_id": "R9",
                "legal_authority": AUTHORITY,
            },
        ],
        request_items=[
            _item("7", "irs-requests", 1, "tp_1", "Failed to Provide"),
            _item("7", "irs-requests", 2, "tp_2", GOOD),
            _item("7", "irs-disclosures", 1, "tp_1", None),
        ],
    )
    con = _store(tmp_path, case)
    try:
        alerts = _alerts(con)
        chains = {
            detector: sorted(
                con.execute(
                    "SELECT source_system, event_id, event_type, role FROM alert_events"
                    " WHERE alert_id = ?",
                    [alerts[detector]["alert_id"]],
                ).fetchall()
            )
            for detector in (
                "request_missing_required_elements",
                "disclosure_without_valid_address",
            )
        }
        assert chains["request_missing_required_elements"] == [
            ("ice-receipts", "7", "receipt", "chain"),
            ("irs-disclosures", "7", "disclosure", "chain"),
            ("irs-requests", "7", "request", "finding"),
        ]
        assert chains["disclosure_without_valid_address"] == [
            ("ice-receipts", "7", "receipt", "chain"),
            ("irs-disclosures", "7", "disclosure", "finding"),
            ("irs-requests", "7", "request", "chain"),
        ]
        for detector in chains:
            alert = alerts[detector]
            evidence = json.loads(alert["evidence"])
            assert evidence["evidence_sources"] == [
                "ice-receipts",
                "irs-disclosures",
                "irs-requests",
            ]
            assert evidence["chain"] == {"requests": 1, "disclosures": 1, "receipts": 1}
            assert (
                "spans 3 logs: ice-receipts, irs-disclosures, irs-requests" in alert["explanation"]
            )
        # the subject came from the request item in the request log, and was disclosed
        row = con.execute(
            "SELECT taxpayer_ref, source_system, event_id, item_no, reason FROM alert_subjects"
            " WHERE alert_id = ?",
            [alerts["request_missing_required_elements"]["alert_id"]],
        ).fetchall()
        assert [r[:4] for r in row] == [("tp_1", "irs-requests", "7", 1)]
        assert "did not set forth" in row[0][4]
    finally:
        con.close()


def test_a_request_alone_discloses_no_one(tmp_path: Path) -> None:
    """A finding that judges requests and disclosures alike (forbidden data elements) lists
    the taxpayers whose data went out, not everyone the request named."""
    common = {
        "recipient_agency": "DOJ-FBI",
        "request_id": "R1",
        "legal_authority": "IRC 6103(i)(2)",
        "data_elements": ["name", "income", "full_return"],
    }
    case = RuleCase(
        name="request only",
        alerts=1,
        events=[
            {
                "event_id": "Q1",
                "event_type": "request",
                "occurred_at": "2025-06-20T15:00:00Z",
                **common,
            },
            {
                "event_id": "D1",
                "event_type": "disclosure",
                "occurred_at": "2025-07-01T15:00:00Z",
                **common,
            },
        ],
        request_items=[
            _item("Q1", "case-log", 1, "tp_1", GOOD),
            _item("Q1", "case-log", 2, "tp_2", GOOD),
            _item("D1", "case-log", 1, "tp_1", None),
        ],
    )
    [rule] = [r for r in load_rules() if r.id == "data_elements_not_permitted"]
    con = connect(tmp_path / "store.duckdb")
    try:
        load_case(con, case)
        evaluate_rules(con, load_registry(), [rule])
        listed = con.execute(
            "SELECT list(DISTINCT taxpayer_ref ORDER BY taxpayer_ref) FROM dw_candidates_subjects"
        ).fetchone()
        counted = con.execute("SELECT subjects_affected FROM dw_candidates").fetchall()
    finally:
        con.close()
    assert listed == (["tp_1"],)
    assert counted == [(1,)]


def test_chains_are_read_from_the_linking_events_alone_and_again_each_judgement(
    tmp_path: Path,
) -> None:
    """Each judgement reads the events that can link a chain once (requests, disclosures
    and receipts with a request id; not the accesses that make most of a store), and a
    later judgement on the same connection reads them again: a receipt logged after the
    first judgement joins the request's chain."""
    common = {"recipient_agency": "DHS-ICE", "request_id": "R1", "legal_authority": AUTHORITY}
    request = {"event_id": "1", "source_system": "irs-requests", "event_type": "request"}
    case = RuleCase(
        name="chain rows",
        alerts=0,
        events=[
            {**request, "occurred_at": "2025-06-20T15:00:00Z", **common},
            {
                "event_id": "2",
                "source_system": "ice-access",
                "event_type": "access",
                "occurred_at": "2025-06-21T15:00:00Z",
                **common,
            },
        ],
        request_items=[_item("1", "irs-requests", 1, "tp_1", "Failed to Provide")],
    )
    con = _store(tmp_path, case)
    try:
        linking = con.execute("SELECT source_system, event_id FROM dw_chain_rows").fetchall()
        assert linking == [("irs-requests", "1")]
        alert_id = _alerts(con)["request_missing_required_elements"]["alert_id"]
        load_case(
            con,
            RuleCase(
                name="late receipt",
                alerts=0,
                events=[
                    {
                        "event_id": "9",
                        "source_system": "ice-receipts",
                        "event_type": "receipt",
                        "occurred_at": "2025-07-01T18:00:00Z",
                        **common,
                    }
                ],
            ),
        )
        with transaction(con):
            run_rules(con, load_registry(), run_id="t2")
        chain = con.execute(
            "SELECT source_system, event_id, role FROM alert_events WHERE alert_id = ?"
            " ORDER BY ALL",
            [alert_id],
        ).fetchall()
        assert ("ice-receipts", "9", "chain") in chain, chain
    finally:
        con.close()
