"""Expectation suites derived from the canonical schema (never written a second time).

Each ``Check`` pairs one Great Expectations expectation (the verdict, the counts, the Data
Docs page) with the SQL predicate that picks the failing rows of a batch (for quarantine,
and to cross-check GX's count), or, for batch-level checks, a query listing each gap with
the source and time window it speaks for. From the schema:

- ``required``                  -> not null
- ``type``                      -> column types of the batch match (one batch-level check)
- ``vocabulary`` + ``strict``   -> value in the accepted set (event_type, channel)
- ``min``                       -> value at least min (record_count >= 1)
- ``VARCHAR[]`` + ``required``  -> list not empty (data_elements)
- text (free text, codes; not ids) -> no SSN/TIN-shaped strings (dwatch.pseudonym.TIN_PATTERN)
- ``TIMESTAMPTZ``               -> not before the configured floor, not after now + clock skew
- ``key``                       -> unique key (event_id unique per source); the first
                                   loaded copy stays, later copies fail
- events' ``legal_authority``   -> parses under the citation grammar of dwatch.policy
- events' ``sequence_no``       -> unique per source (row), no gaps and no time running
                                   backwards (batch)
- events' ``occurred_at``       -> the source did not go silent longer than its window

SQL conventions: the batch is the relation ``b`` (every column of the table plus
``dw_rowid``); GX substitutes its own batch subquery (see ``for_gx``). Values in the SQL
text are our own settings and vocabulary, quoted by ``sql_literal``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Literal

import great_expectations as gx
from great_expectations.expectations.expectation import Expectation

from dwatch.errors import ConfigError
from dwatch.pseudonym import TIN_PATTERN
from dwatch.schema import FieldSpec, TableSpec
from dwatch.validate.gx_duckdb import ExpectQueryToReturnNoRows

Scope = Literal["row", "batch"]

# Queries are written with this token for the batch relation; ``for_gx`` turns it into GX's
# {batch} placeholder (escaping any other brace), ``for_duckdb`` into our own subquery.
BATCH_TOKEN = "__dwatch_batch__"
WITH_B = f"WITH b AS (SELECT * FROM {BATCH_TOKEN}) "


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
            where="dwatch/validate/suites.py: re2_tin_pattern",
            fix="extend re2_tin_pattern for the new pattern and run tests/validate",
        )
    return pattern


@dataclass(frozen=True)
class Check:
    """One expectation, with the SQL that finds what fails it."""

    expectation_type: str  # GX snake_case name, or our own for custom checks
    field: str | None
    scope: Scope
    description: str
    build: Callable[[], Expectation]
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

    @property
    def name(self) -> str:
        """The expectation as recorded in validation_results (type and field)."""
        return f"{self.expectation_type}({self.field})" if self.field else self.expectation_type


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
) -> Check:
    """A check GX runs as a query: row checks also carry the predicate that picks the rows."""
    name = f"{expectation_type}({field_name})" if field_name else expectation_type
    if scope == "row" and predicate is None:
        raise ValueError(f"row check {name} needs a predicate")

    def build() -> Expectation:
        return ExpectQueryToReturnNoRows(
            unexpected_rows_query=for_gx(query), description=description, meta=_meta(name)
        )

    if scope == "row":
        return Check(
            expectation_type,
            field_name,
            scope,
            description,
            build,
            predicate=predicate,
            check_id=check_id or expectation_type,
            cross_batch=cross_batch,
        )
    return Check(expectation_type, field_name, scope, description, build, gap_query=query)


def _native(
    expectation: Callable[..., Expectation],
    expectation_type: str,
    column: str,
    description: str,
    predicate: str,
    check_id: str,
    **kwargs: object,
) -> Check:
    name = f"{expectation_type}({column})"

    def build() -> Expectation:
        return expectation(column=column, meta=_meta(name), description=description, **kwargs)

    return Check(
        expectation_type, column, "row", description, build, predicate=predicate, check_id=check_id
    )


def _row_query(predicate: str) -> str:
    return WITH_B + f"SELECT * FROM b WHERE {predicate}"


def _unique_predicate(table: str, key: Sequence[str], facts: BatchFacts) -> str:
    """SQL over b: TRUE for every copy of a key but the first loaded.

    First loaded = earliest ingest run (started_at, then run id), then earliest row of the
    run. Uncorrelated, so DuckDB computes it once for every batch validated: the keys the
    batches hold are looked up in the table (a scan of the key columns, no hash table of
    the history), and only keys held more than once are ranked. NULL keys are grouped but
    never match USING.
    """
    cols = ", ".join(ident(k) for k in key)
    o_cols = ", ".join(f"o.{ident(k)}" for k in key)
    t = ident(table)
    runs = facts.runs_sql("ingest_run_id")
    return (
        "b.dw_rowid IN (SELECT r.row_id FROM ("
        f" SELECT o.rowid AS row_id, o.ingest_run_id, row_number() OVER (PARTITION BY {o_cols}"
        " ORDER BY coalesce(ro.started_at, '-infinity'::TIMESTAMPTZ), o.ingest_run_id, o.rowid)"
        f" AS copy_no FROM {t} o SEMI JOIN (SELECT {cols} FROM {t}"
        f" SEMI JOIN (SELECT DISTINCT {cols} FROM {t} WHERE {runs}) n USING ({cols})"
        f" GROUP BY ALL HAVING count(*) > 1) d USING ({cols})"
        " LEFT JOIN ingest_runs ro ON ro.run_id = o.ingest_run_id"
        f" ) r WHERE r.copy_no > 1 AND r.{runs})"
    )


def derive_checks(
    table: TableSpec,
    vocabularies: dict[str, tuple[str, ...]],
    facts: BatchFacts,
    *,
    clock_skew: timedelta,
    occurred_at_floor: datetime,
    sequence_time_tolerance: timedelta,
    action_for: Callable[[str], str],
) -> list[Check]:
    """The canonical suite for one table and one batch."""
    checks: list[Check] = []
    names = set(table.names)
    latest = facts.now + clock_skew
    tin_re2 = sql_literal(re2_tin_pattern())

    def add_row(check: Check) -> None:
        checks.append(_with_action(check, action_for(check.check_id)))

    for f in table.input_fields:
        col = f"b.{ident(f.name)}"
        if f.required:
            add_row(
                _native(
                    gx.expectations.ExpectColumnValuesToNotBeNull,
                    "expect_column_values_to_not_be_null",
                    f.name,
                    f"{f.name} is required",
                    f"{col} IS NULL",
                    "not_null",
                )
            )
        if f.vocabulary and f.strict:
            accepted = list(vocabularies.get(f.vocabulary, ()))
            if accepted:
                values = ", ".join(sql_literal(v) for v in accepted)
                add_row(
                    _native(
                        gx.expectations.ExpectColumnValuesToBeInSet,
                        "expect_column_values_to_be_in_set",
                        f.name,
                        f"{f.name} is one of the accepted {f.vocabulary} values",
                        f"{col} IS NOT NULL AND {col} NOT IN ({values})",
                        "accepted_values",
                        value_set=accepted,
                    )
                )
        if f.min is not None:
            add_row(
                _native(
                    gx.expectations.ExpectColumnValuesToBeBetween,
                    "expect_column_values_to_be_between",
                    f.name,
                    f"{f.name} is at least {f.min}",
                    f"{col} IS NOT NULL AND {col} < {sql_literal(f.min)}",
                    "min",
                    min_value=f.min,
                )
            )
        if f.type == "VARCHAR[]" and f.required:
            add_row(
                _native(
                    gx.expectations.ExpectColumnValueLengthsToBeBetween,
                    "expect_column_value_lengths_to_be_between",
                    f.name,
                    f"{f.name} names at least one element",
                    f"{col} IS NOT NULL AND length({col}) < 1",
                    "not_empty",
                    min_value=1,
                )
            )
        if checks_for_tin(f):
            add_row(
                _native(
                    gx.expectations.ExpectColumnValuesToNotMatchRegex,
                    "expect_column_values_to_not_match_regex",
                    f.name,
                    f"{f.name} holds no SSN/TIN-shaped string",
                    f"{col} IS NOT NULL AND regexp_matches({col}, {tin_re2})",
                    "no_tin_in_free_text",
                    regex=re2_tin_pattern(),
                )
            )
        if f.type == "TIMESTAMPTZ":
            add_row(
                _native(
                    gx.expectations.ExpectColumnValuesToBeBetween,
                    "expect_column_values_to_be_between",
                    f.name,
                    f"{f.name} is not before {occurred_at_floor.isoformat()} nor later than"
                    f" the validation time plus {clock_skew}",
                    f"{col} IS NOT NULL AND ({col} < {sql_literal(occurred_at_floor)}"
                    f" OR {col} > {sql_literal(latest)})",
                    "time_bounds",
                    min_value=occurred_at_floor,
                    max_value=latest,
                )
            )

    if table.key:
        key_text = ", ".join(table.key)
        predicate = _unique_predicate(table.name, table.key, facts)
        add_row(
            _custom(
                "expect_key_unique",
                key_text,
                "row",
                f"({key_text}) identifies one row; later copies of a key fail",
                _row_query(predicate),
                predicate=predicate,
                check_id="unique_key",
                cross_batch=True,
            )
        )

    if "legal_authority" in names and facts.malformed_citations is not None:
        values = list(facts.malformed_citations)
        in_list = ", ".join(sql_literal(v) for v in values) or "NULL"
        add_row(
            _native(
                gx.expectations.ExpectColumnValuesToNotBeInSet,
                "expect_column_values_to_not_be_in_set",
                "legal_authority",
                "legal_authority, when present, parses under the citation grammar (dwatch.policy);"
                " the set lists this batch's citations that do not",
                f"b.legal_authority IN ({in_list})",
                "legal_authority_grammar",
                value_set=values,
            )
        )

    checks.append(_types_check(table))
    if {"source_system", "sequence_no", "occurred_at"} <= names:
        predicate = _unique_predicate(table.name, ("source_system", "sequence_no"), facts)
        add_row(
            _custom(
                "expect_sequence_no_unique_per_source",
                "sequence_no",
                "row",
                "sequence_no is used once per source_system; later reuses fail",
                _row_query(predicate),
                predicate=predicate,
                check_id="sequence_unique",
                cross_batch=True,
            )
        )
        checks.append(_sequence_gap_check(table.name, facts))
        add_row(_sequence_order_check(table.name, sequence_time_tolerance, facts))
    if {"source_system", "occurred_at"} <= names:
        checks.append(_silence_check(table.name, facts))
    return checks


def _with_action(check: Check, action: str) -> Check:
    return replace(check, action=action)


def _window_of_batch(table: TableSpec) -> tuple[str, str]:
    if "occurred_at" in table.names:
        return "min(b.occurred_at)", "max(b.occurred_at)"
    return "NULL::TIMESTAMPTZ", "NULL::TIMESTAMPTZ"


def _types_check(table: TableSpec) -> Check:
    """Columns of the batch have the canonical types (a batch that fails is not trusted)."""
    probes = ", ".join(f"typeof({ident(f.name)}) AS {ident(f.name)}" for f in table.fields)
    mismatches = " UNION ALL ".join(
        f"SELECT {sql_literal(f.name)} AS field, {ident(f.name)} AS actual,"
        f" {sql_literal(DUCKDB_TYPE_NAMES[f.type])} AS expected FROM t"
        f" WHERE {ident(f.name)} <> {sql_literal(DUCKDB_TYPE_NAMES[f.type])}"
        for f in table.fields
    )
    start, end = _window_of_batch(table)
    source = "b.source_system" if "source_system" in table.names else "NULL::VARCHAR"
    query = (
        WITH_B + f", t AS (SELECT {probes} FROM b LIMIT 1), m AS ({mismatches}),"
        f" w AS (SELECT b.ingest_run_id, {source} AS source_system, {start} AS window_start,"
        f" {end} AS window_end FROM b GROUP BY 1, 2)"
        " SELECT w.ingest_run_id, w.source_system, w.window_start, w.window_end,"
        " json_object('field', m.field, 'actual', m.actual, 'expected', m.expected) AS observed,"
        " 'column ' || m.field || ' has type ' || m.actual || ', expected ' || m.expected AS message"
        " FROM m CROSS JOIN w"
    )
    description = "every column of the batch has its canonical type"
    return _custom("expect_columns_of_canonical_type", None, "batch", description, query)


# SQL CTE: every ingest run with its place in load order (started_at, then run id).
_LOADED = (
    " loaded AS (SELECT run_id, coalesce(started_at, '-infinity'::TIMESTAMPTZ) AS run_at"
    " FROM ingest_runs),"
)


def _span_cte(column: str) -> str:
    """SQL CTE ``span``: per batch of b and source, the batch's place in load order and the
    lowest and highest ``column`` it holds."""
    return (
        f" span AS (SELECT b.ingest_run_id, b.source_system, l.run_at, min(b.{column}) AS lo,"
        f" max(b.{column}) AS hi FROM b JOIN loaded l ON l.run_id = b.ingest_run_id"
        f" WHERE b.source_system IS NOT NULL AND b.{column} IS NOT NULL GROUP BY ALL),"
    )


def _bounds_cte(table: str, column: str) -> str:
    """SQL CTE ``bounds``: each span widened to its source's nearest rows on either side,
    among rows of its own batch or of batches loaded before it.

    Neighbours are looked up only among those, so a gap between two batches is reported
    once, by the later-loaded one, whichever order they arrive in; several batches are
    judged in one query, each against its own place in load order.
    """
    t = ident(table)
    earlier = "(l.run_at < s.run_at OR (l.run_at = s.run_at AND l.run_id <= s.ingest_run_id))"
    side = (
        f"(SELECT {{agg}}(e.{column}) FROM {t} e JOIN loaded l ON l.run_id = e.ingest_run_id"
        f" WHERE e.source_system = s.source_system AND e.{column} {{op}} s.{{edge}} AND {earlier})"
    )
    lo = side.format(agg="max", op="<", edge="lo")
    hi = side.format(agg="min", op=">", edge="hi")
    return (
        f" bounds AS (SELECT s.ingest_run_id, s.source_system, coalesce({lo}, s.lo) AS lo,"
        f" coalesce({hi}, s.hi) AS hi FROM span s),"
    )


def _sequence_gap_check(table: str, facts: BatchFacts) -> Check:
    """Missing sequence numbers between a source's rows (store and quarantine included),
    per batch of b and source."""
    t = ident(table)
    query = (
        WITH_B
        + ","
        + _LOADED
        + _span_cte("sequence_no")
        + _bounds_cte(table, "sequence_no")
        # Rows quarantined by validation, or by ingest with a readable number, still
        # arrived: their numbers are not missing.
        + " held AS (SELECT j ->> 'source_system' AS source_system,"
        " TRY_CAST(j ->> 'sequence_no' AS BIGINT) AS sequence_no,"
        " TRY_CAST(j ->> 'occurred_at' AS TIMESTAMPTZ) AS occurred_at"
        " FROM (SELECT CASE WHEN q.canonical_row IS NOT NULL THEN q.canonical_row"
        " WHEN q.stage = 'validate' AND json_valid(q.raw_row) THEN q.raw_row::JSON END AS j"
        " FROM quarantine q) WHERE j IS NOT NULL),"
        " known AS ("
        " SELECT bd.ingest_run_id, e.source_system, e.sequence_no, e.occurred_at"
        f" FROM {t} e JOIN bounds bd ON e.source_system = bd.source_system"
        " AND e.sequence_no BETWEEN bd.lo AND bd.hi"
        " UNION ALL SELECT bd.ingest_run_id, h.source_system, h.sequence_no, h.occurred_at"
        " FROM held h JOIN bounds bd ON h.source_system = bd.source_system"
        " AND h.sequence_no BETWEEN bd.lo AND bd.hi),"
        # Fast path: a source whose numbers fill lo..hi has no gap and needs no sort.
        " gappy AS (SELECT ingest_run_id, source_system FROM known GROUP BY 1, 2"
        " HAVING max(sequence_no) - min(sequence_no) + 1 > count(DISTINCT sequence_no)),"
        " ordered AS (SELECT ingest_run_id, source_system, sequence_no, occurred_at,"
        " lag(sequence_no) OVER w AS prev_no, lag(occurred_at) OVER w AS prev_at"
        " FROM known SEMI JOIN gappy USING (ingest_run_id, source_system)"
        " WINDOW w AS (PARTITION BY ingest_run_id, source_system ORDER BY sequence_no))"
        " SELECT ingest_run_id, source_system, prev_at AS window_start, occurred_at AS window_end,"
        " json_object('missing_from', prev_no + 1, 'missing_to', sequence_no - 1,"
        " 'missing_count', sequence_no - prev_no - 1) AS observed,"
        " 'sequence_no ' || (prev_no + 1) || CASE WHEN sequence_no - prev_no > 2"
        " THEN '-' || (sequence_no - 1) ELSE '' END || ' missing (' || (sequence_no - prev_no - 1)"
        " || ' event(s)) between ' || strftime(prev_at, '%Y-%m-%dT%H:%M:%SZ') || ' and '"
        " || strftime(occurred_at, '%Y-%m-%dT%H:%M:%SZ') AS message"
        " FROM ordered WHERE sequence_no - prev_no > 1 ORDER BY ingest_run_id, source_system, prev_no"
    )
    description = (
        "sequence_no has no gaps per source_system (a gap means events were lost or removed)"
    )
    return _custom("expect_sequence_no_without_gaps", "sequence_no", "batch", description, query)


def _sequence_order_check(table: str, tolerance: timedelta, facts: BatchFacts) -> Check:
    """Row check: a later sequence_no must not carry an earlier occurred_at (beyond the
    tolerance). Recorded, not a coverage gap: nothing is missing, the order is suspect,
    which is the out_of_order_timestamps rule's evidence."""
    t = ident(table)
    predicate = (
        "b.dw_rowid IN (SELECT o.row_id FROM (SELECT e.rowid AS row_id, e.occurred_at,"
        # Order is judged within each batch (as it was loaded), also when batches are
        # validated together.
        " lag(e.occurred_at) OVER (PARTITION BY e.ingest_run_id, e.source_system"
        f" ORDER BY e.sequence_no) AS prev_at FROM {t} e WHERE {facts.runs_sql('e.ingest_run_id')}"
        " AND e.source_system IS NOT NULL AND e.sequence_no IS NOT NULL"
        f" AND e.occurred_at IS NOT NULL) o WHERE o.occurred_at < o.prev_at - {sql_literal(tolerance)})"
    )
    description = (
        f"sequence_no increases with occurred_at per source_system (tolerance {tolerance})"
    )
    return _custom(
        "expect_sequence_no_increasing",
        "sequence_no",
        "row",
        description,
        _row_query(predicate),
        predicate=predicate,
        check_id="sequence_order",
    )


