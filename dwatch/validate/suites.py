"""Expectation suites derived from the canonical schema (never written a second time).

Each ``Check`` pairs one Great Expectations expectation (the verdict, the counts, the Data
Docs page) with the SQL predicate that picks the failing rows (counted set-wise by batch
and source, and moved to quarantine), or, for batch-level checks (``coverage``), a query
listing each gap with the batch, source and time window it speaks for. From the schema:

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
from dataclasses import replace
from datetime import datetime, timedelta

from dwatch.schema import FieldSpec, TableSpec
from dwatch.validate.checks import (
    BATCH_TOKEN,
    DUCKDB_TYPE_NAMES,
    RUN_TOKEN,
    WITH_B,
    BatchFacts,
    Check,
    GxSpec,
    Scope,
    _custom,
    _native,
    _row_query,
    checks_for_tin,
    for_duckdb,
    for_gx,
    ident,
    re2_tin_pattern,
    sql_has_tin,
    sql_literal,
)
from dwatch.validate.coverage import (
    QUIET_SPELL_CHANCE,
    QUIET_SPELLS,
    _sequence_gap_check,
    _silence_check,
    _types_check,
    trailing_silence_check,
)

__all__ = [
    "BATCH_TOKEN",
    "DUCKDB_TYPE_NAMES",
    "QUIET_SPELLS",
    "QUIET_SPELL_CHANCE",
    "WITH_B",
    "BatchFacts",
    "Check",
    "GxSpec",
    "Scope",
    "checks_for_tin",
    "derive_checks",
    "for_duckdb",
    "for_gx",
    "ident",
    "re2_tin_pattern",
    "sql_literal",
    "trailing_silence_check",
]


def _unique_predicate(
    table: str, key: Sequence[str], facts: BatchFacts, check_id: str, one_batch: bool = False
) -> str:
    """SQL over b: TRUE for every copy of a key but the first loaded.

    First loaded = earliest ingest run (started_at, then run id), then earliest row of the
    run. Uncorrelated, so DuckDB computes it once for every batch validated. The rows read
    are the table's, or only those of the runs ``facts.key_runs`` names for ``check_id``
    (the batches and those that may hold their keys, see dwatch.validate.keyranges) and
    every row of no ingest run.
    Keys held more than once are found by one aggregate over a hash of the key (not its
    strings); only rows of those hashes are ranked, by the key itself, so a collision costs
    a few rows ranked and never a wrong verdict. NULL keys never match.

    ``one_batch``: for the rows of one batch (RUN_TOKEN): only rows whose key hashes like
    a key of that batch are read on (every copy of its keys among them), so a recount
    after earlier batches moved rows groups those rows, not every row of the table.
    """
    cols = ", ".join(ident(k) for k in key)
    o_cols = ", ".join(f"o.{ident(k)}" for k in key)
    where = " AND ".join(f"{ident(k)} IS NOT NULL" for k in key)
    if one_batch:
        where += (
            f" AND hash({cols}) IN (SELECT hash({cols}) FROM {ident(table)}"
            f" WHERE ingest_run_id = {RUN_TOKEN})"
        )
    select = f"SELECT rowid AS row_id, ingest_run_id, {cols} FROM {ident(table)} WHERE {where}"
    runs_read = facts.key_runs.get(check_id)
    in_runs = ""
    if runs_read is not None:
        listed = ", ".join(sql_literal(r) for r in runs_read)
        in_runs = f" AND ingest_run_id IN ({listed})"
        if check_id in facts.key_runs_new:
            in_runs += f" AND rowid >= {int(facts.since)}"
        # Rows with no ingest run are read wherever they lie (their own branch: the
        # column's NULL statistics skip every row group that has none).
        rows = f"({select}{in_runs} UNION ALL {select} AND ingest_run_id IS NULL)"
    else:
        rows = f"({select})"
    runs = facts.runs_sql("ingest_run_id")
    held = ""
    if not one_batch and facts.since > 0:
        # Only keys the checked rows hold can make one of them a later copy: the stored
        # rows' hashes are probed against theirs, not grouped all (at 100M events, with
        # event ids pseudonymised whole, the batches' key ranges overlap most of history
        # and grouping every hash cost 19 CPU-s of a 1% run). The checked rows lie from
        # ``since`` on (the rows the predicate is asked about: the batches counted).
        # With ``since`` 0 (nothing stored before the batches, as in a first full run)
        # the checked rows are all the rows read, and the probe would only add a hash
        # set of every row (a 100M full run: about 90 CPU-s of validation).
        mine = (
            f"SELECT hash({cols}) FROM {ident(table)} WHERE {where}{in_runs}"
            f" AND {runs} AND rowid >= {int(facts.since)}"
        )
        held = f" WHERE hash({cols}) IN ({mine})"
    return (
        "b.dw_rowid IN (SELECT r.row_id FROM ("
        f" SELECT o.row_id, o.ingest_run_id, row_number() OVER (PARTITION BY {o_cols}"
        " ORDER BY coalesce(ro.started_at, '-infinity'::TIMESTAMPTZ), o.ingest_run_id, o.row_id)"
        f" AS copy_no FROM {rows} o SEMI JOIN (SELECT hash({cols}) AS h FROM {rows}{held}"
        f" GROUP BY 1 HAVING count(*) > 1) d ON hash({o_cols}) = d.h"
        " LEFT JOIN ingest_runs ro ON ro.run_id = o.ingest_run_id"
        f" ) r WHERE r.copy_no > 1 AND r.{runs})"
    )


def _field_checks(
    f: FieldSpec,
    vocabularies: dict[str, tuple[str, ...]],
    *,
    latest: datetime,
    clock_skew: timedelta,
    occurred_at_floor: datetime,
) -> list[Check]:
    """The row checks one input field's schema entry asks for (actions not yet applied)."""
    out: list[Check] = []
    col = f"b.{ident(f.name)}"
    if f.required:
        out.append(
            _native(
                "ExpectColumnValuesToNotBeNull",
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
            out.append(
                _native(
                    "ExpectColumnValuesToBeInSet",
                    "expect_column_values_to_be_in_set",
                    f.name,
                    f"{f.name} is one of the accepted {f.vocabulary} values",
                    f"{col} IS NOT NULL AND {col} NOT IN ({values})",
                    "accepted_values",
                    value_set=accepted,
                )
            )
    if f.min is not None:
        out.append(
            _native(
                "ExpectColumnValuesToBeBetween",
                "expect_column_values_to_be_between",
                f.name,
                f"{f.name} is at least {f.min}",
                f"{col} IS NOT NULL AND {col} < {sql_literal(f.min)}",
                "min",
                min_value=f.min,
            )
        )
    if f.type == "VARCHAR[]" and f.required:
        out.append(
            _native(
                "ExpectColumnValueLengthsToBeBetween",
                "expect_column_value_lengths_to_be_between",
                f.name,
                f"{f.name} names at least one element",
                f"{col} IS NOT NULL AND length({col}) < 1",
                "not_empty",
                min_value=1,
            )
        )
    if checks_for_tin(f):
        out.append(
            _native(
                "ExpectColumnValuesToNotMatchRegex",
                "expect_column_values_to_not_match_regex",
                f.name,
                f"{f.name} holds no SSN/TIN-shaped string",
                sql_has_tin(col),
                "no_tin_in_free_text",
                regex=re2_tin_pattern(),
            )
        )
    if f.type == "TIMESTAMPTZ":
        out.append(
            _native(
                "ExpectColumnValuesToBeBetween",
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
    return out


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

    def add_row(check: Check) -> None:
        checks.append(_with_action(check, action_for(check.check_id)))

    for f in table.input_fields:
        for check in _field_checks(
            f,
            vocabularies,
            latest=latest,
            clock_skew=clock_skew,
            occurred_at_floor=occurred_at_floor,
        ):
            add_row(check)

    if table.key:
        key_text = ", ".join(table.key)
        predicate = _unique_predicate(table.name, table.key, facts, "unique_key")
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
                batch_predicate=_unique_predicate(
                    table.name, table.key, facts, "unique_key", one_batch=True
                ),
            )
        )

    if "legal_authority" in names and facts.malformed_citations is not None:
        values = list(facts.malformed_citations)
        in_list = ", ".join(sql_literal(v) for v in values) or "NULL"
        add_row(
            _native(
                "ExpectColumnValuesToNotBeInSet",
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
        numbered = ("source_system", "sequence_no")
        predicate = _unique_predicate(table.name, numbered, facts, "sequence_unique")
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
                batch_predicate=_unique_predicate(
                    table.name, numbered, facts, "sequence_unique", one_batch=True
                ),
            )
        )
        checks.append(_sequence_gap_check(table.name, facts))
        add_row(_sequence_order_check(table.name, sequence_time_tolerance, facts))
    if {"source_system", "occurred_at"} <= names:
        checks.append(_silence_check(table.name, facts))
    return checks


def _with_action(check: Check, action: str) -> Check:
    return replace(check, action=action)


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
        f" ORDER BY e.sequence_no) AS prev_at FROM {t} e WHERE e.rowid >= {int(facts.since)}"
        f" AND {facts.runs_sql('e.ingest_run_id')}"
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
