"""Validate ingested batches: every check set-wise over all new batches; record every outcome.

``validate_batches`` is the plain function the Prefect flow, the CLI and the tests call.
Its stages, each a module that imports only the ones before it:

1. ``selecting``: the batches not validated yet (one ``ingest_runs`` row each; their rows
   carry ``ingest_run_id``, and lie above a rowid bound, ``first_rows``), and old batches
   whose open coverage gaps new rows may fill;
2. ``setwise``: every check of the canonical suite and of each source's suite runs once
   for all those batches (row checks as one aggregate by batch and source, batch-level
   checks as one query over every batch's windows, gaps found from buckets: ``neighbours``;
   history read through the per-source and per-flow state: ``state``, ``flow_state``);
3. ``verdicts``: per batch, in load order, its outcomes; rows failing a check whose action
   is ``quarantine`` move to ``quarantine`` (stage 'validate') with the batch's
   ``ingest_runs`` counts, in the transaction that records its ``validation_results``;
4. ``recording``: the suites and the run's verdicts as Great Expectations records, and
   GX's Data Docs built from them, offline.

Old batches checked again for their open gaps are, where their last check kept what it
found, checked after the per-source state is brought up to date, from what was kept and
the new rows, without reading their rows (``revisits``); the others are read whole.

A check that cannot be evaluated is a failure with the error, never a pass; a batch whose
validation cannot run at all is a batch-level failure (its coverage is unknown) and the
run goes on with the others. With nothing new to validate nothing is read but the list of
batches (no GX, no store-wide check, no Data Docs).
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from dwatch.schema import TableSpec, load_schema
from dwatch.validate import state
from dwatch.validate.config import ValidationConfig, load_config
from dwatch.validate.report import (
    BatchReport,
    Outcome,
    ValidationReport,
    new_validation_run_id,
    write_outcomes,
)
from dwatch.validate.selecting import Batch, batches_reopened, first_rows, select_batches

if TYPE_CHECKING:  # the checking stages load Great Expectations: only when there is work
    from dwatch.validate.setwise import Findings, Setting
    from dwatch.validate.suites import Check

log = logging.getLogger(__name__)

STORE_SUITE = "store.disclosure_events"

__all__ = ["BatchReport", "Outcome", "ValidationReport", "validate_batches"]


class _Stopwatch:
    """Seconds per stage, into the report (the summary shows them)."""

    def __init__(self, report: ValidationReport) -> None:
        self.report, self.last = report, time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        spent = self.report.seconds_by_stage
        spent[stage] = spent.get(stage, 0.0) + now - self.last
        self.last = now


def validate_batches(
    con: duckdb.DuckDBPyConnection,
    *,
    ingest_run_ids: list[str] | None = None,
    config: ValidationConfig | None = None,
    docs_dir: Path | None = None,
    build_docs: bool = True,
    docs_in_background: bool = False,
    use_state: bool = True,
) -> ValidationReport:
    """Validate ingested batches (default: every loaded batch not validated yet).

    Call it outside a transaction: each batch's outcomes and quarantine moves are
    committed in a transaction of their own. Data Docs are built before it returns, or
    with ``docs_in_background`` by a process it starts and does not wait for.
    ``use_state`` False: the silence checks read every source's history, not the
    per-source state (same verdicts; the state is left as it was).
    """
    config = config or load_config()
    report = ValidationReport(new_validation_run_id())
    watch = _Stopwatch(report)
    batches = select_batches(con, ingest_run_ids)
    watch.lap("select")
    if not batches:
        # Nothing new: no check can change (the store-wide silence check reads only the
        # stored events), and Great Expectations is not even imported.
        report.open_coverage_gaps = _count(con, "SELECT count(*) FROM coverage_gaps")
        return report
    from detectors.alerts import mark_coverage
    from dwatch.validate.verdicts import move_impossible_instants

    setting = _setting(config)
    since = first_rows(con, batches)
    early = move_impossible_instants(
        con, batches, setting.now, report.validation_run_id, since.get(state.TABLE, 0)
    )
    # Old batches whose open gaps new rows of their sources may fill are checked in the
    # same pass, for coverage only, after the new ones (their verdicts see the new rows).
    again = batches_reopened(con, _sources_of(con, batches, since), {b.run_id for b in batches})
    # Those whose last check kept what a revisit needs are checked after the state is up
    # to date, from what was kept and the new rows (dwatch.validate.revisits).
    vr = report.validation_run_id
    quick, again = _split(con, again, batches, vr) if use_state else ([], again)
    plan = _plan_state(con, batches + again, report, since) if use_state else None
    setting = replace(setting, since=since, started_at=datetime.now(UTC))
    if plan is not None and plan.usable:
        setting = replace(setting, history=(state.HIST, state.STATE_NOW, state.HIST_SEQ))
    watch.lap("state")
    ran: dict[str, list[Check]] = {}
    found: dict[str, Findings] = {}
    report.batches = _validate(con, batches + again, setting, report.validation_run_id, ran, found)
    _forget_moved(con, report.batches, report.validation_run_id)
    for br in report.batches:
        moved, outcomes = early.get(br.ingest_run_id or "", (0, []))
        br.rows_quarantined += moved
        br.outcomes[:0] = outcomes
    watch.lap("check batches")
    current = plan is not None and _update_state(con, plan, report) and plan.keep
    watch.lap("state")
    if quick:
        report.batches += _revisit(con, quick, batches, setting, current, found, report, ran)
        watch.lap("old batches from what was kept")
    if _count(con, "SELECT count(*) FROM disclosure_events"):
        store_setting = replace(
            setting, history=(state.STATE, state.STATE, state.STATE) if current else None
        )
        report.store_checks = _validate_store(con, store_setting, report.validation_run_id, ran)
    report.open_coverage_gaps = _count(con, "SELECT count(*) FROM coverage_gaps")
    report.alerts_flagged = mark_coverage(con)
    watch.lap("store-wide")
    if build_docs:
        _data_docs(Path(docs_dir or config.docs_dir), ran, report, docs_in_background)
        watch.lap("Data Docs")
    return report


def _plan_state(
    con: duckdb.DuckDBPyConnection,
    batches: list[Batch],
    report: ValidationReport,
    since: dict[str, int],
) -> state.StatePlan | None:
    """How the silence checks read each source's history (None: the state cannot be read,
    they read the store)."""
    ids = [b.run_id for b in batches if b.table == state.TABLE]
    try:
        plan = state.prepare(con, ids, since.get(state.TABLE, 0))
    except duckdb.Error:
        log.exception("the validation state could not be read; reading history")
        report.state_notes.append("validation state unreadable: history read")
        return None
    report.state_notes.extend(plan.notes())
    return plan


def _update_state(
    con: duckdb.DuckDBPyConnection, plan: state.StatePlan, report: ValidationReport
) -> bool:
    """Bring the state up to date; False when it could not be (the next run rebuilds it)."""
    try:
        state.update(con, plan, report.validation_run_id)
    except duckdb.Error:
        log.exception("the validation state could not be updated")
        report.state_notes.append("validation state not updated: the next run rebuilds it")
        return False
    return True


def _data_docs(
    docs: Path, ran: dict[str, list[Check]], report: ValidationReport, background: bool
) -> None:
    """The suites and verdicts as GX records and Data Docs: built here, or by a process of
    its own that the run does not wait for (``docs_job``)."""
    from dwatch.errors import DWatchError
    from dwatch.validate.docs_job import build_pending, start_job, write_job

    write_job(docs, ran, report)
    report.docs_index = docs / "index.html"
    if background:
        report.docs_note = f"being built by process {start_job(docs)}"
        return
    try:
        report.docs_index = build_pending(docs)
    except DWatchError:
        raise  # Great Expectations could not start: the installation needs fixing
    except Exception as exc:  # the verdicts stand; the pages are a view of them
        report.docs_index = None
        report.docs_error = f"{type(exc).__name__}: {exc} (into {docs})"


def _sources_of(
    con: duckdb.DuckDBPyConnection, batches: list[Batch], since: dict[str, int]
) -> dict[str, list[str]]:
    """Each source the new batches hold rows of, with those batches (``since``: per
    table, no row of theirs has a lower rowid)."""
    sources: dict[str, list[str]] = {}
    schema = load_schema()
    for table in (schema.events, schema.items):
        ids = [b.run_id for b in batches if b.table == table.name]
        if not ids or "source_system" not in table.names:
            continue
        for run_id, source in con.execute(
            f"SELECT DISTINCT ingest_run_id, source_system FROM {table.name}"
            f" WHERE rowid >= {int(since.get(table.name, 0))}"
            " AND ingest_run_id IN (SELECT unnest(?::VARCHAR[])) AND source_system IS NOT NULL"
            " ORDER BY 1, 2",
            [ids],
        ).fetchall():
            sources.setdefault(source, []).append(run_id)
    return sources


def _count(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    # fetchall, not fetchone: a half-read DuckDB result blocks the caller's next register().
    rows = con.execute(sql).fetchall()
    return int(rows[0][0]) if rows and rows[0][0] is not None else 0


def _setting(config: ValidationConfig) -> Setting:
    from dwatch.validate.setwise import Citations, Setting
    from dwatch.validate.sources import load_source_suites

    schema = load_schema()
    suites = load_source_suites(config.sources_dir, schema.events)
    windows: dict[str, timedelta] = {"*": config.silence_window}
    windows.update({s: suite.silence_window for s, suite in suites.items() if suite.silence_window})
    return Setting(
        schema.vocabularies, suites, windows, Citations(), config, config.now or datetime.now(UTC)
    )


def _validate(
    con: duckdb.DuckDBPyConnection,
    batches: list[Batch],
    setting: Setting,
    validation_run_id: str,
    ran: dict[str, list[Check]],
    found: dict[str, Findings] | None = None,
) -> list[BatchReport]:
    """Every table's batches checked set-wise, then judged in load order (``found``: what
    the checks found, per table)."""
    schema = load_schema()
    by_run: dict[str, BatchReport] = {}
    for table in (schema.events, schema.items):
        group = [b for b in batches if b.table == table.name]
        if group:
            for br in _validate_set(con, table, group, setting, validation_run_id, ran, found):
                by_run[br.ingest_run_id or ""] = br
    return [by_run[b.run_id] for b in batches]


def _split(
    con: duckdb.DuckDBPyConnection, again: list[Batch], batches: list[Batch], vr: str
) -> tuple[list[Batch], list[Batch]]:
    from dwatch.validate.revisits import split

    try:
        return split(con, again, batches, vr)
    except duckdb.Error:
        log.exception("what old batches kept could not be read; reading them whole")
        return [], again


def _forget_moved(
    con: duckdb.DuckDBPyConnection, reports: list[BatchReport], validation_run_id: str
) -> None:
    from dwatch.validate.revisits import forget_moved

    forget_moved(con, reports, validation_run_id)


def _revisit(
    con: duckdb.DuckDBPyConnection,
    quick: list[Batch],
    batches: list[Batch],
    setting: Setting,
    current: bool,
    found: dict[str, Findings],
    report: ValidationReport,
    ran: dict[str, list[Check]],
) -> list[BatchReport]:
    """Old batches checked again from what their last check kept; those it cannot stand
    for (or with the state not up to date) read whole, on the store as it is now."""
    from dwatch.validate.revisits import TYPES_CHECK, revisit

    reports: list[BatchReport] = []
    whole = quick
    events = found.get(state.TABLE)
    if current and events is not None:
        checks = [c for c in events.runs[0].checks if c.scope == "batch"]
        clean = TYPES_CHECK not in events.gap_errors and not any(
            events.gaps.get(TYPES_CHECK, {}).values()
        )
        pending = [b.run_id for b in batches]
        try:
            reports, whole = revisit(
                con, quick, pending, checks, clean, setting, report.validation_run_id
            )
        except duckdb.Error:
            log.exception("checking old batches from what was kept failed; reading them")
            reports, whole = [], quick
    report.state_notes.extend(
        f"old batch {br.ingest_run_id} checked again from what its last check kept"
        " (its open gaps and the new rows, not its rows)"
        for br in reports
    )
    if whole:
        report.state_notes.extend(f"old batch {b.run_id} read whole" for b in whole)
        whole_setting = replace(setting, history=None)
        reports += _validate(con, whole, whole_setting, report.validation_run_id, ran)
    return reports


def _validate_set(
    con: duckdb.DuckDBPyConnection,
    table: TableSpec,
    batches: list[Batch],
    setting: Setting,
    validation_run_id: str,
    ran: dict[str, list[Check]],
    found: dict[str, Findings] | None = None,
) -> list[BatchReport]:
    from dwatch.validate.keyranges import record_sequence_ranges
    from dwatch.validate.revisits import keep
    from dwatch.validate.setwise import find
    from dwatch.validate.verdicts import judge_in_order, record_unvalidated

    coverage_only = frozenset(b.run_id for b in batches if b.revisit_reason)
    try:
        findings = find(
            con, table, [b.run_id for b in batches], setting, coverage_only=coverage_only
        )
    except Exception as exc:
        if len(batches) > 1:
            # One bad batch must not cost the others: each alone, where a failure stays
            # with its own batch.
            log.exception("checking %d batches at once failed; one by one", len(batches))
            # Each batch's verdicts move rows: the stand-ins for history no longer hold.
            setting = replace(setting, history=None)
            return [
                br
                for b in batches
                for br in _validate_set(con, table, [b], setting, validation_run_id, ran, found)
            ]
        log.exception("validation of %s failed", batches[0].run_id)
        [batch] = batches
        br = BatchReport(
            batch.run_id, batch.kind, batch.source_file, [], revisit_reason=batch.revisit_reason
        )
        br.error = f"{type(exc).__name__}: {exc}"
        record_unvalidated(con, br, table, None, validation_run_id)
        return [br]
    for run in findings.runs:
        ran.setdefault(run.suite, run.checks)
    judged = judge_in_order(con, table, batches, findings, setting.config, validation_run_id)
    # Later runs' sequence_no uniqueness check reads only batches whose range overlaps.
    record_sequence_ranges(con, findings.survey.seq_ranges)
    if table.name == state.TABLE:
        if found is not None:
            found[table.name] = findings
        try:
            keep(con, judged, findings, validation_run_id, setting.started_at)
        except duckdb.Error:  # a later revisit then reads the batches whole
            log.exception("keeping what the checks found failed")
    return judged


def _validate_store(
    con: duckdb.DuckDBPyConnection,
    setting: Setting,
    validation_run_id: str,
    ran: dict[str, list[Check]],
) -> BatchReport:
    """Store-wide: no source stopped sending while the others went on (one query)."""
    from dwatch.validate.setwise import list_gaps
    from dwatch.validate.suites import trailing_silence_check
    from dwatch.validate.verdicts import gap_outcomes

    store = BatchReport(None, "events", "(whole store)", [])
    check = trailing_silence_check(
        "disclosure_events",
        setting.windows,
        setting.config.silence_rhythm_factor,
        setting.history[1] if setting.history else None,
        state.FLOWS if setting.history else None,
    )
    ran[STORE_SUITE] = [check]
    base = Outcome(STORE_SUITE, check.name, "batch", False, None)
    store.rows_checked = _count(con, "SELECT count(*) FROM disclosure_events")
    try:
        table = load_schema().events
        gaps = list_gaps(con, table, [], check).get(None, [])
        store.outcomes = gap_outcomes(base, gaps, setting.config)
    except Exception as exc:
        log.exception("store-wide validation failed")
        store.error = f"{type(exc).__name__}: {exc}"
        base.message = f"could not be evaluated: {store.error}"
        store.outcomes = [base]
    write_outcomes(con, store.outcomes, validation_run_id)
    return store
