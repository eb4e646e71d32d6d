"""Build the typed work table: one layered SQL pass over the staged file (texts, helpers,
typed values, first failing check, the raw record for quarantine)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

import dwatch.ingest.direct as ingest_direct
from dwatch.errors import InputError
from dwatch.ingest.base import (
    LINES,
    REJECT_OFFSETS,
    ROW_ID_MAY_HAVE_TIN,
    ROW_MAY_HAVE_TIN,
    ROWS,
    TYPED,
    Chunk,
    IngestResult,
    _Context,
    _drop_work,
    _lit,
    _pad_params,
    _q,
)
from dwatch.ingest.direct import (
    OUTSIDE,
    choose_direct,
    direct_field_sql,
    may_tin_text,
    session_is_utc,
    text_of,
)
from dwatch.ingest.fields import (
    _detect_kind,
    _field_sql,
    _fold_header,
    _source_text,
    _with_canonical_headers,
    refuse_unfit_layout,
)
from dwatch.ingest.instants import _dst_counts, _dst_warnings
from dwatch.ingest.stage import (
    GROUP_ROW,
    _heads,
    _json_key_path,
    _lazy_json_keys,
    _Stage,
    _stage_csv,
    _stage_jsonl,
    _stage_parquet,
    _stage_paths,
    _unmapped_warnings,
)
from dwatch.ingest.write import _derive_authority, _mark_duplicates
from dwatch.mapping import (
    CANONICAL,
    SourceMapping,
    get_mapping,
    match_mapping,
    not_logged_warning,
)
from dwatch.mapping_items import Expansion
from dwatch.mapping_lines import reshape_records, stage_text_lines
from dwatch.masking import (
    mask_path,
    sql_mask_text,
    sql_may_have_shape_any,
)
from dwatch.pseudonym import sql_pseudonymise
from dwatch.schema import TableSpec, load_schema


@dataclass
class _FieldPlan:
    """Where each canonical field's text comes from in the staged file."""

    kind: str
    table: TableSpec
    mapping: SourceMapping
    columns: list[str]
    path_columns: list[str]
    identifier_cols: list[str]
    texts: dict[str, str | None]
    extras: list[str]
    items: Expansion | None
    # Fields read straight from a typed column: field -> (column, its type).
    direct: dict[str, tuple[str, str]] = field(default_factory=dict)


def _plan_fields(
    con: duckdb.DuckDBPyConnection,
    stage: _Stage,
    fmt: str,
    path: Path,
    result: IngestResult,
    mapping: SourceMapping,
    kind: str | None,
    source: str | None,
    context: _Context,
) -> _FieldPlan:
    """Choose the mapping and kind from the header, then each field's source text; warn
    about unmapped and missing columns."""
    schema = load_schema()
    columns = stage.columns
    if (
        fmt == "csv"
        and columns == ["column0"]
        and not con.execute("SELECT count(*) FROM _stage").fetchone()[0]
    ):
        raise InputError("the file has no header and no records", where=str(path))
    if not source:
        matched = match_mapping(columns, mappings=context.source_mappings(), file_name=path.name)
        canonical_names = {f.name for t in schema.tables.values() for f in t.fields}
        # Canonical headers need no mapping, unless the file is named for one.
        if matched and (matched.match_files or not set(columns) <= canonical_names):
            mapping = matched
    mapping = _with_canonical_headers(columns, mapping)
    kind = kind or _detect_kind(columns, mapping)
    if kind is None:
        raise InputError(
            f"cannot tell whether this is events or request items from its columns {columns[:12]}",
            where=str(path),
            fix="pass --kind events|request_items, or --source NAME for a source mapping",
        )
    table = schema.events if kind == "events" else schema.items
    result.kind = kind
    result.source_system = None if mapping.is_canonical else mapping.name
    # One record per [*] item, or the records of a line log, first (dwatch.mapping_lines).
    items = reshape_records(con, LINES, fmt, mapping, columns, kind, path)
    if items is not None:
        mapping = items.mapping
        result.warnings += items.warnings
    path_columns = _stage_paths(con, stage, fmt, mapping)
    colset = set(columns) | set(path_columns) | set(items.columns if items else [])
    identifier_cols = [
        c
        for c in [*columns, *path_columns]
        if _fold_header(c) in schema.identifier_columns or c in mapping.identifiers
    ]
    texts: dict[str, str | None] = {
        f.name: _source_text(f, colset, mapping, identifier_cols) for f in table.input_fields
    }
    tried = [source] if source else sorted(context.source_mappings())
    refuse_unfit_layout(path, columns, kind, texts, tried)
    used = set(mapping.columns.values()) | {n for n in colset if n in texts} | set(identifier_cols)
    extras = [
        c
        for c in columns
        if c not in used and c not in mapping.ignore_columns and c != "_raw_line" and c != "_ok"
    ]
    extras = [c for c in extras if c not in _heads(path_columns)]
    plan = _FieldPlan(
        kind, table, mapping, columns, path_columns, identifier_cols, texts, extras, items
    )
    result.warnings += _file_warnings(plan, path)
    return plan


