"""Convert fields: each canonical field's text from the staged columns, then its typed value,
its checks (first failing check is the row's reason) and its masking or pseudonym."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from dwatch.errors import InputError
from dwatch.ingest.base import ROW_MAY_HAVE_TIN, _FieldSQL, _lit, _q, field_may_have_tin
from dwatch.ingest.instants import timestamp_sql
from dwatch.mapping import (
    SourceMapping,
    derived_event_id_sql,
)
from dwatch.masking import (
    MASK,
    sql_mask_text,
    sql_pseudonymise_id,
)
from dwatch.pseudonym import sql_pseudonymise
from dwatch.schema import FieldSpec, load_schema

# ---------------------------------------------------------------------------- mapping to canonical


def _detect_kind(columns: list[str], mapping: SourceMapping) -> str | None:
    if mapping.kind:
        return mapping.kind
    cols = set(columns) | set(mapping.columns) | set(mapping.constants)
    if {"item_no", "supplied_address", "supplied_name"} & cols:
        return "request_items"
    if {"event_type", "occurred_at", "recipient_agency"} & cols:
        return "events"
    return None


def _fold_header(column: str) -> str:
    """'EVENT_ID', 'Event ID', 'event-id', 'eventId', 'EventID' -> 'event_id' (BOM, case,
    camel case, spaces, punctuation)."""
    split = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", column.replace("\ufeff", ""))
    return re.sub(r"[^0-9a-z]+", "_", split.lower()).strip("_")


def _with_canonical_headers(columns: list[str], mapping: SourceMapping) -> SourceMapping:
    """The mapping, plus canonical fields whose header differs only in case or spacing.

    Another agency's export writes 'EVENT_ID' or 'Occurred At' for our fields. A header that
    is exactly canonical, or that the mapping already maps, wins; only the header row is
    looked at, so this costs nothing per record."""
    names = {f.name for t in load_schema().tables.values() for f in t.input_fields}
    present, taken = set(columns), set(mapping.columns.values())
    found: dict[str, str] = {}
    for column in columns:
        name = _fold_header(column)
        if (
            name in names
            and name != column
            and name not in present
            and name not in mapping.columns
            and name not in found
            and column not in taken
            and column not in mapping.ignore_columns
        ):
            found[name] = column
    return replace(mapping, columns={**mapping.columns, **found}) if found else mapping


def _clean_text(expr: str) -> str:
    """Text with surrounding spaces trimmed and '' as NULL, trimming only padded values.

    trim() copies every string it sees; the prefix/suffix LIKE guard is several times
    cheaper, and most values carry no padding (2M rows x 21 columns: 0.7 against 2.3 CPU-s).
    """
    return (
        f"nullif(CASE WHEN {expr} LIKE ' %' OR {expr} LIKE '% ' THEN trim({expr})"
        f" ELSE {expr} END, '')"
    )


def _source_text(
    f: FieldSpec, columns: set[str], mapping: SourceMapping, identifier_cols: list[str]
) -> str | None:
    """SQL for a canonical field's text from the staged columns (trimmed, '' as NULL), or None."""
    expr: str | None = None
    if f.name == "event_id" and mapping.event_id_from:
        expr = derived_event_id_sql(mapping, columns)
    elif f.name in mapping.columns and mapping.columns[f.name] in columns:
        expr = _q(mapping.columns[f.name])
    elif f.name in columns and f.name not in mapping.columns:
        expr = _q(f.name)
    if f.pseudonym:
        if expr is None and identifier_cols:
            # First non-empty identifier column becomes the subject.
            expr = "coalesce(" + ", ".join(_clean_text(_q(c)) for c in identifier_cols) + ")"
            return sql_pseudonymise(expr)
        if expr is not None:
            # A ref that is not already our pseudonym is a raw identifier: pseudonymise it.
            return f"CASE WHEN regexp_full_match(trim({expr}), 'tp_[0-9a-f]{{32}}') THEN trim({expr}) ELSE {sql_pseudonymise(expr)} END"
    if f.name in mapping.constants:
        const = _lit(mapping.constants[f.name])
        if f.pseudonym:  # a constant subject is still an identifier: never stored raw
            return sql_pseudonymise(const)
        expr = f"coalesce({_clean_text(expr)}, {const})" if expr else const
    if f.name == "source_system" and expr is None and mapping.source_system:
        expr = _lit(mapping.source_system)
    if expr is None:
        return None
    expr = _clean_text(expr)
    if f.name in mapping.values:
        pairs = ", ".join(
            f"{_lit(k.lower())}: {_lit(v)}" for k, v in mapping.values[f.name].items()
        )
        expr = f"coalesce(MAP {{{pairs}}}[lower({expr})], {expr})"
    if f.case == "lower":
        expr = f"lower({expr})"
    elif f.case == "upper":
        expr = f"upper({expr})"
    return expr


