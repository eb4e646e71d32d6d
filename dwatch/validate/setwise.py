"""Running the checks set-wise: one DuckDB query for every batch of a validation run.

Row checks (not null, accepted values, bounds, TIN shapes, duplicates, per-source
expectations...) become one aggregate over the rows of all batches at once, counted by
batch and source. Batch-level checks (column types, sequence gaps, silences) are per
window: each runs as one query over every batch's windows, each batch judged against its
own place in load order (``suites``). Nothing here writes to the store.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import duckdb

from dwatch.schema import TableSpec
from dwatch.validate.config import ValidationConfig
from dwatch.validate.coverage import silence_pass_max_query
from dwatch.validate.keyranges import KeyRuns, SeqRange, runs_to_read
from dwatch.validate.quarantine import batch_relation
from dwatch.validate.sources import SourceSuite
from dwatch.validate.suites import BatchFacts, Check, derive_checks, for_duckdb, sql_literal

log = logging.getLogger(__name__)

# The silence check (dwatch.validate.coverage._silence_check).
SILENCE_CHECK = "expect_source_not_silent(occurred_at)"

# (suite, the source a per-source suite speaks for, check name)
CheckKey = tuple[str, str | None, str]
# (ingest run, source_system)
Cell = tuple[str, str | None]
Window = tuple[str | None, datetime | None, datetime | None]
# source_system, window_start, window_end, observed, message
GapRow = tuple[str | None, Any, Any, str | None, str | None]


@dataclass
class Survey:
    """What the checks need to know of the batches: sizes, sources, windows, citations."""

    rows: dict[str, int] = field(default_factory=dict)
    cells: dict[Cell, int] = field(default_factory=dict)
    windows: dict[str, list[Window]] = field(default_factory=dict)
    citations: tuple[str, ...] = ()
    # Rowid ranges holding every row of the batches (valid until the store is written).
    rowids: tuple[tuple[int, int], ...] = ()
    # Lowest and highest sequence_no per batch and source (events).
    seq_ranges: list[SeqRange] = field(default_factory=list)

    def sources(self, run_id: str) -> list[str]:
        return sorted(s for r, s in self.cells if r == run_id and s is not None)


@dataclass(frozen=True)
class SuiteRun:
    """One suite over the batches: the canonical one (source None) or a source's own."""

    suite: str
    source: str | None
    checks: list[Check]


def survey(
    con: duckdb.DuckDBPyConnection,
    table: TableSpec,
    run_ids: list[str],
    since: int = 0,
    old: frozenset[str] = frozenset(),
) -> Survey:
    """One pass over the batches' rows: rows and time window per batch and source.

    ``since``: no row of the batches but those in ``old`` (validated before, checked
    again; they lie anywhere) has a lower rowid (``selecting.first_rows``)."""
    found = Survey()
    ranges: list[tuple[int, int]] = []
    new = [r for r in run_ids if r not in old]
    parts = [(new, since), ([r for r in run_ids if r in old], 0)]
    for ids, bound in parts:
        if ids:
            for run_id, src, n, start, end, lo, hi, first_no, last_no in con.execute(
                _survey_sql(table, bound), [ids]
            ).fetchall():
                found.rows[run_id] = found.rows.get(run_id, 0) + int(n)
                found.cells[(run_id, src)] = int(n)
                found.windows.setdefault(run_id, []).append((src, start, end))
                ranges.append((int(lo), int(hi)))
                if src is not None and first_no is not None:
                    found.seq_ranges.append((run_id, src, int(first_no), int(last_no)))
    found.rowids = merged_ranges(ranges)
    if "legal_authority" in table.names and new:  # for the row checks: new batches only
        found.citations = tuple(
            r[0]
            for r in con.execute(
                f"SELECT DISTINCT legal_authority FROM {table.name}"
                f" WHERE rowid >= {int(since)} AND ingest_run_id IN (SELECT unnest(?::VARCHAR[]))"
                " AND legal_authority IS NOT NULL ORDER BY 1",
                [new],
            ).fetchall()
        )
    return found


