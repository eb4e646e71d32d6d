"""What one check is: a GX expectation paired with the SQL that finds what fails it.

The building blocks the suites are made of (``suites`` for the canonical row checks,
``coverage`` for the batch-level ones, ``sources`` for per-source suites). SQL
conventions: the batch is the relation ``b`` (every column of the table plus
``dw_rowid``); GX substitutes its own batch subquery (see ``for_gx``). Values in the SQL
text are our own settings and vocabulary, quoted by ``sql_literal``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from dwatch.errors import ConfigError
from dwatch.pseudonym import TIN_CORE, TIN_PATTERN
from dwatch.schema import FieldSpec

if TYPE_CHECKING:  # Great Expectations is loaded only to build expectations (records, docs)
    from great_expectations.expectations.expectation import Expectation

Scope = Literal["row", "batch"]

# Queries are written with this token for the batch relation; ``for_gx`` turns it into GX's
# {batch} placeholder (escaping any other brace), ``for_duckdb`` into our own subquery.
BATCH_TOKEN = "__dwatch_batch__"
WITH_B = f"WITH b AS (SELECT * FROM {BATCH_TOKEN}) "
# Stands for one batch's run id in ``Check.batch_predicate``.
RUN_TOKEN = "__dwatch_run__"


def for_gx(query: str) -> str:
    """GX formats the query with str.format: double literal braces, then place {batch}."""
    return query.replace("{", "{{").replace("}", "}}").replace(BATCH_TOKEN, "{batch}")


def for_duckdb(query: str, batch_sql: str) -> str:
    return query.replace(BATCH_TOKEN, f"({batch_sql}) AS subselect")


# DuckDB's typeof() spelling of each canonical type.
DUCKDB_TYPE_NAMES = {
    "VARCHAR": "VARCHAR",
    "BIGINT": "BIGINT",
    "TIMESTAMPTZ": "TIMESTAMP WITH TIME ZONE",
    "BOOLEAN": "BOOLEAN",
    "VARCHAR[]": "VARCHAR[]",
    "DOUBLE": "DOUBLE",
}


def sql_literal(value: object) -> str:
    """A SQL literal for our own settings: str, int, float, bool, aware datetime, timedelta."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime in SQL literal")
        return f"TIMESTAMPTZ '{value.isoformat()}'"
    if isinstance(value, timedelta):
        return f"INTERVAL '{int(value.total_seconds() * 1_000_000)} microseconds'"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    raise TypeError(f"no SQL literal for {type(value).__name__}")


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def checks_for_tin(f: FieldSpec) -> bool:
    """Whether a field gets the no-TIN-shape check: every text field but ids (stored as
    pseudonyms when they carried a shape), pseudonyms themselves, and closed vocabularies
    (checked against their list)."""
    return f.type == "VARCHAR" and (f.free_text or not (f.identifier or f.pseudonym or f.strict))


def re2_tin_pattern() -> str:
    """TIN_PATTERN for DuckDB (RE2 has no look-around): boundaries become groups.

    For "does the text contain a TIN" the two are equivalent; a test compares them.
    """
    pattern = TIN_PATTERN.replace("(?<![0-9A-Za-z])", "(^|[^0-9A-Za-z])").replace(
        "(?![0-9A-Za-z])", "([^0-9A-Za-z]|$)"
    )
    if "(?<" in pattern or "(?=" in pattern or "(?!" in pattern:
        raise ConfigError(
            "dwatch.pseudonym.TIN_PATTERN uses look-around this converter does not know",
            where="dwatch/validate/checks.py: re2_tin_pattern",
            fix="extend re2_tin_pattern for the new pattern and run tests/validate",
        )
    return pattern


# Every match of TIN_CORE holds three ASCII digits in a row (its first alternative starts
# with \d{3}, its second holds \d{7}; RE2's \d is [0-9]), so a text without three digits in
# a row cannot hold a TIN. GLOB tests that far cheaper than RE2 tests the pattern (10M
# events: RE2 on every value about 3.3 ns a byte, this GLOB 0.9 at most and nearly
# nothing on values without digits), and RE2 runs only on the texts it lets through.
# Derived for this TIN_CORE only: any other pattern is tested by RE2 alone.
_TIN_CORE_ANALYSED = r"\d{3}(?: ?[-./] ?| )?\d{2}(?: ?[-./] ?| )?\d{4}|\d{2} ?[-./] ?\d{7}"
TIN_NEEDS_GLOB = "*[0-9][0-9][0-9]*"


def sql_has_tin(expr: str) -> str:
    """SQL: TRUE when the text ``expr`` holds an SSN/TIN-shaped string, FALSE otherwise
    (NULL included), as ``expr IS NOT NULL AND regexp_matches(expr, re2_tin_pattern())``;
    RE2 runs only where the GLOB pre-test (``TIN_NEEDS_GLOB``) lets it (a CASE: DuckDB
    evaluates both sides of an AND in a projection)."""
    pattern = sql_literal(re2_tin_pattern())
    if TIN_CORE != _TIN_CORE_ANALYSED:
        return f"{expr} IS NOT NULL AND regexp_matches({expr}, {pattern})"
    return (
        f"CASE WHEN {expr} GLOB {sql_literal(TIN_NEEDS_GLOB)}"
        f" THEN regexp_matches({expr}, {pattern}) ELSE FALSE END"
    )


# Our own expectation class (dwatch.validate.gx_duckdb); every other name is GX's own.
QUERY_EXPECTATION = "ExpectQueryToReturnNoRows"