def _file_warnings(plan: _FieldPlan, path: Path) -> list[str]:
    """What the plan leaves out, said for one file (each file of a group hears it)."""
    warnings = not_logged_warning(plan.mapping, path)
    warnings += _unmapped_warnings(path, plan.extras, plan.path_columns)
    missing = [n for n in plan.table.required if plan.texts[n] is None]
    if missing:
        warnings.append(
            f"{path}: required column(s) {missing} are missing from the header; every record is"
            " quarantined (missing_column). Add the column or map it in a source mapping"
        )
    return warnings


def _typed_sql(
    plan: _FieldPlan, fmt: str, key: bytes, carry: tuple[str, ...] = ()
) -> tuple[str, str]:
    """The layered statement that builds TYPED, and the raw-record expression. ``carry``:
    staged columns passed through as they are (a group's file index and row number)."""
    table, mapping, texts, items = plan.table, plan.mapping, plan.texts, plan.items
    columns, path_columns, extras = plan.columns, plan.path_columns, plan.extras
    identifier_cols = plan.identifier_cols
    # Layered query: 1 texts, 2 helpers, 3 typed values, 4 index of the first failing
    # check, 5 reason/field/message (and the raw record) only for failing rows.
    layer1: list[str] = []
    layer2: list[str] = []
    layer2b: list[str] = []
    layer3: list[str] = []
    dst_helpers: list[str] = []
    checks: list[tuple[str, str, str, str]] = []  # (condition, code, field, message)
    if fmt == "jsonl":
        checks.append(
            (
                "NOT _ok",
                "malformed_json",
                "",
                "'the line is not a JSON object (truncated or malformed); fix or re-export the line'",
            )
        )
    checks += items.checks if items else []
    # One masking pre-test per row over its free text, one over its identifiers.
    text_columns: list[str] = []
    id_columns: list[str] = []
    escapable: list[str] = []  # lists read from JSON text (see below)
    for f in table.fields:
        text = texts.get(f.name)
        column, column_type = plan.direct.get(f.name, (None, None))
        if column is not None:
            text = _q(column)
        if text is None:
            layer3.append(f"CAST(NULL AS {f.type}) AS t__{f.name}")
            if f.required and not f.derived:
                message = f"column {f.name} is missing from the file; add it or map it in a source mapping"
                checks.append(("true", "missing_column", f.name, _lit(message)))
            continue
        spec = _field_sql(f, mapping) if column_type is None else direct_field_sql(f, column_type)
        # The pseudonym's hex digits would flag about a third of rows for the Python mask.
        if f.type in ("VARCHAR", "VARCHAR[]") and not f.pseudonym:
            tested = spec.x if column_type is None else may_tin_text(f, spec.x)
            (id_columns if f.identifier and f.type == "VARCHAR" else text_columns).append(tested)
            if f.type == "VARCHAR[]" and column_type is None:
                escapable.append(spec.x)
        layer1.append(f"{text} AS {spec.x}")  # already trimmed, '' as NULL
        layer2 += [f"{expr} AS {alias}" for alias, expr in spec.helpers]
        layer2b += [f"{expr} AS {alias}" for alias, expr in spec.helpers2]
        dst_helpers += [spec.dst] if spec.dst else []
        layer3.append(f"{spec.typed} AS {spec.t}")
        checks += [(cond, code, f.name, msg) for cond, code, msg in spec.checks]

    # Over layer 1 and the helpers (a direct list's joined elements are a helper).
    # A list read from JSON text is tested as that text, but stored as its decoded
    # elements: '["\u0031\u0032..."]' spells an SSN with no digit run the test could see.
    # A backslash in such a text flags the row, so its elements go through the mask.
    may_tin = sql_may_have_shape_any(text_columns)
    if escapable:
        may_tin = (
            "(" + " OR ".join([may_tin, *(f"contains({x}, chr(92))" for x in escapable)]) + ")"
        )
    layer2b.append(f"{may_tin} AS {ROW_MAY_HAVE_TIN}")
    layer2b.append(f"{sql_may_have_shape_any(id_columns)} AS {ROW_ID_MAY_HAVE_TIN}")
    raw_cols = [c for c in columns if c not in ("_raw_line", "_ok")]
    lazy = _lazy_json_keys(columns, mapping, path_columns) if fmt == "jsonl" else set()
    ident_set = set(identifier_cols)
    direct_types = {column: column_type for column, column_type in plan.direct.values()}

    def raw_value(c: str) -> str:
        column = text_of(_q(c), direct_types.get(c))
        if fmt == "jsonl" and c in lazy:
            column = f"json_extract_string(_raw_line, {_lit('$.' + _json_key_path(c))})"
        if c in ident_set or c == "taxpayer_ref":
            return sql_pseudonymise(column)
        return sql_mask_text(column)

    # Headers are text from outside too: a column named by an SSN is masked.
    raw_json = (
        "json_object("
        + ", ".join(f"{_lit(mask_path(c, key))}, {raw_value(c)}" for c in raw_cols)
        + ")"
        if raw_cols
        else "'{}'"
    )
    if fmt == "jsonl":
        raw_json = f"CASE WHEN _ok THEN {raw_json} ELSE to_json({sql_mask_text('_raw_line')}) END"
    extra_json = (
        "json_object("
        + ", ".join(f"{_lit(mask_path(c, key))}, {sql_mask_text(_q(c))}" for c in extras)
        + ")"
        if extras
        else "NULL"
    )
    if checks:
        check_index = (
            "CASE " + " ".join(f"WHEN {c[0]} THEN {i}" for i, c in enumerate(checks, 1)) + " END"
        )
        messages = (
            "CASE _check "
            + " ".join(f"WHEN {i} THEN {c[3]}" for i, c in enumerate(checks, 1))
            + " END"
        )
    else:
        check_index, messages = "CAST(NULL AS INTEGER)", "NULL"
    codes = "[" + ", ".join(_lit(c[1]) for c in checks) + "]::VARCHAR[]"
    fields = "[" + ", ".join(_lit(c[2]) for c in checks) + "]::VARCHAR[]"
    typed_names = ", ".join(f"t__{f.name}" for f in table.fields)
    dst_flag = f"coalesce({', '.join(dst_helpers)})" if dst_helpers else "CAST(NULL AS VARCHAR)"
    sql = (
        f"CREATE TEMP TABLE {TYPED} AS SELECT {typed_names},"
        f" ({codes})[_check] AS _reason, nullif(({fields})[_check], '') AS _field,"
        f" CASE WHEN _check IS NOT NULL THEN {messages} END AS _message, _extra, {dst_flag} AS _dst,"
        f" CASE WHEN _check IS NOT NULL THEN {raw_json} END AS _raw"
        # Reshaped records (dwatch.mapping_lines) keep the file line each came from.
        + (f", {items.line_sql} AS _line" if items else "")
        + "".join(f", {_q(c)}" for c in carry)
        + f" FROM (SELECT *, {check_index} AS _check"
        f" FROM (SELECT *, {', '.join(layer3)}"
        f" FROM (SELECT *{', ' + ', '.join(layer2b) if layer2b else ''}"
        f" FROM (SELECT *{', ' + ', '.join(layer2) if layer2 else ''}"
        f" FROM (SELECT {', '.join([*layer1, extra_json + ' AS _extra'])}, s.* FROM _stage s)))))"
    )
    return sql, raw_json