def _survey_sql(table: TableSpec, since: int) -> str:
    source = "source_system" if "source_system" in table.names else "NULL::VARCHAR"
    times = (
        "min(occurred_at), max(occurred_at)"
        if "occurred_at" in table.names
        else "NULL::TIMESTAMPTZ, NULL::TIMESTAMPTZ"
    )
    numbers = (
        "min(sequence_no), max(sequence_no)"
        if "sequence_no" in table.names
        else "NULL::BIGINT, NULL::BIGINT"
    )
    return (
        f"SELECT ingest_run_id, {source}, count(*), {times}, min(rowid), max(rowid), {numbers}"
        f" FROM {table.name} WHERE rowid >= {int(since)}"
        " AND ingest_run_id IN (SELECT unnest(?::VARCHAR[])) GROUP BY 1, 2"
    )


# Ranges closer than a row group are read as one (a row group is what DuckDB skips), and
# past this many the batches are read as one span.
ROW_GROUP = 122_880
MAX_RANGES = 16


def merged_ranges(ranges: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """Rowid ranges as few disjoint spans covering every one of them."""
    spans: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if spans and lo <= spans[-1][1] + ROW_GROUP:
            spans[-1] = (spans[-1][0], max(spans[-1][1], hi))
        else:
            spans.append((lo, hi))
    if len(spans) > MAX_RANGES:
        return ((spans[0][0], max(hi for _, hi in spans)),)
    return tuple(spans)


def canonical_checks(
    table: TableSpec,
    vocabularies: dict[str, tuple[str, ...]],
    facts: BatchFacts,
    config: ValidationConfig,
) -> list[Check]:
    return derive_checks(
        table,
        vocabularies,
        facts,
        clock_skew=config.clock_skew,
        occurred_at_floor=config.occurred_at_floor,
        sequence_time_tolerance=config.sequence_time_tolerance,
        action_for=config.action_for,
    )


def make_facts(
    run_ids: list[str],
    now: datetime,
    malformed: tuple[str, ...],
    windows: dict[str, timedelta],
    config: ValidationConfig,
    history: tuple[str, str, str] | None = None,
    key_runs: KeyRuns | None = None,
    since: int = 0,
    new: frozenset[str] = frozenset(),
) -> BatchFacts:
    """``new``: the batches whose rows lie from ``since`` on (a duplicate check reading
    only their rows reads from there)."""
    key_runs = key_runs or {}
    return BatchFacts(
        run_ids[-1],
        None,
        now,
        malformed,
        windows,
        config.silence_rhythm_factor,
        tuple(run_ids),
        history,
        key_runs,
        since,
        frozenset(c for c, runs in key_runs.items() if since and runs and set(runs) <= new),
    )


def suite_runs(
    table: TableSpec,
    checks: list[Check],
    suites: dict[str, SourceSuite],
    sources: set[str],
    config: ValidationConfig,
) -> list[SuiteRun]:
    """The canonical suite, then each source's own suite for the sources the batches hold."""
    runs = [SuiteRun(f"canonical.{table.name}", None, checks)]
    if table.name == "disclosure_events":
        default_action = config.action_for("default")
        for source in sorted(sources & set(suites)):
            suite = suites[source]
            runs.append(SuiteRun(suite.suite_name, source, suite.checks(table, default_action)))
    return runs


def _condition(run: SuiteRun, check: Check, run_id: str | None = None) -> str:
    """SQL: the row fails ``check`` of ``run`` (``run_id``: among the rows of that batch)."""
    predicate = check.predicate if run_id is None else check.predicate_for(run_id)
    assert predicate is not None
    if run.source is None:
        return f"({predicate})"
    return f"(b.source_system = {sql_literal(run.source)} AND ({predicate}))"


def count_row_failures(
    con: duckdb.DuckDBPyConnection,
    table: TableSpec,
    run_ids: list[str],
    runs: list[SuiteRun],
    rowids: tuple[tuple[int, int], ...] = (),
) -> tuple[dict[CheckKey, dict[Cell, int]], dict[CheckKey, str]]:
    """Failing rows of every row check, by batch and source, in one query (``rowids``: see
    ``batch_relation``).

    Returns the counts and, for a check DuckDB could not evaluate, its error (the other
    checks are then counted one query each, so one broken check costs only itself).
    """
    wanted = [
        ((run.suite, run.source, c.name), _condition(run, c))
        for run in runs
        for c in run.checks
        if c.scope == "row"
    ]
    if not wanted:
        return {}, {}
    relation = batch_relation(table.name, run_ids, rowids=rowids)
    source = "b.source_system" if "source_system" in table.names else "NULL::VARCHAR"
    # The flags first, then the counts: DuckDB plans each cross-row predicate (a subquery
    # over the table) once, as a join, before the aggregate.
    flags = ", ".join(f"{cond} AS f{i}" for i, (_, cond) in enumerate(wanted))
    counts = ", ".join(f"count_if(f{i})" for i in range(len(wanted)))
    try:
        rows = con.execute(
            f"SELECT ingest_run_id, source_system, {counts} FROM (SELECT b.ingest_run_id,"
            f" {source} AS source_system, {flags} FROM ({relation}) b) GROUP BY 1, 2"
        ).fetchall()
    except duckdb.Error:
        return _count_one_by_one(con, relation, source, wanted)
    found: dict[CheckKey, dict[Cell, int]] = {key: {} for key, _ in wanted}
    for run_id, src, *values in rows:
        for (key, _), n in zip(wanted, values, strict=True):
            if n:
                found[key][(run_id, src)] = int(n)
    return found, {}


def _count_one_by_one(
    con: duckdb.DuckDBPyConnection, relation: str, source: str, wanted: list[tuple[CheckKey, str]]
) -> tuple[dict[CheckKey, dict[Cell, int]], dict[CheckKey, str]]:
    found: dict[CheckKey, dict[Cell, int]] = {}
    errors: dict[CheckKey, str] = {}
    for key, cond in wanted:
        try:
            rows = con.execute(
                f"SELECT b.ingest_run_id, {source}, count(*) FROM ({relation}) b"
                f" WHERE {cond} GROUP BY 1, 2"
            ).fetchall()
        except duckdb.Error as exc:
            errors[key] = str(exc).splitlines()[0]
            continue
        found[key] = {(r[0], r[1]): int(r[2]) for r in rows}
    return found, errors


def count_for_batch(
    con: duckdb.DuckDBPyConnection, table: TableSpec, run_id: str, run: SuiteRun, check: Check
) -> dict[Cell, int]:
    """One row check on one batch's rows as they are now (after earlier batches' moves)."""
    source = "b.source_system" if "source_system" in table.names else "NULL::VARCHAR"
    rows = con.execute(
        f"SELECT {source}, count(*) FROM ({batch_relation(table.name, run_id)}) b"
        f" WHERE {_condition(run, check, run_id)} GROUP BY 1"
    ).fetchall()
    return {(run_id, r[0]): int(r[1]) for r in rows}


def list_gaps(
    con: duckdb.DuckDBPyConnection,
    table: TableSpec,
    run_ids: list[str],
    check: Check,
    rowids: tuple[tuple[int, int], ...] = (),
) -> dict[str | None, list[GapRow]]:
    """Every gap a batch-level check finds, by batch, in one query over all their windows
    (``rowids``: see ``batch_relation``)."""
    assert check.gap_query is not None
    relation = batch_relation(table.name, run_ids, rowids=rowids)
    found: dict[str | None, list[GapRow]] = defaultdict(list)
    for run_id, *gap in con.execute(for_duckdb(check.gap_query, relation)).fetchall():
        found[run_id].append(tuple(gap))  # type: ignore[arg-type]
    return dict(found)


@dataclass
class Findings:
    """Everything the set-wise checks found for the batches of one table."""

    survey: Survey
    runs: list[SuiteRun]
    row_counts: dict[CheckKey, dict[Cell, int]]
    row_errors: dict[CheckKey, str]
    gaps: dict[str, dict[str | None, list[GapRow]]]
    gap_errors: dict[str, str]
    # Batch-level checks reading the store itself, by name, where ``runs`` read stand-ins
    # for history written before any verdict (a batch judged after earlier ones moved rows
    # is checked again on the store as it is then).
    live: dict[str, Check] = field(default_factory=dict)
    # Per batch with a gap and source: the longest stretch the silence check let pass (an
    # upper bound) and the bounds it lies within (``coverage.silence_pass_max_query``;
    # kept for later revisits).
    pass_max: dict[Cell, tuple[float, datetime, datetime]] = field(default_factory=dict)


class Citations:
    """The citation grammar lives in dwatch.policy; loaded once per validation run."""

    def __init__(self) -> None:
        self._registry: Any = None

    def malformed(self, texts: list[str]) -> tuple[str, ...]:
        from dwatch.policy import classify_citation, load_registry

        if self._registry is None:
            self._registry = load_registry()
        return tuple(t for t in texts if classify_citation(t, self._registry)[0] == "malformed")


@dataclass(frozen=True)
class Setting:
    """What every set-wise run of one validation run shares."""

    vocabularies: dict[str, tuple[str, ...]]
    suites: dict[str, SourceSuite]
    windows: dict[str, timedelta]
    citations: Citations
    config: ValidationConfig
    now: datetime
    # The silence checks' stand-ins for history (see BatchFacts.history); None: the store.
    history: tuple[str, str, str] | None = None
    # Per table, a rowid below every row of the new batches (selecting.first_rows).
    since: dict[str, int] = field(default_factory=dict)
    # When the validation run started (orders what runs kept: dwatch.validate.revisits).
    started_at: datetime | None = None


def find(
    con: duckdb.DuckDBPyConnection,
    table: TableSpec,
    run_ids: list[str],
    setting: Setting,
    *,
    coverage_only: frozenset[str] = frozenset(),
) -> Findings:
    """Run every check of ``table``'s suites on the batches ``run_ids`` at once.

    Batches in ``coverage_only`` get the batch-level checks alone (old batches checked
    again because new rows may have filled their gaps; their rows and the rows' verdicts
    have not changed).
    """
    found = survey(con, table, run_ids, setting.since.get(table.name, 0), coverage_only)
    malformed = setting.citations.malformed(list(found.citations)) if found.citations else ()
    history = setting.history if table.name == "disclosure_events" else None
    new = [r for r in run_ids if r not in coverage_only]
    held = [r for r in new if found.rows.get(r)]
    seq = [r for r in found.seq_ranges if r[0] not in coverage_only]
    since = setting.since.get(table.name, 0)
    key_runs = runs_to_read(con, table.name, held, seq, since)
    facts = make_facts(
        run_ids,
        setting.now,
        malformed,
        setting.windows,
        setting.config,
        history,
        key_runs,
        since,
        frozenset(new),
    )
    checks = canonical_checks(table, setting.vocabularies, facts, setting.config)
    sources = {s for r, s in found.cells if s is not None and r not in coverage_only}
    runs = suite_runs(table, checks, setting.suites, sources, setting.config)
    # Nothing is written until the verdicts: the survey's rowid ranges hold every batch.
    spans = found.rowids
    row_counts, row_errors = count_row_failures(con, table, new, runs, spans) if new else ({}, {})
    gaps: dict[str, dict[str | None, list[GapRow]]] = {}
    gap_errors: dict[str, str] = {}
    for check in runs[0].checks:
        if check.scope != "batch":
            continue
        try:
            gaps[check.name] = list_gaps(con, table, run_ids, check, spans)
        except duckdb.Error as exc:
            gap_errors[check.name] = str(exc).splitlines()[0]
    pass_max = _pass_max(con, table, runs[0].checks, gaps, facts, spans)
    live: dict[str, Check] = {}
    if history is not None:
        plain = make_facts(
            run_ids,
            setting.now,
            malformed,
            setting.windows,
            setting.config,
            None,
            key_runs,
            since,
            frozenset(new),
        )
        live = {
            c.name: c
            for c in canonical_checks(table, setting.vocabularies, plain, setting.config)
            if c.scope == "batch"
        }
    return Findings(found, runs, row_counts, row_errors, gaps, gap_errors, live, pass_max)


def _pass_max(
    con: duckdb.DuckDBPyConnection,
    table: TableSpec,
    checks: list[Check],
    gaps: dict[str, dict[str | None, list[GapRow]]],
    facts: BatchFacts,
    spans: tuple[tuple[int, int], ...],
) -> dict[Cell, tuple[float, datetime, datetime]]:
    """For the batches with a gap (the ones a later run may check again): per source, the
    longest stretch the silence check let pass (empty when it cannot be known)."""
    gapped = sorted({r for found in gaps.values() for r in found if r is not None})
    if not gapped or not any(c.name == SILENCE_CHECK for c in checks):
        return {}
    query = silence_pass_max_query(table.name, facts)
    relation = batch_relation(table.name, gapped, rowids=spans)
    try:
        rows = con.execute(for_duckdb(query, relation)).fetchall()
    except duckdb.Error:
        log.exception("the longest stretches that passed could not be found")
        return {}
    return {(r[0], r[1]): (float(r[2]), r[3], r[4]) for r in rows if None not in r[2:]}