@dataclass(frozen=True)
class GxSpec:
    """A Great Expectations expectation as data: its class and arguments. Checking runs on
    the SQL alone; GX is imported only when ``build`` is called (its records and Data Docs),
    and a spec travels as JSON to a process that builds the docs."""

    class_name: str  # in great_expectations.expectations, or QUERY_EXPECTATION
    kwargs: dict[str, Any]

    def build(self) -> Expectation:
        if self.class_name == QUERY_EXPECTATION:
            from dwatch.validate.gx_duckdb import ExpectQueryToReturnNoRows

            return ExpectQueryToReturnNoRows(**self.kwargs)
        import great_expectations as gx

        return getattr(gx.expectations, self.class_name)(**self.kwargs)


@dataclass(frozen=True)
class Check:
    """One expectation, with the SQL that finds what fails it."""

    expectation_type: str  # GX snake_case name, or our own for custom checks
    field: str | None
    scope: Scope
    description: str
    gx: GxSpec
    # row checks: boolean SQL over b, TRUE when the row fails
    predicate: str | None = None
    # batch checks: SELECT over {batch} returning ingest_run_id, source_system,
    # window_start, window_end, observed (JSON) and message: one row per gap, for every
    # batch of {batch} at once (each judged against its own place in load order)
    gap_query: str | None = None
    action: str = "record"  # row checks: quarantine | record
    check_id: str = ""  # the key used in row_actions settings
    # Row checks whose verdict on a row depends on rows of other batches (duplicates): a
    # batch judged after an earlier one moved rows to quarantine is counted again.
    cross_batch: bool = False
    # ``predicate`` for the rows of one batch only, RUN_TOKEN standing for its run id: a
    # cross-row check then reads only the rows that can decide that batch's rows.
    batch_predicate: str | None = None

    def predicate_for(self, run_id: str) -> str | None:
        """``predicate`` as it decides the rows of the batch ``run_id`` (same verdicts)."""
        if self.batch_predicate is None:
            return self.predicate
        return self.batch_predicate.replace(RUN_TOKEN, sql_literal(run_id))

    @property
    def name(self) -> str:
        """The expectation as recorded in validation_results (type and field)."""
        return f"{self.expectation_type}({self.field})" if self.field else self.expectation_type

    def build(self) -> Expectation:
        """The Great Expectations expectation (imports GX)."""
        return self.gx.build()


@dataclass(frozen=True)
class BatchFacts:
    """What the checks of one batch need to know beyond the schema and settings."""

    run_id: str | None
    run_started_at: datetime | None
    now: datetime
    malformed_citations: tuple[str, ...] = ()
    # source_system -> silence window (per-source suites may override the default)
    silence_windows: dict[str, timedelta] = field(default_factory=dict)
    silence_rhythm_factor: float = 8.0
    # Every batch the checks cover: all batches of a validation run are checked at once
    # (empty = run_id alone). Batch-level checks judge each against its own load order.
    run_ids: tuple[str, ...] = ()
    # The silence and sequence gap checks read (rows, state, numbered) instead of the
    # table's history: rows stands in for the table (new rows, each source's last event,
    # the whole history of reopened sources), state holds the rest of each source's
    # statistics, numbered stands in for the table by sequence number (new rows, each
    # source's highest numbered event, reopened sources whole): dwatch.validate.state.
    history: tuple[str, str, str] | None = None
    # Duplicate checks (by check id) that read only these runs' stored rows, not the whole
    # table: those whose key ranges overlap the batches' (dwatch.validate.keyranges).
    key_runs: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # No row of the batches the row checks count has a lower rowid (selecting.first_rows).
    since: int = 0
    # Duplicate checks (by check id) whose ``key_runs`` are only those batches: their
    # stored rows are read from ``since`` on (run ids skip no row groups, rowids do).
    key_runs_new: frozenset[str] = frozenset()

    def runs_sql(self, column: str) -> str:
        """SQL: ``column`` names one of the runs the row checks cover."""
        runs = self.run_ids or (self.run_id,)
        if len(runs) == 1:
            return f"{column} = {sql_literal(runs[0])}"
        return f"{column} IN ({', '.join(sql_literal(r) for r in runs)})"


def _meta(check_name: str) -> dict[str, str]:
    return {"dwatch_check": check_name}


def _custom(
    expectation_type: str,
    field_name: str | None,
    scope: Scope,
    description: str,
    query: str,
    *,
    predicate: str | None = None,
    check_id: str | None = None,
    cross_batch: bool = False,
    batch_predicate: str | None = None,
) -> Check:
    """A check GX runs as a query: row checks also carry the predicate that picks the rows."""
    name = f"{expectation_type}({field_name})" if field_name else expectation_type
    if scope == "row" and predicate is None:
        raise ValueError(f"row check {name} needs a predicate")
    spec = GxSpec(
        QUERY_EXPECTATION,
        {"unexpected_rows_query": for_gx(query), "description": description, "meta": _meta(name)},
    )
    if scope == "row":
        return Check(
            expectation_type,
            field_name,
            scope,
            description,
            spec,
            predicate=predicate,
            check_id=check_id or expectation_type,
            cross_batch=cross_batch,
            batch_predicate=batch_predicate,
        )
    return Check(expectation_type, field_name, scope, description, spec, gap_query=query)


def _native(
    class_name: str,
    expectation_type: str,
    column: str,
    description: str,
    predicate: str,
    check_id: str,
    **kwargs: object,
) -> Check:
    """A check GX knows by ``class_name`` (in great_expectations.expectations)."""
    name = f"{expectation_type}({column})"
    spec = GxSpec(
        class_name,
        {"column": column, "meta": _meta(name), "description": description, **kwargs},
    )
    return Check(
        expectation_type, column, "row", description, spec, predicate=predicate, check_id=check_id
    )


def _row_query(predicate: str) -> str:
    return WITH_B + f"SELECT * FROM b WHERE {predicate}"
