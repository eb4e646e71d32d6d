"""Typed Parquet columns straight through: a column that already has its field's type is
not written as text and parsed back.

The text path (``fields``, ``instants``) reads every value as text: a Parquet timestamp
with a zone becomes '2025-01-01 10:00:00+00', is tested for a zone suffix and an impossible
offset and cast back; a list becomes JSON and is parsed back. For the types below, and
for values in the range where that round trip is exact (a UTC session, timestamps in
years 1-9999, finite), the text path gives back the value it was given, and the only
checks that can fail are the ones kept here (required, minimum, vocabulary, the plausible
window, an empty list), with the same reason, field and message: messages and the
quarantined raw record render the value's text exactly as the text path stages it.

A value outside that range stops the typed statement (``OUTSIDE``) and the file (or group)
is built again through text, so hostile inputs get the text path's answers.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

import duckdb

from dwatch.ingest.base import ROW_MAY_HAVE_TIN, _FieldSQL, _lit, _q
from dwatch.ingest.fields import _clean_text
from dwatch.masking import sql_mask_text
from dwatch.schema import FieldSpec, load_schema

if TYPE_CHECKING:
    from dwatch.ingest.typed import _FieldPlan

# Field type -> Parquet (DuckDB) column types read as they are.
DIRECT_TYPES: dict[str, frozenset[str]] = {
    "TIMESTAMPTZ": frozenset({"TIMESTAMP WITH TIME ZONE"}),
    "BIGINT": frozenset(
        {"BIGINT", "INTEGER", "SMALLINT", "TINYINT", "UINTEGER", "USMALLINT", "UTINYINT"}
    ),
    "BOOLEAN": frozenset({"BOOLEAN"}),
    "VARCHAR[]": frozenset({"VARCHAR[]"}),
}

# Off only to compare the two paths (tests): every column is then read through text.
DIRECT = True

# The message a typed statement stops with when a value needs the text path.
OUTSIDE = "dwatch: a typed value needs the text path"

# Instants whose text ('YYYY-MM-DD HH:MM:SS[.ffffff]+00') reads back as themselves.
_FIRST = "TIMESTAMPTZ '0001-01-01 00:00:00+00'"
_PAST_LAST = "TIMESTAMPTZ '10000-01-01 00:00:00+00'"


def direct_type(f: FieldSpec, column_type: str, utc: bool) -> bool:
    """Whether a column of this type feeds the field straight through."""
    if f.pseudonym or f.identifier or f.case or f.derived or (f.strict and f.vocabulary):
        return False
    if f.type == "TIMESTAMPTZ" and not utc:
        return False  # the text path's offsets are the session's zone: keep its reading
    return column_type in DIRECT_TYPES.get(f.type, frozenset())


def choose_direct(plan: _FieldPlan, types: dict[str, str], utc: bool) -> dict[str, tuple[str, str]]:
    """Fields read straight from their typed column: field -> (column, column type).

    Only a column that feeds one field as it is (no value map, constant, case, derived id,
    nested path or list expansion) and is nothing else (an identifier, an extra)."""
    if plan.items is not None or plan.path_columns or not types:
        return {}
    mapping = plan.mapping
    busy = set(plan.identifier_cols) | set(plan.extras) | set(mapping.event_id_from)
    chosen: dict[str, tuple[str, str]] = {}
    for f in plan.table.input_fields:
        column = mapping.columns.get(f.name, f.name)
        column_type = types.get(column)
        if (
            column_type is None
            or column in busy
            or f.name in mapping.constants
            or plan.texts.get(f.name) != _clean_text(_q(column))
            or not direct_type(f, column_type, utc)
        ):
            continue
        chosen[f.name] = (column, column_type)
    # A column read by two fields keeps its text for both.
    uses = Counter(_column_uses(plan))
    return {name: pick for name, pick in chosen.items() if uses[pick[0]] == 1}


def _column_uses(plan: _FieldPlan) -> list[str]:
    """Each staged column once per field whose text reads it."""
    return [
        column
        for text in plan.texts.values()
        if text is not None
        for column in plan.columns
        if _q(column) in text
    ]


def session_is_utc(con: duckdb.DuckDBPyConnection) -> bool:
    return con.execute("SELECT current_setting('TimeZone')").fetchone()[0] == "UTC"


def text_of(expr: str, column_type: str | None) -> str:
    """A staged column's text as the text path stages it (lists as JSON)."""
    if column_type is None or column_type == "VARCHAR":
        return expr
    if column_type.endswith("[]") or column_type.startswith(("STRUCT", "MAP")):
        return f"CAST(to_json({expr}) AS VARCHAR)"
    return f"CAST({expr} AS VARCHAR)"


