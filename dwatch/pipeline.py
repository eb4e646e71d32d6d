"""One pipeline run: ingest -> plan -> validate -> detect (rules, ML) -> report -> notify -> publish.

``run_pipeline(db, inputs)`` is the plain function behind ``dwatch run``; the Prefect flow
``pipeline`` (flows/pipeline.py) calls the same steps one task each. A run:

* holds the store's write lock from start to end (one connection), records itself in
  ``runs`` first (status ``running``) and each step's result as it finishes, so a crash
  leaves a visible trail and the next run marks it ``abandoned``;
* reads only files that are new or changed (``dwatch.watermark``), takes every pending
  ingest batch (its own, or ones a failed run or ``dwatch ingest`` left), and judges the
  event-time windows they touch, plus windows earlier runs left open (gaps) and
  ``--backfill`` ranges;
* records a step whose module is not installed as ``not_available`` rather than pretending
  it ran, and a run whose validation could not judge every batch as ``partial`` (the
  report title says so);
* after success publishes a read-only snapshot for analysts (``dwatch.snapshot``).

Steps are idempotent, so re-running after a crash ends in the same state as a clean run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import yaml

from dwatch import progress, yamlfile
from dwatch.errors import DWatchError, StoreError
from dwatch.failed_starts import (
    RunNotStarted,
    forget_failed_starts,
    import_failed_starts,
    record_failed_start,
)
from dwatch.masking import mask_json, mask_path
from dwatch.pipeline_config import (
    PROJECT_ROOT,
    PipelineConfig,
    load_pipeline_config,
)
from dwatch.prefetch import Prefetch
from dwatch.pseudonym import resolve_key
from dwatch.store import connect, transaction

if TYPE_CHECKING:
    from dwatch.accounting.index import IndexRefresh

RULES_DIR = PROJECT_ROOT / "detectors" / "rules"

STEP_NAMES = (
    "ingest",
    "plan",
    "validate",
    "detect_rules",
    "detect_ml",
    "report",
    "notify",
    "publish",
)
# ok: did its work; warning: did it, with problems the run reports; skipped: nothing to do
# (or switched off); not_available: the step's module is not part of this build;
# failed: raised, and the run stopped there.
STEP_STATUSES = ("ok", "warning", "skipped", "not_available", "failed")


# Integer counts a run accumulates, one column each in ``runs``.
COUNT_COLUMNS = (
    "files_seen", "files_new", "files_unchanged", "files_failed", "events_loaded",
    "items_loaded", "rows_quarantined", "late_events", "batches_processed",
    "windows_processed", "gaps_filled", "missed_schedules", "coverage_gaps", "alerts_new",
    "alerts_updated", "alerts_reopened", "alerts_retracted", "alerts_open",
)  # fmt: skip


# --------------------------------------------------------------------------- results


@dataclass
class StepResult:
    step: str
    status: str
    seconds: float = 0.0
    message: str = ""
    detail: dict[str, Any] = field(default_factory=dict)
    attempts: int = 1
    # CPU of the whole process (every DuckDB thread) while the step ran: on a shared machine
    # wall seconds say how busy the machine was, CPU seconds what the step cost.
    cpu_seconds: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "seconds": round(self.seconds, 3),
            "cpu_seconds": round(self.cpu_seconds, 3),
        }


@dataclass
class RunSummary:
    run_id: str
    status: str
    db: Path
    started_at: datetime
    finished_at: datetime | None
    duration_seconds: float | None
    steps: list[StepResult]
    counts: dict[str, Any]
    notes: list[str]
    report_path: Path | None = None
    data_docs_path: Path | None = None
    snapshot_path: Path | None = None
    current_snapshot: Path | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("succeeded", "partial")

    def step(self, name: str) -> StepResult | None:
        return next((s for s in self.steps if s.step == name), None)

    def describe(self) -> str:
        seconds = f"{self.duration_seconds:.1f}s" if self.duration_seconds is not None else "-"
        lines = [f"run {self.run_id}: {self.status} in {seconds}"]
        for s in self.steps:
            lines.append(f"  {s.step:<13} {s.status:<13} {s.seconds:7.2f}s  {s.message}".rstrip())
        c = self.counts
        lines.append(
            f"  files: {c.get('files_new', 0)} read, {c.get('files_unchanged', 0)} unchanged;"
            f" events loaded {c.get('events_loaded', 0):,}, quarantined {c.get('rows_quarantined', 0):,};"
            f" windows judged {c.get('windows_processed', 0)} (gaps filled {c.get('gaps_filled', 0)},"
            f" late events {c.get('late_events', 0)})"
        )
        lines.append(
            f"  alerts: {c.get('alerts_new', 0)} new, {c.get('alerts_retracted', 0)} retracted,"
            f" {c.get('alerts_open', 0)} open"
        )
        for note in self.notes:
            lines.append(f"  note: {note}")
        if self.error:
            lines.append(f"  error: {self.error}")
        return "\n".join(lines)


# --------------------------------------------------------------------------- the run


def _finite(value: Any) -> Any:
    """Parsed JSON with each NaN or infinity replaced by null (not valid JSON otherwise)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def steps_json(steps: list[dict[str, Any]], key: bytes | None) -> str:
    """The steps' details as JSON for ``runs.steps``: every string masked, numbers unchanged.

    Masking the serialised text instead (as before) turned a nine-digit count or rowid into
    an unquoted pseudonym, and the store refused the row at the end of a 10M-event run."""
    plain = json.loads(json.dumps(steps, default=str))
    return json.dumps(mask_json(_finite(plain), key), allow_nan=False)