def _window_case(silence_windows: dict[str, timedelta]) -> str:
    """SQL: the silence window of the row's source_system (per-source suites override)."""
    default = silence_windows.get("*", timedelta(days=7))
    cases = " ".join(
        f"WHEN {sql_literal(src)} THEN {sql_literal(w)}"
        for src, w in sorted(silence_windows.items())
        if src != "*"
    )
    return (
        f"CASE source_system {cases} ELSE {sql_literal(default)} END"
        if cases
        else sql_literal(default)
    )


def _silence_limit(window_expr: str, factor: float, alias: str) -> str:
    """SQL (seconds): the longer of the silence window and ``factor`` x the source's mean gap.

    A source that writes a few events a month normally has weeks without one; only a
    silence well beyond its own rhythm means missing logs.
    """
    return (
        f"greatest(epoch({window_expr}), {float(factor)!r} * (epoch(max({alias}.occurred_at))"
        f" - epoch(min({alias}.occurred_at))) / greatest(count({alias}.occurred_at) - 1, 1))"
    )


# A source's own quiet spells: a stretch up to QUIET_SPELL_FACTOR x its QUIET_SPELLS-th
# longest gap between events is its rhythm, not missing logs (a bursty audit's quiet
# weeks; the longest gaps may be the silences being judged, so the third counts).
QUIET_SPELLS = 3
QUIET_SPELL_FACTOR = 1.5