def joined_name(field: str) -> str:
    """The layer-2 helper holding a direct list field's elements joined by the unit
    separator (``_list_sql``), computed once a row for the pre-test and the tidy test."""
    return f"j__{field}"


def may_tin_text(f: FieldSpec, x: str) -> str:
    """What the row's taxpayer-id pre-test reads for a direct field: a list's elements
    joined by the unit separator (a shape inside an element is inside the join)."""
    return joined_name(f.name) if f.type == "VARCHAR[]" else x


def direct_field_sql(f: FieldSpec, column_type: str) -> _FieldSQL:
    """The field's typed value and checks when its column already has its type: ``x`` is
    the typed column itself; messages show its text as the text path would."""
    x, t = f"x__{f.name}", f"t__{f.name}"
    spec = _FieldSQL(x=x, t=t, typed=x)
    shown = f"coalesce({sql_mask_text(text_of(x, column_type))}, '')"
    checks = spec.checks
    if f.required:
        checks.append((f"{x} IS NULL", "missing_required", f"'{f.name}: required value is empty'"))
    if f.type == "TIMESTAMPTZ":
        spec.typed = (
            f"CASE WHEN {x} IS NULL OR (isfinite({x}) AND {x} >= {_FIRST} AND {x} < {_PAST_LAST})"
            f" THEN {x} ELSE error({_lit(OUTSIDE)}) END"
        )
        checks.append(_window_check(f, t, shown))
    elif f.type == "VARCHAR[]":
        _list_sql(f, spec)
    if f.min is not None:
        checks.append(
            (
                f"{t} < {int(f.min)}",
                "out_of_range",
                f"'{f.name}: ' || {shown} || ' is below the minimum {int(f.min)}'",
            )
        )
    return spec


def _window_check(f: FieldSpec, t: str, shown: str) -> tuple[str, str, str]:
    """The plausible window (schemas/canonical.yaml: instants), as dwatch.ingest.instants."""
    schema = load_schema()
    floor = schema.instants_not_before
    ahead = schema.instants_ahead_of_ingest
    ahead_text = f"{ahead.total_seconds() / 3600:g} hour(s)"
    return (
        f"{t} < {_lit(floor.isoformat())}::TIMESTAMPTZ"
        f" OR {t} > now() + INTERVAL {int(ahead.total_seconds())} SECOND",
        "out_of_range",
        f"'{f.name}: ' || {shown} || ' is outside the plausible window (not before"
        f" {floor.date().isoformat()}, at most {ahead_text} after the time of ingest);"
        " a date in the future is kept here as a finding: fix the clock or the value at"
        " the source (the window: instants in schemas/canonical.yaml)'",
    )


def _list_sql(f: FieldSpec, spec: _FieldSQL) -> None:
    """A list field from a list column: elements lower-cased and trimmed, empty and NULL
    elements dropped (only lists that need it pay for the lambdas), masked in flagged rows."""
    x, t = spec.x, spec.t
    tidy = (
        f"list_filter(list_transform({x}, lambda v: lower(trim(v))),"
        " lambda v: v IS NOT NULL AND v <> '')"
    )
    # The join is a helper: written out here and in the pre-test, it was evaluated four
    # times a row (about 0.3 CPU-s of the typed pass per million events).
    joined = joined_name(f.name)
    spec.helpers.append((joined, f"array_to_string({x}, chr(31))"))
    plain = (
        f"list_count({x}) = len({x}) AND NOT list_contains({x}, '')"
        f" AND lower({joined}) = {joined} AND NOT contains({joined}, ' ')"
    )
    listed = f"CASE WHEN {plain} THEN {x} ELSE {tidy} END"
    spec.typed = (
        f"CASE WHEN {ROW_MAY_HAVE_TIN} THEN list_transform({listed},"
        f" lambda v: {sql_mask_text('v')}) ELSE {listed} END"
    )
    if f.required:
        spec.checks.append(
            (
                f"len({t}) = 0",
                "missing_required",
                f"'{f.name}: the list is empty; name at least one data element'",
            )
        )