def _new_run_id() -> str:
    return f"run_{datetime.now(UTC):%Y%m%dT%H%M%S%f}_{uuid.uuid4().hex[:6]}"


def rules_version(directory: Path = RULES_DIR) -> str:
    """Content hash of the rule files: two runs with equal versions judged by equal rules."""
    digest = hashlib.sha256()
    for path in sorted(directory.glob("*")):
        if path.is_file() and path.suffix in {".yaml", ".yml", ".sql"}:
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


class RunContext:
    """One run's connection, identity and accumulating results (shared by its steps)."""

    def __init__(
        self,
        db: Path,
        con: duckdb.DuckDBPyConnection,
        run_id: str,
        config: PipelineConfig,
        inputs: list[str],
        *,
        backfill: tuple[datetime, datetime] | None,
        trigger: str,
        key: bytes | None,
        reports_dir: Path,
        snapshot_dir: Path,
        notify: bool,
        started_at: datetime,
    ) -> None:
        self.db, self.con, self.run_id, self.config = db, con, run_id, config
        self.inputs, self.backfill, self.trigger, self.key = inputs, backfill, trigger, key
        self.reports_dir, self.snapshot_dir, self.notify = reports_dir, snapshot_dir, notify
        self.started_at = started_at
        self.clock = time.monotonic()
        self.steps: dict[str, StepResult] = {}
        self.counts: dict[str, Any] = {}
        self.notes: list[str] = []
        self.versions: dict[str, Any] = {}
        self.validation_incomplete: bool | None = None
        self.windows: list[Any] = []
        self.report_result: Any = None
        self.published: Any = None
        # Background import of what scoring and the report load (dwatch/prefetch.py).
        self.prefetch: Prefetch | None = None
        self.status = "running"
        self.error: str | None = None

    # -- recording -------------------------------------------------------------

    def run(self, name: str, fn: Callable[[RunContext], StepResult] | None = None) -> StepResult:
        """Run one step, record its result in ``runs.steps``; on error record and re-raise."""
        step_fn = fn or STEPS[name]
        attempts = self.steps[name].attempts + 1 if name in self.steps else 1
        began, cpu_began = time.monotonic(), time.process_time()
        number = f"{STEP_NAMES.index(name) + 1}/{len(STEP_NAMES)} " if name in STEP_NAMES else ""
        try:
            with progress.task(f"step {number}{name}"):
                result = step_fn(self)
        except BaseException as exc:
            self.steps[name] = StepResult(
                name,
                "failed",
                time.monotonic() - began,
                mask_path(_describe(exc), self.masking_key),
                attempts=attempts,
            )
            # A broken connection must not mask the step's own error.
            with contextlib.suppress(duckdb.Error):
                self._write_row()
            raise
        result.seconds = time.monotonic() - began
        result.cpu_seconds = time.process_time() - cpu_began
        result.attempts = attempts
        # Step messages quote files and values from outside: masked before anything shows
        # them (runs.steps, the Prefect UI, the terminal).
        result.message = mask_path(result.message, self.masking_key)
        result.detail = mask_json(result.detail, self.masking_key)
        self.steps[name] = result
        self._write_row()
        return result

    @property
    def masking_key(self) -> bytes | None:
        """The key file names are masked with (dwatch.masking.mask_path), if there is one."""
        if self.key is None:
            with contextlib.suppress(DWatchError):
                self.key = resolve_key()
        return self.key

    def _ordered_steps(self) -> list[StepResult]:
        return [self.steps[n] for n in STEP_NAMES if n in self.steps]

    def _write_row(self) -> None:
        c = self.counts
        finished = None if self.status == "running" else datetime.now(UTC)
        duration = None if finished is None else time.monotonic() - self.clock
        report = self.report_result.html_path if self.report_result is not None else None
        self.con.execute(
            """
            UPDATE runs SET status = $status, finished_at = $finished, duration_seconds = $duration,
                files_seen = $files_seen, files_new = $files_new, files_unchanged = $files_unchanged,
                files_failed = $files_failed, events_loaded = $events_loaded,
                items_loaded = $items_loaded, rows_quarantined = $rows_quarantined,
                late_events = $late_events, batches_processed = $batches_processed,
                windows_processed = $windows_processed, gaps_filled = $gaps_filled,
                missed_schedules = $missed_schedules, rules_version = $rules_version,
                registry_version = $registry_version, model_versions = $model_versions,
                validation_incomplete = $validation_incomplete, coverage_gaps = $coverage_gaps,
                alerts_new = $alerts_new, alerts_updated = $alerts_updated,
                alerts_reopened = $alerts_reopened, alerts_retracted = $alerts_retracted,
                alerts_open = $alerts_open, report_path = $report_path,
                data_docs_path = $data_docs_path, snapshot_path = $snapshot_path,
                steps = $steps, error = $error, notes = $notes
            WHERE run_id = $run_id
            """,
            {
                "run_id": self.run_id,
                "status": self.status,
                "finished": finished,
                "duration": duration,
                **{k: c.get(k) for k in COUNT_COLUMNS},
                "rules_version": self.versions.get("rules"),
                "registry_version": self.versions.get("registry"),
                "model_versions": json.dumps(self.versions.get("models"))
                if self.versions.get("models") is not None
                else None,
                "validation_incomplete": self.validation_incomplete,
                "report_path": str(report) if report else None,
                "data_docs_path": c.get("data_docs_path"),
                "snapshot_path": c.get("snapshot_path"),
                "steps": steps_json([s.as_json() for s in self._ordered_steps()], self.masking_key),
                "error": mask_path(self.error, self.masking_key) if self.error else None,
                "notes": [mask_path(n, self.masking_key) for n in self.notes],
            },
        )

    def add(self, **counts: int) -> None:
        for key, value in counts.items():
            self.counts[key] = int(self.counts.get(key) or 0) + int(value)

    # -- ending ------------------------------------------------------------------

    def final_status(self) -> str:
        statuses = {s.status for s in self.steps.values()}
        if "failed" in statuses:
            return "failed"
        if statuses & {"not_available", "warning"} or self.validation_incomplete:
            return "partial"
        return "succeeded"

    def fail(self, exc: BaseException) -> None:
        """Record that the run stopped; its batches and windows stay pending for the next run."""
        failed = next((s for s in self._ordered_steps() if s.status == "failed"), None)
        self.status = "failed"
        self.error = mask_path(
            f"{failed.step if failed else 'run'}: {_describe(exc)}", self.masking_key
        )
        # If the connection itself broke, the next run marks this one abandoned instead.
        with contextlib.suppress(duckdb.Error):
            self._write_row()

    def summary(self) -> RunSummary:
        finished = None if self.status == "running" else datetime.now(UTC)
        return RunSummary(
            run_id=self.run_id,
            status=self.status,
            db=self.db,
            started_at=self.started_at,
            finished_at=finished,
            duration_seconds=None if finished is None else time.monotonic() - self.clock,
            steps=self._ordered_steps(),
            counts=dict(self.counts),
            notes=[mask_path(n, self.masking_key) for n in self.notes],
            report_path=self.report_result.html_path if self.report_result is not None else None,
            data_docs_path=Path(self.counts["data_docs_path"])
            if self.counts.get("data_docs_path")
            else None,
            snapshot_path=self.published.path if self.published is not None else None,
            current_snapshot=self.published.current if self.published is not None else None,
            error=self.error,
        )

    def wait_prefetch(self) -> None:
        """Let the background import finish before a step imports the same modules."""
        if self.prefetch is not None:
            self.prefetch.wait()

    def close(self) -> None:
        self.wait_prefetch()
        with contextlib.suppress(duckdb.Error):
            self.con.close()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, DWatchError):
        return exc.render()
    frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f" (at {Path(frame.filename).name}:{frame.lineno})" if frame else ""
    return f"{type(exc).__name__}: {exc}{where}"


