"""What a validation run found: one outcome per expectation and batch, how an outcome is
stored (one validation_results row), and the run's summary.

Shared by every stage of ``dwatch.validate`` (selecting, checking, verdicts, recording);
imports none of them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa

MAX_FAILURES_SHOWN = 20


@dataclass
class Outcome:
    """One validation_results row."""

    suite: str
    expectation: str
    scope: str
    success: bool
    ingest_run_id: str | None
    source_system: str | None = None
    element_count: int | None = None
    unexpected_count: int | None = None
    window_start: datetime | None = None
    window_end: datetime | None = None
    observed: str | None = None
    message: str | None = None


@dataclass
class BatchReport:
    ingest_run_id: str | None
    kind: str
    source_file: str
    sources: list[str]
    rows_checked: int = 0
    rows_quarantined: int = 0
    outcomes: list[Outcome] = field(default_factory=list)
    error: str | None = None
    # Why an already validated batch was validated again (None: a new batch).
    revisit_reason: str | None = None

    @property
    def revalidated(self) -> bool:
        return self.revisit_reason is not None

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.success]

    @property
    def coverage_gaps(self) -> list[Outcome]:
        return [o for o in self.failed if o.scope == "batch"]


@dataclass
class ValidationReport:
    validation_run_id: str
    batches: list[BatchReport] = field(default_factory=list)
    store_checks: BatchReport | None = None
    docs_index: Path | None = None
    docs_error: str | None = None
    docs_note: str | None = None  # e.g. the pages are being built by another process
    alerts_flagged: int = 0
    open_coverage_gaps: int = 0  # rows of the coverage_gaps view after this run
    seconds_by_stage: dict[str, float] = field(default_factory=dict)
    # Why this run read history instead of the per-source state (dwatch.validate.state).
    state_notes: list[str] = field(default_factory=list)

    @property
    def all_batches(self) -> list[BatchReport]:
        return self.batches + ([self.store_checks] if self.store_checks else [])

    @property
    def new_batches(self) -> list[BatchReport]:
        return [b for b in self.batches if not b.revalidated]

    @property
    def revisited(self) -> list[BatchReport]:
        return [b for b in self.batches if b.revalidated]

    @property
    def rows_quarantined(self) -> int:
        return sum(b.rows_quarantined for b in self.batches)

    @property
    def failed(self) -> list[Outcome]:
        return [o for b in self.all_batches for o in b.failed]

    @property
    def coverage_gaps(self) -> list[Outcome]:
        return [o for b in self.all_batches for o in b.coverage_gaps]

    @property
    def docs_url(self) -> str | None:
        return self.docs_index.resolve().as_uri() if self.docs_index else None

    def summary(self) -> str:
        lines = [
            f"validation run {self.validation_run_id}: {len(self.new_batches)} new batch(es),"
            f" {len(self.revisited)} validated again"
        ]
        for b in self.all_batches:
            lines.extend(_batch_lines(b))
        lines.append(
            f"rows quarantined: {self.rows_quarantined}; coverage gaps found: {len(self.coverage_gaps)}"
            f" (open in the store: {self.open_coverage_gaps});"
            f" alerts flagged coverage-incomplete: {self.alerts_flagged}"
        )
        if self.seconds_by_stage:
            lines.append(
                "time by stage: "
                + ", ".join(f"{k} {v:.2f} s" for k, v in self.seconds_by_stage.items())
            )
        if self.docs_index:
            note = f" ({self.docs_note})" if self.docs_note else ""
            lines.append(f"Data Docs: {self.docs_url}{note}")
        if self.docs_error:
            lines.append(f"Data Docs not built: {self.docs_error}")
        return "\n".join(lines)


def _batch_lines(b: BatchReport) -> list[str]:
    passed = sum(o.success for o in b.outcomes)
    head = (b.ingest_run_id or "store-wide") + (" (again)" if b.revalidated else "")
    lines = [
        f"  {head}  {b.kind:13} rows {b.rows_checked:>9}  quarantined {b.rows_quarantined:>7}"
        f"  checks passed {passed}, failed {len(b.failed)}  {b.source_file}"
    ]
    if b.revisit_reason:
        lines.append(f"    validated again: {b.revisit_reason}")
    if b.error:
        lines.append(f"    error: {b.error}")
    for o in b.failed[:MAX_FAILURES_SHOWN]:
        where = f" [{o.source_system}]" if o.source_system else ""
        lines.append(f"    FAIL {o.expectation}{where}: {o.message or ''}".rstrip())
    if len(b.failed) > MAX_FAILURES_SHOWN:
        lines.append(
            f"    ... {len(b.failed) - MAX_FAILURES_SHOWN} more failures in validation_results"
        )
    return lines


def new_validation_run_id() -> str:
    return f"vr_{datetime.now(UTC):%Y%m%dT%H%M%S}_{uuid.uuid4().hex[:8]}"


_OUTCOME_SCHEMA = pa.schema(
    [
        ("validation_run_id", pa.string()),
        ("ingest_run_id", pa.string()),
        ("source_system", pa.string()),
        ("suite", pa.string()),
        ("expectation", pa.string()),
        ("scope", pa.string()),
        ("success", pa.bool_()),
        ("element_count", pa.int64()),
        ("unexpected_count", pa.int64()),
        ("window_start", pa.timestamp("us", tz="UTC")),
        ("window_end", pa.timestamp("us", tz="UTC")),
        ("observed", pa.string()),
        ("message", pa.string()),
    ]
)


def _instant_or_none(value: object) -> datetime | None:
    """A window bound as stored; DuckDB hands instants Python cannot hold over as text."""
    return value if isinstance(value, datetime) else None


def write_outcomes(
    con: duckdb.DuckDBPyConnection, outcomes: list[Outcome], validation_run_id: str
) -> None:
    if not outcomes:
        return
    # Arrow in, one set-wise insert: executemany is row by row in DuckDB (~60 ms a batch).
    rows = pa.Table.from_pylist(
        [
            {
                "validation_run_id": validation_run_id,
                "ingest_run_id": o.ingest_run_id,
                "source_system": o.source_system,
                "suite": o.suite,
                "expectation": o.expectation,
                "scope": o.scope,
                "success": o.success,
                "element_count": o.element_count,
                "unexpected_count": o.unexpected_count,
                "window_start": _instant_or_none(o.window_start),
                "window_end": _instant_or_none(o.window_end),
                "observed": o.observed,
                "message": o.message,
            }
            for o in outcomes
        ],
        schema=_OUTCOME_SCHEMA,
    )
    con.register("_dw_outcomes", rows)
    try:
        con.execute(
            f"INSERT INTO validation_results ({', '.join(_OUTCOME_SCHEMA.names)})"
            f" SELECT {', '.join(_OUTCOME_SCHEMA.names)} FROM _dw_outcomes"
        )
    finally:
        con.unregister("_dw_outcomes")
