"""Realistic alerts, events and validation results for report tests and the README screenshot.

Alerts go in through ``detectors.alerts.merge_alerts`` exactly as detectors write them. The
registry below is a stand-in shaped like ``dwatch.policy.Registry`` (authorities, court
orders, agreements, recipients) so the tests do not depend on the live policy files.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, date, datetime, timedelta
from typing import Any

import duckdb
import pyarrow as pa

from detectors.alerts import ALERT_COLUMNS, make_alert_id, merge_alerts

XSS_SCRIPT = "<script>document.title='PWNED'</script>"
XSS_IMG = "<img src=x onerror=\"document.title='PWNED'\">"
CSV_FORMULA = '=HYPERLINK("http://attacker.example/x","click")'
BULK_REQUEST = "REQ-DHS-2025-0614"
ORDER_DMASS = "order-dmass-25-12822-2026-02-05"
ORDER_DDC = "order-ddc-25-00457-2025-11-21"
I2 = "26 USC 6103(i)(2)"


def stand_in_registry() -> dict[str, Any]:
    return {
        "version": "2026.02.26",
        "authorities": [
            {
                "id": I2,
                "title": "Disclosure for non-tax criminal investigations",
                "kind": "disclosure_authority",
            },
            {
                "id": "26 USC 6103(d)",
                "title": "Disclosure to State tax officials",
                "kind": "disclosure_authority",
            },
            {
                "id": "26 USC 6103(p)(4)",
                "title": "Safeguards required of recipients",
                "kind": "safeguards_requirement",
            },
            {
                "id": "26 USC 6103(p)(3)",
                "title": "Accounting of disclosures",
                "kind": "accounting_requirement",
            },
        ],
        "court_orders": [
            {
                "id": ORDER_DDC,
                "case": "Center for Taxpayer Rights v. IRS",
                "court": "D.D.C.",
                "docket": "25-cv-00457",
                "issued": date(2025, 11, 21),
                "status_history": [{"status": "in_force", "on": date(2025, 11, 21)}],
            },
            {
                "id": ORDER_DMASS,
                "case": "CEDC v. Bessent",
                "court": "D. Mass.",
                "docket": "25-cv-12822",
                "issued": date(2026, 2, 5),
                "status_history": [{"status": "in_force", "on": date(2026, 2, 5)}],
            },
        ],
        "agreements": [
            {
                "id": "mou-irs-dhs-2025-04-07",
                "title": "IRS-DHS memorandum of understanding",
                "signed": date(2025, 4, 7),
            },
        ],
        "recipients": [
            {
                "code": "DHS-ICE",
                "name": "Immigration and Customs Enforcement",
                "category": "immigration_enforcement",
            },
            {
                "code": "SSA",
                "name": "Social Security Administration",
                "category": "federal_benefits",
            },
            {
                "code": "CA-FTB",
                "name": "California Franchise Tax Board",
                "category": "state_tax_agency",
            },
            {
                "code": "NY-DTF",
                "name": "New York Dept. of Taxation and Finance",
                "category": "state_tax_agency",
            },
        ],
    }


def _ref(rng: random.Random) -> str:
    return "tp_" + "".join(rng.choice("0123456789abcdef") for _ in range(32))


def _ts(y: int, m: int, d: int, h: int = 12, mi: int = 0) -> datetime:
    return datetime(y, m, d, h, mi, tzinfo=UTC)


EVENT_COLUMNS = (
    "event_id",
    "source_system",
    "sequence_no",
    "occurred_at",
    "event_type",
    "disclosing_agency",
    "recipient_agency",
    "actor_id",
    "actor_role",
    "request_id",
    "legal_authority",
    "authority_id",
    "purpose",
    "data_elements",
    "record_count",
    "taxpayer_ref",
    "channel",
    "encrypted",
    "description",
)


def seed_events(con: duckdb.DuckDBPyConnection, rng: random.Random) -> dict[str, list[str]]:
    """Monthly bulk flows to SSA and state tax agencies, the ICE bulk transfer, and ICE uses."""
    rows: list[tuple[Any, ...]] = []
    seq = {"irs-disclosure-ledger": 0, "ice-fti-receipt-log": 10_000}
    ids: dict[str, list[str]] = {"bulk": [], "uses": [], "ssa": [], "ftb": []}

    def add(
        source: str,
        when: datetime,
        etype: str,
        recipient: str,
        actor: str,
        request: str | None,
        authority: str | None,
        elements: list[str],
        count: int,
        ref: str | None,
        description: str,
        key: str | None = None,
    ) -> None:
        seq[source] += 1
        event_id = f"{source.split('-')[0]}-{seq[source]:06d}"
        rows.append(
            (
                event_id,
                source,
                seq[source],
                when,
                etype,
                "IRS",
                recipient,
                actor,
                "analyst",
                request,
                authority,
                authority,
                None,
                elements,
                count,
                ref,
                "secure_file_transfer",
                True,
                description,
            )
        )
        if key:
            ids[key].append(event_id)

    month = date(2025, 1, 1)
    while month <= date(2026, 2, 1):
        add(
            "irs-disclosure-ledger",
            _ts(month.year, month.month, 3),
            "disclosure",
            "SSA",
            "irs-batch-ssa",
            None,
            "26 USC 6103(l)(1)",
            ["name", "tin", "wages"],
            rng.randint(1_800_000, 2_400_000),
            None,
            "monthly wage file",
            "ssa",
        )
        add(
            "irs-disclosure-ledger",
            _ts(month.year, month.month, 10),
            "disclosure",
            "CA-FTB",
            "irs-batch-st",
            None,
            "26 USC 6103(d)",
            ["name", "tin", "income"],
            rng.randint(600_000, 900_000),
            None,
            "state extract",
            "ftb",
        )
        add(
            "irs-disclosure-ledger",
            _ts(month.year, month.month, 12),
            "disclosure",
            "NY-DTF",
            "irs-batch-st",
            None,
            "26 USC 6103(d)",
            ["name", "tin", "income"],
            rng.randint(400_000, 700_000),
            None,
            "state extract",
        )
        month = (month.replace(day=28) + timedelta(days=4)).replace(day=1)
    for day in (9, 16, 23):
        add(
            "irs-disclosure-ledger",
            _ts(2025, 6, day),
            "disclosure",
            "DHS-ICE",
            "irs-cid-0412",
            f"REQ-DHS-2025-06{day:02d}",
            I2,
            ["name", "address"],
            rng.randint(1, 4),
            _ref(rng),
            "individual (i)(2) request",
        )
    add(
        "irs-disclosure-ledger",
        _ts(2025, 8, 7, 15, 42),
        "disclosure",
        "DHS-ICE",
        "irs-ops-2291",
        BULK_REQUEST,
        I2,
        ["name", "address"],
        47_289,
        None,
        f"bulk address file via kiteworks {XSS_SCRIPT}",
        "bulk",
    )
    for i in range(6):
        add(
            "ice-fti-receipt-log",
            _ts(2026, 2, 9 + i * 2, 9 + i),
            "access",
            "DHS-ICE",
            [f"ice-ero-{3100 + i}", XSS_IMG, CSV_FORMULA][i % 3],
            BULK_REQUEST,
            I2,
            ["address"],
            1,
            _ref(rng),
            f"lookup of received address {XSS_IMG}" if i == 1 else "lookup of received address",
            "uses",
        )
    table = pa.table({c: [r[i] for r in rows] for i, c in enumerate(EVENT_COLUMNS)})
    con.register("_seed_events", table)
    con.execute(
        f"INSERT INTO disclosure_events ({', '.join(EVENT_COLUMNS)}) SELECT * FROM _seed_events"
    )
    con.unregister("_seed_events")
    return ids


def _alert(
    detector_id: str, kind: str, severity: str, key: tuple[object, ...], **fields: Any
) -> dict[str, Any]:
    record = dict.fromkeys(ALERT_COLUMNS)
    record.update(
        alert_id=make_alert_id(detector_id, *key),
        detector_id=detector_id,
        detector_kind=kind,
        detector_version="1",
        severity=severity,
        coverage_incomplete=False,
        registry_version="test-2026.02",
        disclosing_agency="IRS",
    )
    record.update(fields)
    if isinstance(record["evidence"], dict):
        record["evidence"] = json.dumps(record["evidence"])
    return record


_ALERT_SCHEMA = pa.schema(
    [
        ("alert_id", pa.string()),
        ("detector_id", pa.string()),
        ("detector_kind", pa.string()),
        ("detector_version", pa.string()),
        ("severity", pa.string()),
        ("score", pa.float64()),
        ("entity_type", pa.string()),
        ("entity_id", pa.string()),
        ("disclosing_agency", pa.string()),
        ("recipient_agency", pa.string()),
        ("request_id", pa.string()),
        ("actor_id", pa.string()),
        ("source_system", pa.string()),
        ("window_start", pa.timestamp("us", tz="UTC")),
        ("window_end", pa.timestamp("us", tz="UTC")),
        ("event_ids", pa.list_(pa.string())),
        ("event_count", pa.int64()),
        ("subjects_affected", pa.int64()),
        ("records_affected", pa.int64()),
        ("evidence", pa.string()),
        ("citations", pa.list_(pa.string())),
        ("explanation", pa.string()),
        ("coverage_incomplete", pa.bool_()),
        ("registry_version", pa.string()),
    ]
)


def to_arrow(alerts: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(alerts, schema=_ALERT_SCHEMA)


def rule_alerts(ids: dict[str, list[str]], rng: random.Random) -> list[dict[str, Any]]:
    bulk = ids["bulk"][0]
    alerts = [
        _alert(
            "i2_request_lacks_address",
            "rule",
            "critical",
            (BULK_REQUEST,),
            score=1.0,
            entity_type="request",
            entity_id=BULK_REQUEST,
            recipient_agency="DHS-ICE",
            request_id=BULK_REQUEST,
            actor_id="irs-ops-2291",
            source_system="irs-disclosure-ledger",
            window_start=_ts(2025, 8, 7, 15, 42),
            window_end=_ts(2025, 8, 7, 15, 42),
            event_ids=[bulk],
            event_count=1,
            subjects_affected=42_695,
            records_affected=47_289,
            citations=[I2],
            evidence={
                "items_without_usable_address": 42_695,
                "placeholder_examples": ["Failed to Provide", "NA NA", "Unknown Address"],
                "match_method": "tin",
                "data_elements": ["name", "address"],
            },
            explanation="42,695 addresses were disclosed to DHS-ICE under 26 USC 6103(i)(2) although the request did "
            "not set forth the taxpayer's address (placeholders such as 'Failed to Provide'); the statute requires it. "
            "Counted once per taxpayer.",
        ),
        _alert(
            "i2_bulk_request_outlier",
            "rule",
            "high",
            (BULK_REQUEST,),
            score=0.97,
            entity_type="request",
            entity_id=BULK_REQUEST,
            recipient_agency="DHS-ICE",
            request_id=BULK_REQUEST,
            actor_id="irs-ops-2291",
            source_system="irs-disclosure-ledger",
            window_start=_ts(2025, 8, 7, 15, 42),
            window_end=_ts(2025, 8, 7, 15, 42),
            event_ids=[bulk],
            event_count=1,
            subjects_affected=47_289,
            records_affected=47_289,
            citations=[I2, "mou-irs-dhs-2025-04-07"],
            evidence={"record_count": 47_289, "typical_i2_request_size": 3},
            explanation="One (i)(2) request covered 47,289 taxpayers; requests under this authority are case-by-case "
            "and usually name 1-4 people.",
        ),
    ]
    for i, event_id in enumerate(ids["uses"]):
        actor = [f"ice-ero-{3100 + i}", XSS_IMG, CSV_FORMULA][i % 3]
        alerts.append(
            _alert(
                "use_after_injunction",
                "rule",
                "critical",
                (event_id,),
                score=1.0,
                entity_type="event",
                entity_id=event_id,
                recipient_agency="DHS-ICE",
                request_id=BULK_REQUEST,
                actor_id=actor,
                source_system="ice-fti-receipt-log",
                window_start=_ts(2026, 2, 9 + i * 2, 9 + i),
                window_end=_ts(2026, 2, 9 + i * 2, 9 + i),
                event_ids=[event_id],
                event_count=1,
                subjects_affected=1,
                records_affected=1,
                citations=[ORDER_DMASS, I2],
                evidence={
                    "taxpayer_ref": _ref(rng),
                    "actor": actor,
                    "order_in_force_since": "2026-02-05",
                },
                explanation=f"{actor} accessed return information received from the IRS after the order enjoining its use.",
            )
        )
    alerts.append(
        _alert(
            "sequence_gap",
            "rule",
            "high",
            ("ice-fti-receipt-log", 10_007),
            score=0.9,
            entity_type="source",
            entity_id="ice-fti-receipt-log",
            disclosing_agency=None,
            source_system="ice-fti-receipt-log",
            window_start=_ts(2026, 2, 20),
            window_end=_ts(2026, 2, 24),
            event_count=437,
            evidence={"sequence_before": 10_006, "sequence_after": 10_444, "missing": 437},
            explanation="The receipt log skips sequence numbers 10007-10443 (437 records): entries were lost or removed.",
            coverage_incomplete=True,
        )
    )
    return alerts


def ml_alerts() -> list[dict[str, Any]]:
    return [
        _alert(
            "iforest_actor_volume",
            "model",
            "medium",
            ("SSA", "irs-batch-ssa", "2026-01"),
            score=0.81,
            entity_type="actor",
            entity_id="irs-batch-ssa",
            recipient_agency="SSA",
            actor_id="irs-batch-ssa",
            source_system="irs-disclosure-ledger",
            window_start=_ts(2026, 1, 1),
            window_end=_ts(2026, 1, 31),
            event_count=1,
            records_affected=2_390_114,
            evidence={"anomaly_score": 0.81, "baseline_median": 2_050_000},
            explanation="January's wage file to SSA was larger than 97% of the last 12 months (anomaly score 0.81).",
        ),
        _alert(
            "iforest_recipient_mix",
            "model",
            "low",
            ("CA-FTB", "2026-01"),
            score=0.55,
            entity_type="recipient",
            entity_id="CA-FTB",
            recipient_agency="CA-FTB",
            source_system="irs-disclosure-ledger",
            window_start=_ts(2026, 1, 1),
            window_end=_ts(2026, 1, 31),
            event_count=1,
            records_affected=880_000,
            evidence={"anomaly_score": 0.55},
            explanation="The mix of data elements sent to CA-FTB shifted this month (anomaly score 0.55).",
        ),
    ]


def retracted_candidate() -> dict[str, Any]:
    return _alert(
        "unapproved_channel",
        "rule",
        "medium",
        ("NY-DTF", "NY-REQ-0009"),
        score=0.6,
        entity_type="request",
        entity_id="NY-REQ-0009",
        recipient_agency="NY-DTF",
        request_id="NY-REQ-0009",
        source_system="irs-disclosure-ledger",
        window_start=_ts(2026, 1, 12),
        window_end=_ts(2026, 1, 12),
        event_count=1,
        records_affected=512_000,
        citations=["26 USC 6103(p)(4)"],
        evidence={"channel": "email"},
        explanation="An extract went to NY-DTF by e-mail, which is not an approved channel.",
    )


def seed_validation(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        """
        INSERT INTO validation_results (validation_run_id, ingest_run_id, source_system, suite, expectation, scope,
            success, element_count, unexpected_count, window_start, window_end, message)
        VALUES
        ('val-1', 'ing-1', 'irs-disclosure-ledger', 'canonical.disclosure_events',
         'expect_column_values_to_not_be_null(actor_id)', 'row', true, 45, 0, '2025-01-01', '2026-02-28', NULL),
        ('val-1', 'ing-2', 'ice-fti-receipt-log', 'source.ice-fti-receipt-log',
         'expect_sequence_without_gaps(sequence_no)', 'batch', false, 6, 437, '2026-02-20', '2026-02-24',
         'sequence_no skips 437 values <b>bold?</b>')
        """
    )


def seed_store(con: duckdb.DuckDBPyConnection, *, seed: int = 7) -> dict[str, Any]:
    """Fill a migrated store: events, validation results, rule/ML alerts, one retracted alert."""
    rng = random.Random(seed)
    ids = seed_events(con, rng)
    seed_validation(con)
    rules = rule_alerts(ids, rng)
    rule_ids = sorted({a["detector_id"] for a in rules} | {"unapproved_channel"})
    merge_alerts(
        con,
        to_arrow([*rules, retracted_candidate()]),
        detector_ids=rule_ids,
        run_id="detect-1",
        retract_reason="not found again",
    )
    # Second run: the channel finding no longer holds (the log was corrected) and is retracted.
    merge_alerts(
        con,
        to_arrow(rules),
        detector_ids=rule_ids,
        run_id="detect-2",
        retract_reason="log corrected",
    )
    ml = ml_alerts()
    merge_alerts(
        con,
        to_arrow(ml),
        detector_ids=sorted({a["detector_id"] for a in ml}),
        run_id="ml-1",
        retract_reason="score below threshold",
    )
    return {
        "event_ids": ids,
        "bulk_alert_id": rules[0]["alert_id"],
        "use_alert_ids": [a["alert_id"] for a in rules[2:8]],
    }