def begin_run(
    db: Path | str | None,
    inputs: Sequence[str | Path] | None,
    *,
    backfill: tuple[datetime, datetime] | None = None,
    trigger: str = "cli",
    config: PipelineConfig | None = None,
    key: bytes | None = None,
    reports_dir: Path | None = None,
    snapshot_dir: Path | None = None,
    notify: bool | None = None,
    flow_run_id: str | None = None,
) -> RunContext:
    """Open the store (taking the write lock), record the run, notice what earlier runs left."""
    from dwatch.snapshot import default_snapshot_dir
    from dwatch.store import default_db_path
    from dwatch.watermark import abandon_stale_runs, missed_schedules

    config = config or load_pipeline_config()
    db_path = Path(db) if db is not None else default_db_path()
    chosen_inputs = [str(p) for p in (inputs if inputs else config.inputs)]
    run_id = _new_run_id()
    started = datetime.now(UTC)
    try:
        con = connect(db_path)
    except StoreError as exc:  # no runs row can be written: record the attempt beside it
        if key is None:
            with contextlib.suppress(DWatchError):
                key = resolve_key()
        recorded = record_failed_start(db_path, run_id, trigger, started, exc, key)
        raise RunNotStarted(exc, recorded) from exc
    ctx = RunContext(
        db_path,
        con,
        run_id,
        config,
        chosen_inputs,
        backfill=backfill,
        trigger=trigger,
        key=key,
        reports_dir=Path(reports_dir or config.reports_dir),
        snapshot_dir=Path(snapshot_dir or config.snapshot_dir or default_snapshot_dir(db_path)),
        notify=config.notify if notify is None else notify,
        started_at=started,
    )
    try:
        with transaction(con):
            not_started = import_failed_starts(con, db_path)
            stale = abandon_stale_runs(con)
            con.execute(
                "INSERT INTO runs (run_id, trigger, flow_run_id, status, started_at, inputs,"
                " backfill_from, backfill_to) VALUES (?, ?, ?, 'running', ?, ?, ?, ?)",
                [
                    run_id,
                    trigger,
                    flow_run_id,
                    started,
                    chosen_inputs,
                    backfill[0] if backfill else None,
                    backfill[1] if backfill else None,
                ],
            )
        forget_failed_starts(db_path)
        if not_started:
            ctx.notes.append(
                f"earlier run(s) {', '.join(not_started)} could not open the store; recorded"
                " in the runs table as failed"
            )
        if stale:
            ctx.notes.append(
                f"earlier run(s) {', '.join(stale)} ended without finishing; marked abandoned,"
                " their pending work is taken up now"
            )
        if trigger == "schedule":
            missed, last_ok = missed_schedules(con, config.cron, timezone=config.timezone)
            ctx.counts["missed_schedules"] = missed
            if missed:
                ctx.notes.append(
                    f"{missed} scheduled run(s) since the last successful run"
                    f" ({last_ok:%Y-%m-%d %H:%M} UTC) did not complete; this run covers their data"
                )
        ctx._write_row()
    except BaseException:
        con.close()
        raise
    return ctx


