"""A small store with every way a taxpayer's data is recorded, loaded by the real ingest."""

from __future__ import annotations

import csv
from pathlib import Path

import duckdb

from dwatch.ingest import ingest_paths

TIN_A = "666-01-0001"  # named alone, and in the bulk request, and disclosed in bulk
TIN_B = "666-01-0002"  # named in the bulk request only, never disclosed
TIN_C = "666-01-0003"  # one access by a state agency
TIN_NONE = "666-01-0009"  # nothing recorded
BULK = "REQ-BULK-1"

EVENT_FIELDS = (
    "event_id",
    "source_system",
    "sequence_no",
    "occurred_at",
    "event_type",
    "disclosing_agency",
    "recipient_agency",
    "actor_id",
    "request_id",
    "legal_authority",
    "purpose",
    "data_elements",
    "record_count",
    "taxpayer_tin",
    "description",
)
LEDGER = "irs-disclosure-ledger"
RECEIPTS = "ice-fti-receipt-log"


def _event(n: int, source: str, when: str, kind: str, **values: object) -> dict[str, object]:
    row: dict[str, object] = {
        "event_id": f"EV-{n}",
        "source_system": source,
        "sequence_no": n,
        "occurred_at": when,
        "event_type": kind,
        "disclosing_agency": "IRS",
        "recipient_agency": "DHS-ICE",
        "actor_id": "officer.1",
        "request_id": "",
        "legal_authority": "26 USC 6103(i)(2)",
        "purpose": "nontax_criminal_investigation",
        "data_elements": '["name","address"]',
        "record_count": 1,
        "taxpayer_tin": "",
        "description": "",
    }
    row.update(values)
    return row


LEDGER_EVENTS = [
    _event(
        1,
        LEDGER,
        "2025-03-01T10:00:00Z",
        "request",
        recipient_agency="DOJ-FBI",
        request_id="REQ-FBI-1",
        taxpayer_tin=TIN_A,
    ),
    _event(
        2,
        LEDGER,
        "2025-03-20T10:00:00Z",
        "disclosure",
        recipient_agency="DOJ-FBI",
        request_id="REQ-FBI-1",
        taxpayer_tin=TIN_A,
        legal_authority='=HYPERLINK("x")<script>alert(1)</script>',
    ),
    _event(3, LEDGER, "2025-06-01T10:00:00Z", "request", request_id=BULK, record_count=2),
    _event(4, LEDGER, "2025-08-07T10:00:00Z", "disclosure", request_id=BULK, record_count=1),
    _event(
        5,
        LEDGER,
        "2025-09-01T10:00:00Z",
        "disclosure",
        recipient_agency="CA-FTB",
        legal_authority="26 USC 6103(d)",
        purpose="state_tax_administration",
        record_count=5000,
        request_id="CA-2025-09",
    ),
    _event(
        6,
        LEDGER,
        "2025-09-02T10:00:00Z",
        "access",
        recipient_agency="CA-FTB",
        legal_authority="not a citation",
        purpose="state_tax_administration",
        taxpayer_tin=TIN_C,
    ),
]
RECEIPT_EVENTS = [
    _event(1, RECEIPTS, "2025-08-07T12:00:00Z", "receipt", request_id=BULK),
    _event(2, RECEIPTS, "2025-12-01T12:00:00Z", "disposal", request_id=BULK),
]
ITEMS = [
    {
        "request_id": BULK,
        "event_id": "EV-3",
        "item_no": 1,
        "taxpayer_tin": TIN_A,
        "source_system": LEDGER,
    },
    {
        "request_id": BULK,
        "event_id": "EV-3",
        "item_no": 2,
        "taxpayer_tin": TIN_B,
        "source_system": LEDGER,
    },
    {
        "request_id": BULK,
        "event_id": "EV-4",
        "item_no": 1,
        "taxpayer_tin": TIN_A,
        "source_system": LEDGER,
    },
]


def write_csv(path: Path, rows: list[dict[str, object]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def load(con: duckdb.DuckDBPyConnection, folder: Path, *parts: str) -> None:
    """Ingest the named parts ('ledger', 'receipts', 'items') as separate batches."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "ledger": lambda: write_csv(folder / "events-ledger.csv", LEDGER_EVENTS),
        "receipts": lambda: write_csv(folder / "events-receipts.csv", RECEIPT_EVENTS),
        "items": lambda: write_csv(folder / "request_items.csv", ITEMS),
    }
    for part in parts:
        results = ingest_paths(con, [files[part]()])
        assert [r.status for r in results] == ["loaded"], [r.message for r in results]