def _stage_file(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    fmt: str,
    mapping: SourceMapping,
    skip_if_loaded: Callable[[], None],
    span: tuple[int, int] | None = None,
) -> _Stage:
    """Stage the file as text columns (the _stage view), by format (``span``: a Parquet
    file's row range)."""
    if fmt != "csv":
        skip_if_loaded()  # staging JSON Lines reads every line: decide first
    if fmt == "csv":
        # Fast path: a strict scan runs in parallel (DuckDB's store_rejects makes the scan
        # single-threaded). A file with a malformed line fails it and is read again below,
        # this time keeping every rejected line for quarantine.
        # The tolerant reader's sniff is the reference: the fast path is used only when it
        # sees the same header.
        tolerant_columns = _stage_csv(con, path, mapping, rejects=True).columns
        try:
            stage = _stage_csv(con, path, mapping, rejects=False)
            fast = stage.columns == tolerant_columns
        except (duckdb.InvalidInputException, duckdb.ConversionException):
            fast = False
        if not fast:
            stage = _stage_csv(con, path, mapping, rejects=True)
        skip_if_loaded()  # the sniffs above only read a sample, beside the hashing
    elif fmt == "jsonl":
        stage = _stage_jsonl(con, path)
    elif fmt == "lines":
        stage = _Stage(stage_text_lines(con, LINES, path), header_lines=0, rejects=False)
    else:
        stage = _stage_parquet(con, path, span=span)
    return stage