def run_pipeline(
    db: Path | str | None,
    inputs: Sequence[str | Path] | None = None,
    *,
    backfill: tuple[datetime, datetime] | None = None,
    trigger: str = "cli",
    config: PipelineConfig | None = None,
    key: bytes | None = None,
    reports_dir: Path | None = None,
    snapshot_dir: Path | None = None,
    notify: bool | None = None,
) -> RunSummary:
    """Run every step in order; on an error record it and re-raise (nothing is published)."""
    ctx = begin_run(
        db,
        inputs,
        backfill=backfill,
        trigger=trigger,
        config=config,
        key=key,
        reports_dir=reports_dir,
        snapshot_dir=snapshot_dir,
        notify=notify,
    )
    try:
        for name in STEP_NAMES:
            ctx.run(name)
    except BaseException as exc:
        ctx.fail(exc)
        raise
    finally:
        ctx.close()
    return ctx.summary()


# --------------------------------------------------------------------------- the steps


def step_ingest(ctx: RunContext) -> StepResult:
    """Read new or changed files; one ingest batch per file."""
    from dwatch.ingest import ingest_paths
    from dwatch.watermark import record_files, scan_inputs

    if not ctx.inputs:
        ctx.add(files_seen=0, files_new=0, files_unchanged=0, files_failed=0)
        return StepResult(
            "ingest", "skipped", message="no input paths (pending batches are still processed)"
        )
    scan = scan_inputs(ctx.con, ctx.inputs, key=ctx.masking_key)
    if scan.to_read and ctx.prefetch is None:
        # New data: scoring and the report will need their modules; load them beside DuckDB.
        ctx.prefetch = Prefetch()
    results = ingest_paths(ctx.con, scan.to_read, key=ctx.key) if scan.to_read else []
    record_files(ctx.con, ctx.run_id, results, scan.stats, key=ctx.masking_key)
    failed = [r for r in results if r.status == "failed"]
    problems = [f"{p}: {why}" for p, why in scan.problems]
    loaded = [r for r in results if r.status == "loaded"]
    events = sum(r.rows_loaded for r in loaded if r.kind == "events")
    items = sum(r.rows_loaded for r in loaded if r.kind == "request_items")
    quarantined = sum(r.rows_quarantined for r in loaded)
    ctx.counts.update(
        files_seen=scan.seen,
        files_new=len(scan.to_read),
        files_unchanged=len(scan.unchanged),
        files_failed=len(failed) + len(problems),
        events_loaded=events,
        items_loaded=items,
        rows_quarantined=quarantined,
    )
    message = (
        f"{len(loaded)} file(s) loaded, {len(scan.to_read) - len(loaded) - len(failed)} same content"
        f" as before, {len(scan.unchanged)} unchanged (not read); {events:,} events,"
        f" {items:,} request items, {quarantined:,} rows quarantined"
    )
    detail = {
        "loaded": [
            {
                "file": r.source_file,
                "batch": r.run_id,
                "rows": r.rows_loaded,
                "quarantined": r.rows_quarantined,
            }
            for r in loaded
        ],
        "failed": [{"file": r.source_file, "message": r.message} for r in failed] + problems,
    }
    if failed or problems:
        return StepResult(
            "ingest",
            "warning",
            message=f"{message}; {len(failed) + len(problems)} input(s) failed",
            detail=detail,
        )
    return StepResult("ingest", "ok", message=message, detail=detail)


