"""Helpers for pipeline tests: small canonical logs, compacted generated logs, settings
pointing into tmp, and the fingerprint of a store's final state."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import duckdb

from dwatch.pipeline import PipelineConfig

EVENT_HEADER = [
    "event_id", "source_system", "sequence_no", "occurred_at", "event_type", "disclosing_agency",
    "recipient_agency", "actor_id", "actor_role", "request_id", "legal_authority", "purpose",
    "data_elements", "record_count", "taxpayer_tin", "channel", "encrypted", "agreement_id",
    "case_number", "description", "outcome",
]  # fmt: skip


def write_events(path: Path, rows: Iterable[dict[str, object]]) -> Path:
    """A canonical events CSV; unspecified fields get plausible state-tax defaults."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, EVENT_HEADER)
        writer.writeheader()
        for row in rows:
            full: dict[str, object] = {
                "event_type": "disclosure",
                "disclosing_agency": "IRS",
                "recipient_agency": "CA-FTB",
                "actor_id": "irs.analyst.01",
                "actor_role": "disclosure_specialist",
                "legal_authority": "26 USC 6103(d)",
                "purpose": "state_tax_administration",
                "data_elements": json.dumps(["name", "address", "income"]),
                "record_count": 1,
                "channel": "secure_file_transfer",
                "encrypted": "true",
                "outcome": "success",
            }
            full.update(row)
            writer.writerow(full)
    return path


def ledger_rows(
    source: str, day_hours: Iterable[tuple[str, int]], start_seq: int = 1
) -> list[dict[str, object]]:
    """One event per (YYYY-MM-DD, hour) in ``source``, numbered from ``start_seq``."""
    rows = []
    for i, (day, hour) in enumerate(day_hours):
        seq = start_seq + i
        rows.append(
            {
                "event_id": f"{source.upper()}-{seq:06d}",
                "source_system": source,
                "sequence_no": seq,
                "occurred_at": f"{day}T{hour:02d}:15:00Z",
                "request_id": f"R-{source}-{seq}",
            }
        )
    return rows


def compact_generated(src: Path, out: Path) -> list[Path]:
    """The generator writes one file per log; join recipients' logs into one file so a test
    run validates three batches instead of sixty (the rows are unchanged)."""
    out.mkdir(parents=True, exist_ok=True)

    def cat(files: list[Path], target: Path) -> Path:
        writer = None
        with target.open("w", newline="", encoding="utf-8") as fh:
            for f in files:
                with f.open(newline="", encoding="utf-8") as g:
                    reader = csv.reader(g)
                    head = next(reader)
                    if writer is None:
                        writer = csv.writer(fh)
                        writer.writerow(head)
                    writer.writerows(reader)
        return target

    events = sorted(src.glob("events-*.csv"))
    return [
        cat([f for f in events if f.name.startswith("events-irs-")], out / "events-ledger.csv"),
        cat(
            [f for f in events if not f.name.startswith("events-irs-")],
            out / "events-recipients.csv",
        ),
        cat([src / "request_items.csv"], out / "request_items.csv"),
    ]


def make_config(tmp_path: Path, **changes: object) -> PipelineConfig:
    settings: dict[str, object] = {
        "reports_dir": tmp_path / "reports",
        "snapshot_dir": tmp_path / "snapshots",
        "keep_snapshots": 2,
        "notify": False,
        "source": "(tests)",
    }
    settings.update(changes)
    return PipelineConfig(**settings)  # type: ignore[arg-type]


def fingerprint(db: Path) -> dict[str, Any]:
    """The final state a run leaves, without run ids and wall-clock times."""
    con = duckdb.connect(str(db), read_only=True)
    try:

        def rows(sql: str) -> list[tuple[Any, ...]]:
            return sorted(con.execute(sql).fetchall(), key=repr)

        return {
            "alerts": rows(
                "SELECT alert_id, detector_id, status, severity, entity_id, event_count,"
                " subjects_affected, records_affected, round(score, 6), coverage_incomplete,"
                " list_sort(event_ids), list_sort(citations), retracted_reason FROM alerts"
            ),
            "cases": rows(
                "SELECT case_id, status, severity, alert_count, open_alert_count, subjects_affected FROM cases"
            ),
            "counts": con.execute(
                "SELECT (SELECT count(*) FROM disclosure_events), (SELECT count(*) FROM request_items),"
                " (SELECT count(*) FROM quarantine), (SELECT count(*) FROM ingest_runs WHERE status = 'loaded')"
            ).fetchone(),
            "coverage_gaps": rows(
                "SELECT DISTINCT source_system, window_start, window_end, expectation FROM coverage_gaps"
            ),
            "windows": rows(
                "SELECT source_system, window_start, reason, closed_by_run_id IS NOT NULL FROM run_windows"
            ),
            "watermarks": rows(
                "SELECT source_system, events_through, events_judged FROM source_watermarks"
            ),
            # What each ML model was fitted on and the threshold it alerts at (versions carry
            # a wall-clock time, so they are left out).
            "models": rows(
                "SELECT detector_id, training_data_sha256, round(threshold, 6) FROM models"
            ),
        }
    finally:
        con.close()