def _number_rows(con: duckdb.DuckDBPyConnection, stage: _Stage) -> None:
    """The ROWS view: each typed row with its record number in the file."""
    # The scan runs in parallel but DuckDB keeps insertion order, so rowid is the record
    # index (WITH ORDINALITY would force a single-threaded scan). Lines the reader rejected
    # before a record are added back so record numbers match the file's lines.
    if stage.numbered:
        con.execute(
            f"CREATE TEMP VIEW {ROWS} AS SELECT rowid AS _rid, {GROUP_ROW} AS _row, * FROM {TYPED}"
        )
    elif stage.rejects and con.execute("SELECT count(*) FROM _rejects").fetchone()[0]:
        con.execute(
            f"CREATE TEMP TABLE {REJECT_OFFSETS} AS SELECT line - ? - row_number() OVER (ORDER BY line) AS e,"
            " row_number() OVER (ORDER BY line) AS n FROM (SELECT DISTINCT line FROM _rejects)",
            [stage.header_lines],
        )
        con.execute(
            f"CREATE TEMP VIEW {ROWS} AS SELECT t.rowid AS _rid, t.rowid + 1 + coalesce(r.n, 0) AS _row, t.*"
            f" FROM {TYPED} t ASOF LEFT JOIN {REJECT_OFFSETS} r ON t.rowid + 1 > r.e"
        )
    else:
        con.execute(
            f"CREATE TEMP VIEW {ROWS} AS SELECT rowid AS _rid, rowid + 1 AS _row, * FROM {TYPED}"
        )