def step_plan(ctx: RunContext) -> StepResult:
    """Claim pending batches, open the windows they touch (and a backfill), list open windows."""
    from dwatch.watermark import claim_pending, open_backfill, open_windows

    claim = claim_pending(ctx.con, ctx.run_id)  # a transaction per batch it cannot plan
    if ctx.backfill:
        with transaction(ctx.con):
            open_backfill(ctx.con, ctx.run_id, *ctx.backfill)
    ctx.windows = open_windows(ctx.con)
    inherited = [w for w in ctx.windows if w.opened_by_run_id != ctx.run_id]
    ctx.counts.update(
        late_events=claim.late_events,
        windows_processed=len(ctx.windows),
        gaps_filled=len(inherited),
    )
    if claim.late_events:
        ctx.notes.append(
            f"{claim.late_events} late event(s) from {', '.join(claim.late_sources)} re-open the"
            " windows they fall in"
        )
    if inherited:
        runs = sorted({w.opened_by_run_id for w in inherited})
        ctx.notes.append(
            f"{len(inherited)} window(s) left open by earlier run(s) {', '.join(runs)} are judged now"
        )
    message = (
        f"{len(claim.batches)} new batch(es), {claim.windows_opened} window(s) opened,"
        f" {len(ctx.windows)} to judge ({len(inherited)} left by earlier runs)"
    )
    if claim.failed:
        message += f"; {len(claim.failed)} batch(es) could not be planned and stay pending"
        ctx.notes.append(
            f"{len(claim.failed)} batch(es) could not be planned ("
            + "; ".join(f"{b}: {why}" for b, why in claim.failed.items())
            + "); the others were judged, the next run tries them again"
        )
    return StepResult(
        "plan",
        "warning" if claim.failed else "ok",
        message=message,
        detail={
            "batches": claim.batches,
            "late_events": claim.late_events,
            "backfill": [b.isoformat() for b in ctx.backfill] if ctx.backfill else None,
            "failed": claim.failed,
        },
    )


def step_validate(ctx: RunContext) -> StepResult:
    """Validate every loaded batch not validated yet (Great Expectations)."""
    try:
        from dwatch.validate import validate_batches
    except ImportError as exc:
        ctx.validation_incomplete = True
        ctx.notes.append("validation is not available in this build: coverage is unknown")
        return StepResult("validate", "not_available", message=f"dwatch.validate: {exc}")
    from dwatch.validate.docs_job import docs_mode

    # Data Docs (Great Expectations takes seconds to load) are built beside the run.
    background = docs_mode(default="background") == "background"
    report = validate_batches(
        ctx.con, docs_dir=ctx.reports_dir / "validation", docs_in_background=background
    )
    errors = [b for b in report.all_batches if b.error]
    ctx.validation_incomplete = bool(errors)
    gaps = ctx.con.execute("SELECT count(*) FROM coverage_gaps").fetchone()
    ctx.counts["coverage_gaps"] = int(gaps[0]) if gaps else 0
    if report.docs_index:
        ctx.counts["data_docs_path"] = str(report.docs_index)
    ctx.add(rows_quarantined=report.rows_quarantined)
    message = (
        f"{len(report.new_batches)} batch(es) validated, {report.rows_quarantined:,} rows quarantined,"
        f" {len(report.coverage_gaps)} new coverage gap(s)"
    )
    if report.revisited:
        message += f"; {len(report.revisited)} old batch(es) checked again"
        ctx.notes.extend(
            f"validation checked old batch {b.ingest_run_id} again: {b.revisit_reason}"
            for b in report.revisited
        )
    # Why the silence checks read a source's history, not the per-source state.
    ctx.notes.extend(f"validation: {n}" for n in report.state_notes)
    detail = {
        "validation_run_id": report.validation_run_id,
        "revisited": {b.ingest_run_id: b.revisit_reason for b in report.revisited},
        "history_read": report.state_notes,
        "seconds_by_stage": {k: round(v, 3) for k, v in report.seconds_by_stage.items()},
        "batch_errors": {b.ingest_run_id or "store": b.error for b in errors},
        "docs_error": report.docs_error,
        "docs_note": report.docs_note,
    }
    if errors:
        ctx.notes.append(
            f"validation incomplete: {len(errors)} batch(es) could not be validated; alerts in"
            " their windows may be missing"
        )
        return StepResult(
            "validate",
            "warning",
            message=f"{message}; {len(errors)} batch(es) not validated",
            detail=detail,
        )
    if report.docs_error:
        return StepResult(
            "validate", "warning", message=f"{message}; Data Docs not built", detail=detail
        )
    return StepResult("validate", "ok", message=message, detail=detail)