def _field_sql(f: FieldSpec, mapping: SourceMapping) -> _FieldSQL:
    x, t = f"x__{f.name}", f"t__{f.name}"
    spec = _FieldSQL(x=x, t=t, typed=x)
    shown = f"coalesce({sql_mask_text(x)}, '')"
    checks = spec.checks
    if f.required:
        checks.append((f"{x} IS NULL", "missing_required", f"'{f.name}: required value is empty'"))
    if f.type == "VARCHAR":
        # A TIN typed into any text must not reach the store (dwatch.masking): an id
        # carrying one becomes the pseudonym of the whole id, other text is masked.
        # _may_tin and _may_tin_id are the row's RE2 tests over its free text and over its
        # identifiers (see _typed_sql).
        # A pseudonym field's text is already the keyed pseudonym (_source_text).
        if f.pseudonym:
            spec.typed = x
        elif f.identifier:
            whole = f"coalesce({sql_pseudonymise(x)}, {_lit(MASK)})"
            may = field_may_have_tin(x, identifier=True)
            spec.typed = sql_pseudonymise_id(x, whole, may=may)
        else:
            spec.typed = sql_mask_text(x, may=field_may_have_tin(x))
    elif f.type == "BIGINT":
        # DuckDB rounds '47289.6' to 47290: a decimal point is accepted only before zeros
        # (a float column's '47289.0'), so a fraction of a record is refused, not rounded.
        # contains() is the only cost for the usual digits-only value.
        spec.typed = (
            f"TRY_CAST(replace(CASE WHEN NOT contains({x}, '.') THEN {x}"
            f" WHEN regexp_full_match({x}, '[+-]?[0-9,]*\\.0*') THEN split_part({x}, '.', 1) END,"
            " ',', '') AS BIGINT)"
        )
        checks.append(
            (
                f"{x} IS NOT NULL AND {t} IS NULL",
                "bad_type",
                f"'{f.name}: ' || {shown} || ' is not a whole number'",
            )
        )
    elif f.type == "BOOLEAN":
        spec.typed = (
            # list_contains, not IN: DuckDB plans these IN lists as a hash (mark) join.
            f"CASE WHEN list_contains(['true','t','yes','y','1'], lower({x})) THEN true"
            f" WHEN list_contains(['false','f','no','n','0'], lower({x})) THEN false END"
        )
        checks.append(
            (
                f"{x} IS NOT NULL AND {t} IS NULL",
                "bad_type",
                f"'{f.name}: ' || {shown} || ' is not true/false (yes/no, y/n, 1/0); map the"
                " source''s word in the source mapping (values:)'",
            )
        )
    elif f.type == "TIMESTAMPTZ":
        timestamp_sql(f, mapping, spec, shown)
    elif f.type == "VARCHAR[]":
        p = f"p__{f.name}"
        sep = mapping.list_separator
        split = f"string_split({x}, {_lit(sep)})" if sep else f"string_split_regex({x}, '[;,|]')"
        # A bracketed list that is not JSON (Python's "['name', 'address']" from pandas,
        # or "[name, address]") is split like a plain list; only those rows pay for it.
        unbracketed = f"string_split_regex(regexp_replace({x}, '[\\[\\]''\"]', '', 'g'), '[;,|]')"
        spec.helpers.append(
            (
                p,
                f"CASE WHEN starts_with({x}, '[') THEN coalesce(try(from_json({x}, '[\"VARCHAR\"]')),"
                f" CASE WHEN ends_with({x}, ']') THEN {unbracketed} END) ELSE {split} END",
            )
        )
        tidy = f"list_filter(list_transform({p}, lambda v: lower(trim(v))), lambda v: v IS NOT NULL AND v <> '')"
        # A compact lower-case JSON array (no spaces, escapes, empty strings or nulls) is
        # already tidy: skip the two lambdas, the costliest part of this field.
        plain = (
            f"starts_with({x}, '[') AND lower({x}) = {x} AND NOT (contains({x}, ' ')"
            f" OR contains({x}, '\"\"') OR contains({x}, '\\') OR contains({x}, 'null'))"
        )
        listed = f"CASE WHEN {plain} THEN {p} ELSE {tidy} END"
        # Elements are text from outside too (masked only in rows the RE2 pre-test flags).
        spec.typed = (
            f"CASE WHEN {ROW_MAY_HAVE_TIN} THEN list_transform({listed},"
            f" lambda v: {sql_mask_text('v')}) ELSE {listed} END"
        )
        checks.append(
            (
                f"{x} IS NOT NULL AND {p} IS NULL",
                "bad_type",
                f"'{f.name}: ' || {shown} || ' is not a list; write a JSON array such as [\"name\",\"address\"]'",
            )
        )
        if f.required:
            checks.append(
                (
                    f"len({t}) = 0",
                    "missing_required",
                    f"'{f.name}: the list is empty; name at least one data element'",
                )
            )
    else:  # pragma: no cover - schema types are checked when the schema loads
        raise InputError(f"unsupported type {f.type}", where=f.name)
    if f.min is not None:
        checks.append(
            (
                f"{t} < {int(f.min)}",
                "out_of_range",
                f"'{f.name}: ' || {shown} || ' is below the minimum {int(f.min)}'",
            )
        )
    if f.strict and f.vocabulary:
        vocab = load_schema().vocabularies[f.vocabulary]
        allowed = "[" + ", ".join(_lit(v) for v in vocab) + "]"
        checks.append(
            (
                f"NOT list_contains({allowed}, {t})",
                "not_in_vocabulary",
                f"'{f.name}: ' || {shown} || ' is not one of {', '.join(vocab)}; map it in the source mapping (values:)'",
            )
        )
    return spec