def _load(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    fmt: str,
    result: IngestResult,
    *,
    kind: str | None,
    source: str | None,
    key: bytes,
    context: _Context,
    skip_if_loaded: Callable[[], None],
    chunk: Chunk | None = None,
) -> str:
    """Stage the file and build the typed work table (one row per record, reason NULL when good).
    ``chunk``: only one row range of a Parquet file (dwatch.ingest.chunks).

    Returns the SQL expression that renders a record's raw form for quarantine."""
    _drop_work(con)
    mapping = get_mapping(source) if source else CANONICAL
    con.execute("DROP TABLE IF EXISTS _rejects")
    con.execute("DROP TABLE IF EXISTS _rejects_scan")
    span = (chunk.first, chunk.last) if chunk else None
    stage = _stage_file(con, path, fmt, mapping, skip_if_loaded, span)
    plan = _plan_fields(con, stage, fmt, path, result, mapping, kind, source, context)
    table, mapping, kind = plan.table, plan.mapping, plan.kind
    if fmt == "parquet":
        layout = list(stage.types.items())
        raw_json = build_typed(
            con,
            plan,
            fmt,
            key,
            stage,
            lambda direct: _stage_parquet(con, path, layout, direct, span),
            (GROUP_ROW,) if chunk else (),
            retry=chunk is None,  # a failed statement ends the chunks' transaction
            direct=chunk is None or chunk.direct,
        )
    else:
        raw_json, stage = _build_text(con, plan, fmt, key, stage, path)
    _number_rows(con, stage)
    # Before duplicates are marked: a duplicate's quarantined raw form is its typed values.
    _mark_duplicates(
        con,
        table,
        kind,
        seen=chunk.seen if chunk else None,
        loading=result.run_id if chunk else None,
    )
    result.warnings += _derive_authority(con, kind, context)
    if chunk is None:
        result.warnings += _dst_warnings(con, mapping)
    else:
        chunk.mapping = mapping
        for case, n in _dst_counts(con).items():
            chunk.dst[case] = chunk.dst.get(case, 0) + n
    return raw_json


def _build_text(
    con: duckdb.DuckDBPyConnection,
    plan: _FieldPlan,
    fmt: str,
    key: bytes,
    stage: _Stage,
    path: Path,
) -> tuple[str, _Stage]:
    """Build TYPED from a text stage; a CSV file whose fast scan fails is scanned again
    keeping rejected lines. Returns the raw record's SQL and the stage used."""
    sql, raw_json = _typed_sql(plan, fmt, key)
    try:
        con.execute(sql, _pad_params(key, sql))
    except (duckdb.InvalidInputException, duckdb.ConversionException):
        if fmt != "csv" or stage.rejects:
            raise
        con.execute(f"DROP TABLE IF EXISTS {TYPED}")
        rescan = _stage_csv(con, path, plan.mapping, rejects=True)
        if rescan.columns != stage.columns:
            raise
        stage = rescan
        con.execute(sql, _pad_params(key, sql))
    return raw_json, stage


def build_typed(
    con: duckdb.DuckDBPyConnection,
    plan: _FieldPlan,
    fmt: str,
    key: bytes,
    stage: _Stage,
    restage: Callable[[frozenset[str]], object],
    carry: tuple[str, ...] = (),
    *,
    retry: bool = True,
    direct: bool = True,
) -> str:
    """Build TYPED from a Parquet stage, typed columns read straight through where they
    have their field's type (dwatch.ingest.direct); a value outside the range where that is
    exact builds it again through text. Returns the raw record's SQL."""
    plan.direct = (
        choose_direct(plan, stage.types, session_is_utc(con))
        if ingest_direct.DIRECT and direct
        else {}
    )
    if plan.direct:
        restage(frozenset(column for column, _ in plan.direct.values()))
    sql, raw_json = _typed_sql(plan, fmt, key, carry=carry)
    try:
        con.execute(sql, _pad_params(key, sql))
    except duckdb.InvalidInputException as exc:
        if not plan.direct or OUTSIDE not in str(exc) or not retry:
            raise
        con.execute(f"DROP TABLE IF EXISTS {TYPED}")
        plan.direct = {}
        restage(frozenset())
        sql, raw_json = _typed_sql(plan, fmt, key, carry=carry)
        con.execute(sql, _pad_params(key, sql))
    return raw_json
