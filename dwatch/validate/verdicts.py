"""Verdicts and quarantine: each batch's outcomes from the set-wise findings, in load order.

The checks ran once for all batches (``setwise``); here each batch gets its own outcomes,
its failing rows move to quarantine and its counts move with them, one transaction per
batch, in the order the batches were loaded. Judging them one at a time in that order
is what the verdicts mean (the first loaded copy of a key stays; a batch's silence is
measured on the rows still loaded when it is judged), so where an earlier batch of the
same run moved rows, what those rows could change is counted again for the later batch:
duplicates (only ever fewer) and the batch-level checks of the sources that lost rows.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta

import duckdb

from dwatch.schema import TableSpec, load_schema
from dwatch.store import transaction
from dwatch.validate.config import ValidationConfig
from dwatch.validate.quarantine import quarantine_impossible_instants, quarantine_rows
from dwatch.validate.report import BatchReport, Outcome, write_outcomes
from dwatch.validate.selecting import Batch
from dwatch.validate.setwise import (
    Findings,
    GapRow,
    SuiteRun,
    Survey,
    count_for_batch,
    list_gaps,
)
from dwatch.validate.setwise import survey as take_survey
from dwatch.validate.suites import Check

log = logging.getLogger(__name__)


def judge_in_order(
    con: duckdb.DuckDBPyConnection,
    table: TableSpec,
    batches: list[Batch],
    findings: Findings,
    config: ValidationConfig,
    validation_run_id: str,
) -> list[BatchReport]:
    """Outcomes, quarantine and counts per batch, one transaction each, in load order."""
    reports: list[BatchReport] = []
    moved: set[str | None] = set()  # sources an earlier batch of this run moved rows of
    clean: list[BatchReport] = []  # judged, nothing to move: recorded together
    for batch in batches:
        br = BatchReport(
            batch.run_id,
            batch.kind,
            batch.source_file,
            findings.survey.sources(batch.run_id),
            rows_checked=findings.survey.rows.get(batch.run_id, 0),
            revisit_reason=batch.revisit_reason,
        )
        reports.append(br)
        try:
            outcomes, failing = _outcomes(con, table, batch, br, findings, config, moved)
            if not failing:
                br.outcomes = outcomes
                clean.append(br)
                continue
            _record_together(con, clean, table, findings.survey, validation_run_id)
            with transaction(con):
                br.rows_quarantined = quarantine_rows(con, batch, table, failing)
                write_outcomes(con, outcomes, validation_run_id)
            br.outcomes = outcomes
        except Exception as exc:  # one bad batch must not stop the others
            log.exception("validation of %s failed", batch.run_id)
            br.error = f"{type(exc).__name__}: {exc}"
            record_unvalidated(con, br, table, findings.survey, validation_run_id)
        if br.rows_quarantined:
            moved.update(br.sources or [None])
    _record_together(con, clean, table, findings.survey, validation_run_id)
    return reports


def _record_together(
    con: duckdb.DuckDBPyConnection,
    clean: list[BatchReport],
    table: TableSpec,
    survey: Survey,
    validation_run_id: str,
) -> None:
    """The outcomes of batches with no row to move, in one insert (one commit, not one each)."""
    if not clean:
        return
    try:
        with transaction(con):
            write_outcomes(con, [o for br in clean for o in br.outcomes], validation_run_id)
    except Exception as exc:
        log.exception("recording the outcomes of %d batches failed", len(clean))
        for br in clean:
            br.error = f"{type(exc).__name__}: {exc}"
            record_unvalidated(con, br, table, survey, validation_run_id)
    clean.clear()


def _outcomes(
    con: duckdb.DuckDBPyConnection,
    table: TableSpec,
    batch: Batch,
    br: BatchReport,
    findings: Findings,
    config: ValidationConfig,
    moved: set[str | None],
) -> tuple[list[Outcome], list[tuple[Check, str | None]]]:
    outcomes: list[Outcome] = []
    failing: list[tuple[Check, str | None]] = []
    single_source = br.sources[0] if len(br.sources) == 1 else None
    for run in findings.runs:
        if run.source is not None and (run.source not in br.sources or batch.revisit_reason):
            continue
        rows = (
            br.rows_checked
            if run.source is None
            else findings.survey.cells.get((batch.run_id, run.source), 0)
        )
        for check in run.checks:
            if batch.revisit_reason and check.scope == "row":
                continue  # checked again for coverage only
            base = Outcome(
                run.suite,
                check.name,
                check.scope,
                False,
                batch.run_id,
                source_system=run.source or single_source,
                element_count=rows,
            )
            if check.scope == "row":
                outcomes.append(_row_verdict(con, table, batch, run, check, base, findings, moved))
                if base.unexpected_count and check.action == "quarantine":
                    failing.append((check, run.source))
            else:
                outcomes.extend(
                    _batch_verdict(con, table, batch, check, base, findings, config, moved)
                )
    return outcomes, failing


def _row_verdict(
    con: duckdb.DuckDBPyConnection,
    table: TableSpec,
    batch: Batch,
    run: SuiteRun,
    check: Check,
    base: Outcome,
    findings: Findings,
    moved: set[str | None],
) -> Outcome:
    key = (run.suite, run.source, check.name)
    if key in findings.row_errors:
        base.message = f"could not be evaluated: {findings.row_errors[key]}"
        return base
    cells = findings.row_counts.get(key, {})
    n = sum(v for (run_id, _), v in cells.items() if run_id == batch.run_id)
    if n and check.cross_batch and moved:
        # An earlier batch's rows have left since the count: fewer copies may remain.
        n = sum(count_for_batch(con, table, batch.run_id, run, check).values())
    base.unexpected_count = n
    base.success = n == 0
    if base.success:
        return base
    base.observed = json.dumps({"unexpected_rows_sql": n})
    verb = "quarantined" if check.action == "quarantine" else "kept (action: record)"
    base.message = f"{n} row(s) fail: {check.description}; {verb}"
    return base


def _batch_verdict(
    con: duckdb.DuckDBPyConnection,
    table: TableSpec,
    batch: Batch,
    check: Check,
    base: Outcome,
    findings: Findings,
    config: ValidationConfig,
    moved: set[str | None],
) -> list[Outcome]:
    if check.name in findings.gap_errors:
        base.message = f"could not be evaluated: {findings.gap_errors[check.name]}"
        return unknown_coverage(base, findings.survey.windows.get(batch.run_id, []))
    gaps = findings.gaps.get(check.name, {}).get(batch.run_id, [])
    if moved & set(findings.survey.sources(batch.run_id)):
        # Rows of these sources left with an earlier batch: neighbours and silences change.
        live = findings.live.get(check.name, check)
        gaps = list_gaps(con, table, [batch.run_id], live).get(batch.run_id, [])
    return gap_outcomes(base, gaps, config)


def gap_outcomes(base: Outcome, gaps: list[GapRow], config: ValidationConfig) -> list[Outcome]:
    """One failed outcome per gap (its source and window), or one passed outcome."""
    base.unexpected_count = len(gaps)
    if not gaps:
        base.success = True
        return [base]
    limit = max(1, config.max_gap_rows)
    out = []
    for source_system, start, end, observed, message in gaps[:limit]:
        o = Outcome(**{**base.__dict__})
        o.source_system, o.window_start, o.window_end = source_system, start, end
        o.observed, o.message = observed, message
        out.append(o)
    if len(gaps) > limit:
        more = Outcome(**{**base.__dict__})
        more.message = f"more than {limit} gaps; only the first {limit} are listed"
        out.append(more)
    return out


def unknown_coverage(
    base: Outcome, windows: list[tuple[str | None, datetime | None, datetime | None]]
) -> list[Outcome]:
    """A batch check that could not run: failed, and the batch's coverage is unknown."""
    out = []
    for source_system, start, end in windows or [(None, None, None)]:
        o = Outcome(**{**base.__dict__})
        o.source_system, o.window_start, o.window_end = source_system, start, end
        out.append(o)
    return out