def _ordinal(n: int) -> str:
    return {1: "1st", 2: "2nd", 3: "3rd"}.get(n, f"{n}th")


def _quiet_spell_cte(name: str, rows: str, among: str) -> str:
    """SQL CTEs ending in ``name(source_system, spell_s)``: for each source in ``among``,
    its QUIET_SPELLS-th longest gap (seconds) between events of ``rows``."""
    return (
        f" {name}_gaps AS (SELECT source_system, epoch(occurred_at) - epoch(lag(occurred_at)"
        f" OVER (PARTITION BY source_system ORDER BY occurred_at)) AS gap_s FROM {rows}"
        f" SEMI JOIN {among} USING (source_system) WHERE occurred_at IS NOT NULL),"
        f" {name} AS (SELECT source_system, min(gap_s) AS spell_s FROM (SELECT source_system,"
        " gap_s, row_number() OVER (PARTITION BY source_system ORDER BY gap_s DESC) AS rn"
        f" FROM {name}_gaps WHERE gap_s IS NOT NULL) WHERE rn <= {QUIET_SPELLS}"
        f" GROUP BY source_system HAVING count(*) = {QUIET_SPELLS})"
    )


def _silence_check(table: str, facts: BatchFacts) -> Check:
    """No stretch without an event longer than the source's silence limit, per batch of b
    and source."""
    t = ident(table)
    window_expr = _window_case(facts.silence_windows)
    query = (
        WITH_B
        + ","
        + _LOADED
        + _span_cte("occurred_at")
        + _bounds_cte(table, "occurred_at")
        # The source's rhythm over everything the store holds for it.
        + " rhythm AS (SELECT source_system,"
        f" {_silence_limit(window_expr, facts.silence_rhythm_factor, 'e')} AS limit_s,"
        " (epoch(max(e.occurred_at)) - epoch(min(e.occurred_at)))"
        " / greatest(count(e.occurred_at) - 1, 1) AS mean_gap_s"
        f" FROM {t} e SEMI JOIN span USING (source_system) GROUP BY source_system),"
        " known AS (SELECT bd.ingest_run_id, e.source_system, e.occurred_at"
        f" FROM {t} e JOIN bounds bd ON e.source_system = bd.source_system"
        " AND e.occurred_at BETWEEN bd.lo AND bd.hi),"
        # Fast path: a silence longer than the limit covers a whole bucket of half its width,
        # so a source with an event in every such bucket from its first to its last has
        # none; only the others are sorted and measured exactly.
        " buckets AS (SELECT k.ingest_run_id, k.source_system, floor(epoch(k.occurred_at) /"
        " greatest(r.limit_s / 2, 1)) AS bucket FROM known k JOIN rhythm r USING (source_system)),"
        " quiet AS (SELECT ingest_run_id, source_system FROM buckets GROUP BY 1, 2"
        " HAVING max(bucket) - min(bucket) + 1 > count(DISTINCT bucket)),"
        # Only sources quiet beyond the first limit learn their quiet spells (a sort of
        # their history) and may be let off by them.
        + _quiet_spell_cte("spells", t, "quiet")
        + ", lim AS (SELECT r.source_system, r.mean_gap_s, s.spell_s,"
        f" greatest(r.limit_s, coalesce({QUIET_SPELL_FACTOR!r} * s.spell_s, 0)) AS limit_s"
        " FROM rhythm r LEFT JOIN spells s USING (source_system)),"
        " ordered AS (SELECT ingest_run_id, source_system, occurred_at, lag(occurred_at) OVER"
        " (PARTITION BY ingest_run_id, source_system ORDER BY occurred_at) AS prev_at"
        " FROM known SEMI JOIN quiet USING (ingest_run_id, source_system))"
        " SELECT o.ingest_run_id, o.source_system, o.prev_at AS window_start,"
        " o.occurred_at AS window_end,"
        " json_object('silent_for', CAST(o.occurred_at - o.prev_at AS VARCHAR),"
        " 'limit', CAST(to_seconds(r.limit_s) AS VARCHAR),"
        " 'mean_gap', CAST(to_seconds(r.mean_gap_s) AS VARCHAR),"
        " 'quiet_spell', CAST(to_seconds(coalesce(r.spell_s, 0)) AS VARCHAR)) AS observed,"
        " 'no events for ' || (o.occurred_at - o.prev_at) || ' (limit '"
        " || to_seconds(r.limit_s) || ': the silence window, '"
        f" || {float(facts.silence_rhythm_factor)!r} || 'x the mean gap of '"
        " || to_seconds(round(r.mean_gap_s)) || ' or "
        f"{QUIET_SPELL_FACTOR:g}x its {_ordinal(QUIET_SPELLS)}-longest quiet spell of '"
        " || to_seconds(round(coalesce(r.spell_s, 0))) || ', whichever is longest)' AS message"
        " FROM ordered o JOIN lim r USING (source_system)"
        " WHERE epoch(o.occurred_at) - epoch(o.prev_at) > r.limit_s"
        " ORDER BY o.ingest_run_id, o.source_system, o.prev_at"
    )
    description = (
        "no source goes silent longer than its silence window, "
        f"{facts.silence_rhythm_factor:g}x its own mean gap between events and "
        f"{QUIET_SPELL_FACTOR:g}x its own {_ordinal(QUIET_SPELLS)}-longest quiet spell"
    )
    return _custom("expect_source_not_silent", "occurred_at", "batch", description, query)