def _last_success(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    row = con.execute(
        "SELECT rules_version, registry_version, model_versions FROM runs"
        " WHERE status IN ('succeeded', 'partial') ORDER BY started_at DESC LIMIT 1"
    ).fetchone()
    if not row:
        return {}
    return {"rules": row[0], "registry": row[1], "models": json.loads(row[2]) if row[2] else None}


def _judge_all_because(ctx: RunContext, registry_version: str) -> str | None:
    """Why this run must judge all history, or None when new batches alone will do.

    Judging only new batches (detectors.scoped) gives the alerts a full judgement gives
    when every earlier judgement used these rules and this registry and nothing but new
    batches changed the store since.
    """
    if ctx.backfill:
        return "a backfill re-judges history"
    last = ctx.con.execute(
        "SELECT started_at FROM runs WHERE status IN ('succeeded', 'partial')"
        " ORDER BY started_at DESC LIMIT 1"
    ).fetchone()
    if not last:
        return "no earlier successful run"
    versions = ctx.con.execute(
        "SELECT DISTINCT rules_version, registry_version FROM runs"
        " WHERE started_at >= ? AND run_id <> ? AND rules_version IS NOT NULL",
        [last[0], ctx.run_id],
    ).fetchall()
    if any(rules != ctx.versions["rules"] for rules, _ in versions):
        return "the rules changed since the last judgement"
    if any(reg != registry_version for _, reg in versions):
        return f"the registry changed since the last judgement (now {registry_version})"
    stale = ctx.con.execute(
        "SELECT count(*) FROM alerts WHERE detector_kind = 'rule' AND status = 'open'"
        " AND registry_version IS DISTINCT FROM ?",
        [registry_version],
    ).fetchone()
    if stale and stale[0]:
        return f"{stale[0]} open rule alert(s) were judged under another registry version"
    moved = ctx.con.execute(
        "SELECT count(*) FROM quarantine q WHERE q.stage <> 'ingest' AND q.quarantined_at >= ?"
        " AND q.ingest_run_id NOT IN (SELECT ingest_run_id FROM run_batches"
        " WHERE judged_by_run_id IS NULL)",
        [last[0]],
    ).fetchone()
    if moved and moved[0]:
        return f"validation quarantined {moved[0]} row(s) of batches already judged"
    return None


def step_detect_rules(ctx: RunContext) -> StepResult:
    """Judge what new batches touch by the policy registry (all history when the rules or
    the registry changed: detectors.scoped)."""
    try:
        from detectors.engine import load_rules, run_rules
        from detectors.scoped import judge_new
        from dwatch.policy import load_registry
    except ImportError as exc:
        return StepResult("detect_rules", "not_available", message=f"rule engine: {exc}")
    registry = load_registry()
    ctx.versions["rules"] = rules_version()
    ctx.versions["registry"] = registry.version
    last = _last_success(ctx.con)
    unchanged = (
        last.get("rules") == ctx.versions["rules"] and last.get("registry") == registry.version
    )
    if not ctx.windows and unchanged:
        return StepResult(
            "detect_rules",
            "skipped",
            message="no new data and the rules and registry are unchanged",
        )
    judge_all = _judge_all_because(ctx, registry.version)
    with transaction(ctx.con):
        if judge_all is None:
            batches = [
                r[0]
                for r in ctx.con.execute(
                    "SELECT ingest_run_id FROM run_batches WHERE judged_by_run_id IS NULL"
                    " ORDER BY ingest_run_id"
                ).fetchall()
            ]
            result = judge_new(ctx.con, registry, load_rules(), run_id=ctx.run_id, batches=batches)
            why = f"new data: {len(batches)} batch(es) and what they touch"
        else:
            result = run_rules(ctx.con, registry, run_id=ctx.run_id, rules=load_rules())
            why = f"all history: {judge_all}"
    ctx.notes += [f"rules read {line}" for line in result.revisits]
    merge = result.merge
    if merge:
        ctx.add(
            alerts_new=merge.new,
            alerts_updated=merge.updated,
            alerts_reopened=merge.reopened,
            alerts_retracted=merge.retracted,
        )
    return StepResult(
        "detect_rules",
        "ok",
        message=f"{len(result.rules)} rule(s), {result.findings} finding(s) ({why});"
        + (f" {merge.new} new, {merge.retracted} retracted alert(s)" if merge else ""),
        detail={
            "registry_version": registry.version,
            "judged": "all history" if judge_all else "new batches and what they touch",
            "why": judge_all or "rules and registry unchanged since the last judgement",
            "revisits": result.revisits,
            "findings": {r.rule_id: r.findings for r in result.rules if r.findings},
        },
    )


_LATEST_MODELS_SQL = (
    "SELECT detector_id, version FROM models QUALIFY row_number() OVER"
    " (PARTITION BY detector_id ORDER BY created_at DESC, version DESC) = 1"
)


def _ml_enabled_detectors() -> dict[str, list[str]]:
    """Detector ids the ML config enables and the event types each reads, read as plain
    YAML (no scikit-learn import; defaults as detectors.ml.registry.load_config's)."""
    from importlib.resources import files

    path = os.environ.get("DWATCH_ML_CONFIG") or str(files("detectors.ml") / "config.yaml")
    raw = yamlfile.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    blocks = raw.get("detectors") if isinstance(raw, dict) else None
    if not isinstance(blocks, dict):
        return {}
    return {
        d: [str(t).lower() for t in (b.get("event_types") if isinstance(b, dict) else None)
            or ["disclosure"]]
        for d, b in blocks.items()
        if not isinstance(b, dict) or b.get("enabled", True)
    }  # fmt: skip


def _opening_batches(ctx: RunContext) -> list[str]:
    """The ingest batches whose arrival opened the windows (this run's, or a failed run's)."""
    openers = sorted({w.opened_by_run_id for w in ctx.windows})
    return [
        str(r[0])
        for r in ctx.con.execute(
            "SELECT ingest_run_id FROM run_batches"
            " WHERE claimed_by_run_id IN (SELECT unnest(?::VARCHAR[]))",
            [openers],
        ).fetchall()
    ]


def _ml_idle(ctx: RunContext) -> dict[str, str] | None:
    """The latest models when scoring could change nothing, else None.

    Nothing changes when the latest models are the ones the last successful run scored
    with (and none is missing that this run would train), and the open windows hold no
    newly arrived event of a type an enabled detector reads (each detector would score
    nothing, detectors/ml/scope.py). Decided from the store and the config file alone:
    importing the ML stack (scikit-learn, SciPy, skops) costs seconds, which a run with
    nothing for it should not pay.
    """
    models = {str(d): str(v) for d, v in ctx.con.execute(_LATEST_MODELS_SQL).fetchall()}
    if not models or _last_success(ctx.con).get("models") != dict(sorted(models.items())):
        return None
    try:
        enabled = _ml_enabled_detectors()
    except (OSError, yaml.YAMLError):
        return None  # the full path reports the config's problem with its fix
    if ctx.config.train_when_missing and set(enabled) - set(models):
        return None
    if ctx.windows:
        from detectors.ml.scope import any_touched  # no scikit-learn

        types = sorted({t for d, ts in enabled.items() if d in models for t in ts})
        windows = [(w.source_system, w.start, w.end) for w in ctx.windows]
        if any_touched(ctx.con, types, windows, _opening_batches(ctx)):
            return None
    return dict(sorted(models.items()))


def step_detect_ml(ctx: RunContext) -> StepResult:
    """Score the open windows with each detector's latest model (train a missing one if set)."""
    ctx.wait_prefetch()
    idle = _ml_idle(ctx)
    if idle is not None:
        ctx.versions["models"] = idle
        return StepResult(
            "detect_ml",
            "skipped",
            message=(
                "no new event of the detectors' types to score and no new model"
                " (the ML stack was not loaded)"
            ),
        )
    try:
        from detectors.ml.registry import default_models_dir, latest_models
        from detectors.ml.run import score_models, train_models
    except ImportError as exc:
        return StepResult("detect_ml", "not_available", message=f"ML detectors: {exc}")
    models_dir = default_models_dir(ctx.db)
    trained: list[str] = []
    if ctx.config.train_when_missing:
        from detectors.ml.registry import load_config

        enabled = [d for d, s in load_config().detectors.items() if s.enabled]
        missing = sorted(set(enabled) - set(latest_models(ctx.con)))
        if missing and ctx.con.execute("SELECT count(*) FROM disclosure_events").fetchone()[0]:
            # The rows a fit builds for all history stay for the scoring below (it scores
            # all history with the new models): detectors/ml/reuse.py.
            results = train_models(
                ctx.con,
                window_from=None,
                window_to=None,
                models_dir=models_dir,
                detectors=missing,
                keep_for_scoring=True,
            )
            trained = [r.detector_id for r in results if r.status == "trained"]
    models = {d: r.version for d, r in sorted(latest_models(ctx.con).items())}
    ctx.versions["models"] = models
    if not models:
        return StepResult(
            "detect_ml",
            "skipped",
            message="no trained model (run `dwatch train`, or enable ml.train_when_missing)",
        )
    last = _last_success(ctx.con)
    new_models = last.get("models") != models
    if not new_models and not ctx.windows:
        return StepResult("detect_ml", "skipped", message="no window to score and no new model")
    # A new model scores all history; otherwise each detector scores the rows the open
    # windows touch (detectors/ml/scope.py).
    windows = None if new_models else [(w.source_system, w.start, w.end) for w in ctx.windows]
    batches = _opening_batches(ctx)
    summary = score_models(
        ctx.con, run_id=ctx.run_id, models_dir=models_dir, windows=windows, batches=batches
    )
    ctx.add(
        alerts_new=summary.new,
        alerts_updated=summary.updated,
        alerts_reopened=summary.reopened,
        alerts_retracted=summary.retracted,
    )
    scope = (
        "all history (new model)"
        if new_models
        else f"the days {len(ctx.windows)} window(s) touch, per detector"
    )
    message = (
        f"{len(models)} model(s) scored {scope}: {summary.new} new,"
        f" {summary.retracted} retracted alert(s)"
        + (f"; trained {', '.join(trained)}" if trained else "")
    )
    return StepResult(
        "detect_ml",
        "ok",
        message=message,
        detail={
            "models": models,
            "trained": trained,
            "scored": "all history (new model)" if new_models else "days the windows touch",
            "rows_scored": {d.detector_id: d.rows_scored for d in summary.detectors},
            "days_scored": {d.detector_id: d.days for d in summary.detectors if d.days is not None},
        },
    )


def step_report(ctx: RunContext) -> StepResult:
    """Rebuild cases and write the report (HTML, CSV, Markdown)."""
    ctx.wait_prefetch()
    try:
        from dwatch.report.render import build_report
    except ImportError as exc:
        return StepResult("report", "not_available", message=f"reports: {exc}")
    _mark_coverage(ctx)
    title = "Disclosure Watch report"
    if ctx.validation_incomplete:
        title += " (validation incomplete for this run: some logs were not checked)"
    docs = ctx.counts.get("data_docs_path")
    if not docs:
        existing = ctx.reports_dir / "validation" / "index.html"
        docs = str(existing) if existing.exists() else None
    result = build_report(
        ctx.con, ctx.reports_dir, data_docs=Path(docs) if docs else None, title=title
    )
    ctx.report_result = result
    s = result.data.summary
    return StepResult(
        "report",
        "ok",
        message=f"{s['cases_needing_attention']} case(s) need attention ({s['cases_new']} new); {result.html_path}",
        detail={"files": [str(p) for p in result.files], "summary": s},
    )


def step_notify(ctx: RunContext) -> StepResult:
    """E-mail new cases (outbox: a failed send is retried by the next run)."""
    if not ctx.notify:
        return StepResult("notify", "skipped", message="notification switched off for this run")
    if ctx.report_result is None:
        return StepResult("notify", "skipped", message="no report was written this run")
    try:
        from dwatch.report.notify import notify_after_report
    except ImportError as exc:
        return StepResult("notify", "not_available", message=f"notification: {exc}")
    outcome = notify_after_report(ctx.con, ctx.report_result)
    detail = {"queued": outcome.queued, "sent": outcome.sent, "pending": outcome.pending}
    if not outcome.configured:
        return StepResult("notify", "skipped", message=outcome.describe(), detail=detail)
    if outcome.pending:
        return StepResult("notify", "warning", message=outcome.describe(), detail=detail)
    return StepResult("notify", "ok", message=outcome.describe(), detail=detail)


def _mark_coverage(ctx: RunContext) -> None:
    """Flag alerts touching coverage gaps once every detector has merged: validation and the
    rule engine flag too, but before the ML step adds its alerts."""
    try:
        from detectors.alerts import mark_coverage
    except ImportError:
        return
    ctx.counts["alerts_coverage_incomplete"] = mark_coverage(ctx.con)


def finish_work(ctx: RunContext) -> IndexRefresh:
    """Close the judged windows, advance watermarks, write the final counts (one transaction).

    Returns the accounting index's refresh (``IndexRefresh``), whose cost the publish step
    reports apart from the snapshot's.
    """
    from dwatch.accounting.index import refresh_index
    from dwatch.watermark import advance_watermarks, close_windows

    with transaction(ctx.con):
        _mark_coverage(ctx)
        # After validation has moved bad rows out: the accounting lists what the store keeps.
        refreshed = refresh_index(ctx.con)
        close_windows(ctx.con, ctx.run_id, ctx.windows)
        batches = [
            r[0]
            for r in ctx.con.execute(
                "SELECT ingest_run_id FROM run_batches WHERE judged_by_run_id IS NULL"
            ).fetchall()
        ]
        advance_watermarks(ctx.con, ctx.run_id, batches)
        if batches:
            ctx.con.execute(
                "UPDATE run_batches SET judged_by_run_id = ? WHERE ingest_run_id IN (SELECT unnest(?::VARCHAR[]))",
                [ctx.run_id, batches],
            )
        ctx.counts["batches_processed"] = len(batches)
        row = ctx.con.execute("SELECT count(*) FROM alerts WHERE status = 'open'").fetchone()
        ctx.counts["alerts_open"] = int(row[0]) if row else 0
    return refreshed


def step_publish(ctx: RunContext) -> StepResult:
    """Finish the run's bookkeeping, then publish the read-only snapshot analysts open."""
    from dwatch.snapshot import publish_snapshot, snapshot_name

    started = time.perf_counter()
    refreshed = finish_work(ctx)
    bookkeeping = time.perf_counter() - started
    planned = ctx.snapshot_dir / snapshot_name(ctx.run_id)
    ctx.counts["snapshot_path"] = str(planned)
    # The snapshot must hold this run as finished: record the outcome first (provisionally
    # including this step), then copy. If the copy fails the row is corrected below.
    ctx.steps["publish"] = StepResult("publish", "ok", message=f"snapshot {planned}")
    ctx.status = ctx.final_status()
    ctx._write_row()
    try:
        ctx.published = publish_snapshot(
            ctx.con, ctx.db, ctx.snapshot_dir, ctx.run_id, keep=ctx.config.keep_snapshots
        )
    except BaseException:
        ctx.counts["snapshot_path"] = None
        ctx.status = "running"
        raise
    pruned = ", ".join(p.name for p in ctx.published.pruned)
    done = ctx.published
    return StepResult(
        "publish",
        "ok",
        message=f"snapshot {done.path} is current ({done.parts_written} of {done.parts_listed}"
        f" partition file(s) written, {done.parts_bytes_written / 1e6:.1f} MB)"
        + (f"; pruned {pruned}" if pruned else "")
        + f"; before it {refreshed.describe()}, other bookkeeping"
        f" {bookkeeping - refreshed.seconds:.2f}s",
        detail={
            "accounting_index_seconds": round(refreshed.seconds, 3),
            "bookkeeping_seconds": round(bookkeeping, 3),
            "snapshot": str(done.path),
            "bytes": done.bytes,
            "partitions_written": done.parts_written,
            "partition_bytes_written": done.parts_bytes_written,
        },
    )


STEPS: dict[str, Callable[[RunContext], StepResult]] = {
    "ingest": step_ingest,
    "plan": step_plan,
    "validate": step_validate,
    "detect_rules": step_detect_rules,
    "detect_ml": step_detect_ml,
    "report": step_report,
    "notify": step_notify,
    "publish": step_publish,
}
