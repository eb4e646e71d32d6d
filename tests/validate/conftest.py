"""Fixtures for the validation gate: batches written straight into the store, or via ingest."""

from __future__ import annotations

import csv
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from dwatch.schema import load_schema
from dwatch.validate import ValidationConfig, load_config

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
T0 = datetime(2026, 2, 1, 0, 0, tzinfo=UTC)


def event_row(i: int, **overrides: Any) -> dict[str, Any]:
    """A valid canonical event; ``i`` sets id, sequence and an hourly timestamp."""
    row: dict[str, Any] = {
        "event_id": f"ev-{i}",
        "source_system": "state-exchange-log",
        "sequence_no": i,
        "occurred_at": T0 + timedelta(hours=i),
        "event_type": "disclosure",
        "disclosing_agency": "IRS",
        "recipient_agency": "CA-FTB",
        "actor_id": "u-17",
        "actor_role": "analyst",
        "request_id": f"req-{i}",
        "legal_authority": "26 U.S.C. 6103(d)(1)",
        "authority_id": None,
        "purpose": "state_tax_administration",
        "data_elements": ["name", "address"],
        "record_count": 10,
        "taxpayer_ref": None,
        "channel": "sftp",
        "encrypted": True,
        "agreement_id": None,
        "case_number": None,
        "description": "monthly exchange",
        "outcome": "success",
    }
    row.update(overrides)
    return row


def item_row(i: int, **overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "request_id": "req-1",
        "event_id": "ev-1",
        "item_no": i,
        "taxpayer_ref": None,
        "supplied_name": "A Person",
        "supplied_address": "1 Main St",
        "tax_periods": "2024",
        "statute": "8 USC 1253",
        "reason": "named in the request",
        "match_method": "tin",
        "source_system": "state-exchange-log",
    }
    row.update(overrides)
    return row


InsertBatch = Callable[..., str]


@pytest.fixture
def insert_batch(con: duckdb.DuckDBPyConnection) -> InsertBatch:
    """Insert rows as one loaded batch (an ingest_runs row + rows with its ingest_run_id).

    Writes straight to the tables, as a store written by any other path would look, so
    rows that ingest would already have refused can reach validation.
    """
    counter = iter(range(1, 10_000))

    def insert(
        rows: list[dict[str, Any]], *, kind: str = "events", started: datetime | None = None
    ) -> str:
        n = next(counter)
        run_id = f"ing_test_{n:04d}_{uuid.uuid4().hex[:6]}"
        table = load_schema().events if kind == "events" else load_schema().items
        con.execute(
            "INSERT INTO ingest_runs (run_id, source_file, kind, rows_read, rows_loaded,"
            " rows_quarantined, started_at, finished_at, status)"
            " VALUES (?, ?, ?, ?, ?, 0, ?, ?, 'loaded')",
            [
                run_id,
                f"/logs/batch-{n}.csv",
                kind,
                len(rows),
                len(rows),
                (started or T0) + timedelta(seconds=n),
                (started or T0) + timedelta(seconds=n),
            ],
        )
        names = table.names
        placeholders = ", ".join("?" for _ in names)
        for position, row in enumerate(rows, start=1):
            con.execute(
                f"INSERT INTO {table.name} ({', '.join(names)}, ingest_run_id, source_row)"
                f" VALUES ({placeholders}, ?, ?)",
                [row.get(name) for name in names] + [run_id, position],
            )
        return run_id

    return insert


@pytest.fixture
def vconfig(tmp_path: Path) -> ValidationConfig:
    """Default settings with the clock pinned and an empty per-source suites folder."""
    sources = tmp_path / "sources"
    sources.mkdir()
    return load_config().with_overrides(now=NOW, sources_dir=sources, docs_dir=tmp_path / "docs")


def write_events_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Canonical CSV as ingest reads it (data_elements as a JSON array string)."""
    columns = [f.name for f in load_schema().events.input_fields]
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            out = dict(row)
            out["data_elements"] = json.dumps(row["data_elements"])
            out["occurred_at"] = (
                row["occurred_at"].isoformat()
                if isinstance(row["occurred_at"], datetime)
                else row["occurred_at"]
            )
            out["encrypted"] = "true" if row.get("encrypted") else "false"
            writer.writerow({k: "" if v is None else v for k, v in out.items()})
    return path