def record_unvalidated(
    con: duckdb.DuckDBPyConnection,
    br: BatchReport,
    table: TableSpec,
    survey: Survey | None,
    validation_run_id: str,
) -> None:
    """Validation could not run: the batch's sources and window are coverage incomplete."""
    base = Outcome(
        f"canonical.{table.name}",
        "validation_could_not_run",
        "batch",
        False,
        br.ingest_run_id,
        message=f"validation could not run: {br.error}",
    )
    windows = survey.windows.get(br.ingest_run_id or "", []) if survey else []
    if not windows and br.ingest_run_id:
        try:  # the batch's sources and window, if the store can still say
            windows = take_survey(con, table, [br.ingest_run_id]).windows.get(br.ingest_run_id, [])
        except duckdb.Error:
            windows = []
    br.outcomes = unknown_coverage(base, windows)
    try:
        write_outcomes(con, br.outcomes, validation_run_id)
    except Exception:  # the report still says so; the other batches go on
        log.exception("could not record that %s was not validated", br.ingest_run_id)


def move_impossible_instants(
    con: duckdb.DuckDBPyConnection,
    batches: list[Batch],
    now: datetime,
    validation_run_id: str,
    since: int = 0,
) -> dict[str, tuple[int, list[Outcome]]]:
    """Rows holding an instant no disclosure can have leave first, each batch on its own.

    Ingest refuses them now; a store written before it did may still hold them, and the
    checks below (and planning, detection, the report) read instants as dates. The window
    is ingest's (schemas/canonical.yaml: instants), its end measured from the later of the
    batch's ingest and now (a validation clock set back must not undo what ingest let in).
    One query finds the batches holding any; returns, per such batch, the rows moved and
    the outcomes recorded. ``since``: no event of the batches has a lower rowid.
    """
    schema = load_schema()
    lead = schema.instants_ahead_of_ingest
    ids = [b.run_id for b in batches]
    # Every batch's window ends at now + lead or later, so when the batches' earliest and
    # latest instants lie within [not before, now + lead], none holds an impossible one
    # (an infinite instant is the earliest or latest): one aggregate, no join by batch.
    # Compared in SQL: an impossible instant may not even be a Python datetime.
    [(within,)] = con.execute(
        "SELECT coalesce(min(occurred_at) >= ? AND max(occurred_at) <= ?::TIMESTAMPTZ + ?, TRUE)"
        " FROM disclosure_events"
        f" WHERE rowid >= {int(since)} AND ingest_run_id IN (SELECT unnest(?::VARCHAR[]))",
        [schema.instants_not_before, now, lead, ids],
    ).fetchall()
    if within:
        return {}
    suspects = {
        r[0]
        for r in con.execute(
            "SELECT DISTINCT e.ingest_run_id FROM disclosure_events e"
            " JOIN ingest_runs r ON r.run_id = e.ingest_run_id"
            f" WHERE e.rowid >= {int(since)} AND e.ingest_run_id IN (SELECT unnest(?::VARCHAR[]))"
            " AND (NOT isfinite(e.occurred_at)"
            " OR e.occurred_at < ? OR e.occurred_at > greatest(?, coalesce(r.started_at, ?)) + ?)",
            [ids, schema.instants_not_before, now, now, lead],
        ).fetchall()
    }
    found: dict[str, tuple[int, list[Outcome]]] = {}
    for batch in (b for b in batches if b.run_id in suspects):
        table = schema.events if batch.kind == "events" else schema.items
        try:
            found[batch.run_id] = _move_instants(con, batch, table, now, lead, validation_run_id)
        except Exception:  # the batch's own validation records what it can
            log.exception("moving impossible instants of %s failed", batch.run_id)
    return found


def _move_instants(
    con: duckdb.DuckDBPyConnection,
    batch: Batch,
    table: TableSpec,
    now: datetime,
    lead: timedelta,
    validation_run_id: str,
) -> tuple[int, list[Outcome]]:
    latest = max(now, batch.started_at or now) + lead
    with transaction(con):
        per_field = quarantine_impossible_instants(
            con, batch, table, load_schema().instants_not_before, latest
        )
        outcomes = [
            Outcome(
                f"canonical.{table.name}",
                f"expect_plausible_instants({name})",
                "row",
                False,
                batch.run_id,
                unexpected_count=n,
                message=f"{n} row(s) with {name} outside the plausible window"
                " (schemas/canonical.yaml: instants); stored before ingest checked"
                " instants; quarantined (out_of_range)",
            )
            for name, n in per_field.items()
        ]
        write_outcomes(con, outcomes, validation_run_id)
    return sum(per_field.values()), outcomes