# Fields that only name a record or its source: a file supplying nothing else describes
# no disclosure (the generator's answer key, ground_truth_labels.parquet, is one).
_NAMING_FIELDS = frozenset({"event_id", "request_id", "item_no", "source_system"})


def refuse_unfit_layout(
    path: Path,
    columns: list[str],
    kind: str,
    supplied: dict[str, str | None],
    tried: list[str],
) -> None:
    """Refuse the whole file, with one message, when its columns fit no layout: read as
    ``kind`` they supply no field beyond the ones that name records (each of its rows
    would only be quarantined)."""
    content = sorted(n for n, text in supplied.items() if text and n not in _NAMING_FIELDS)
    if content:
        return
    shown = ", ".join(columns[:20]) + (
        f", ... ({len(columns)} columns)" if len(columns) > 20 else ""
    )
    raise InputError(
        f"refused whole: its columns ({shown}) fit no known export layout; read as {kind} they"
        f" supply only record names ({', '.join(sorted(n for n, t in supplied.items() if t))})"
        f" and nothing a disclosure is judged on. Layouts tried: the canonical {kind} layout"
        + (f" and the source mappings {', '.join(tried)}" if tried else "")
        + ". Not one of its rows was loaded or quarantined",
        where=str(path),
        fix="if it is a log, add a source mapping naming which column holds each field"
        " (dwatch mapping suggest FILE > schemas/sources/NAME.yaml, then dwatch mapping test);"
        " if it is not a log (an answer key, a report), move it out of the input folder",
    )