def trailing_silence_check(
    table: str, silence_windows: dict[str, timedelta], rhythm_factor: float = 8.0
) -> Check:
    """Store-wide: a source whose last event is older than the newest event of any source
    by more than its silence limit stopped sending (coverage incomplete up to now)."""
    window_expr = _window_case(silence_windows)
    query = (
        WITH_B + ", last AS (SELECT source_system, max(occurred_at) AS last_at,"
        f" {_silence_limit(window_expr, rhythm_factor, 'b')} AS limit_s FROM b"
        " WHERE source_system IS NOT NULL GROUP BY source_system),"
        " newest AS (SELECT max(occurred_at) AS at FROM b),"
        " behind AS (SELECT source_system FROM last, newest"
        " WHERE epoch(newest.at) - epoch(last_at) > limit_s),"
        + _quiet_spell_cte("spells", "b", "behind")
        + " SELECT NULL::VARCHAR AS ingest_run_id, source_system, last_at AS window_start,"
        " newest.at AS window_end,"
        " json_object('last_event', last_at, 'newest_event_any_source', newest.at,"
        " 'limit', CAST(to_seconds(greatest(limit_s, coalesce("
        f"{QUIET_SPELL_FACTOR!r} * spell_s, 0))) AS VARCHAR),"
        " 'quiet_spell', CAST(to_seconds(coalesce(spell_s, 0)) AS VARCHAR)) AS observed,"
        " 'no events since ' || strftime(last_at, '%Y-%m-%dT%H:%M:%SZ') || ' while other sources'"
        " || ' reach ' || strftime(newest.at, '%Y-%m-%dT%H:%M:%SZ') AS message"
        " FROM last LEFT JOIN spells USING (source_system), newest"
        " WHERE epoch(newest.at) - epoch(last_at)"
        f" > greatest(limit_s, coalesce({QUIET_SPELL_FACTOR!r} * spell_s, 0))"
        " ORDER BY source_system"
    )
    description = "every source reaches the newest event of the store within its silence limit"
    return _custom("expect_source_not_silent_until_now", "occurred_at", "batch", description, query)
