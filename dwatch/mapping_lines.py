"""Logs written as lines of text (.log) and messages inside JSON Lines: apply a mapping's
extract / records / fill_down (dwatch/line_rules.py) to the staged lines before mapping.

A ``.log`` file is staged as one column, ``line`` (:func:`stage_text_lines`). The mapping's
patterns turn each line (or a JSON key such as journald's MESSAGE) into named columns;
context lines (those ``records`` does not select) lend values to later records through
``fill_down`` and are then set aside. What "rows read" counts here: records (and, in JSON
Lines, lines that cannot be read); context lines are counted and said once per file, not
rows. A record no pattern reads is quarantined as ``unparsed_line`` with its raw line.

:func:`reshape_records` is the one hook ingest calls: it expands ``[*]`` lists
(dwatch/mapping_items.py) or applies line rules, whichever the mapping asks for.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from dwatch.errors import ConfigError, InputError
from dwatch.line_rules import group_names
from dwatch.mapping import SourceMapping
from dwatch.mapping_items import Expansion, expand_items, json_path_of, sql_literal

UNPARSED = "unparsed_line"
_REJECTS = (
    " store_rejects = true, rejects_table = '_rejects', rejects_scan = '_rejects_scan',"
    " rejects_limit = 0,"
)


def stage_text_lines(con: duckdb.DuckDBPyConnection, lines: str, path: Path) -> list[str]:
    """Stage a text log as ``lines`` (line, _ok) and the ``_stage`` view over it; returns
    the staged columns (['line'])."""
    # As for JSON Lines: a strict scan first; a file with invalid UTF-8 is read again keeping
    # those lines in _rejects, which ingest quarantines (invalid_utf8).
    for rejects in ("", _REJECTS):
        try:
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE {lines} AS SELECT line, true AS _ok"
                " FROM read_csv($path, columns = {'line': 'VARCHAR'}, header = false,"
                f" delim = chr(31), quote = '', escape = '', auto_detect = false,{rejects}"
                " max_line_size = 16777216)",
                {"path": str(path)},
            )
            break
        except (duckdb.InvalidInputException, duckdb.ConversionException):
            if rejects:
                raise
    con.execute(f"CREATE OR REPLACE TEMP VIEW _stage AS SELECT * EXCLUDE (_ok) FROM {lines}")
    return ["line"]


def _sources(columns: list[str], fmt: str, where: str) -> tuple[str, dict[str, str]]:
    """SQL for the per-line texts the rules read (JSON Lines: one parse for all keys), and
    each column's expression over it."""
    if fmt == "lines":
        for column in columns:
            if column != "line":
                raise ConfigError(
                    f"a text log has one column, line, not {column!r}",
                    where=where,
                    fix="extract from line, and name the parts with groups",
                )
        return "", {"line": "line"}
    paths = ", ".join(sql_literal(json_path_of(c)) for c in columns)
    per_line = f", CASE WHEN _ok THEN json_extract_string(line, [{paths}]) END AS _srcs"
    return per_line, {c: f"_srcs[{i}]" for i, c in enumerate(columns, 1)}


def _derived_sql(mapping: SourceMapping, fmt: str, lines: str) -> tuple[str, list[str]]:
    """SELECT over ``lines`` adding _line, each group, _record and _unparsed.

    Per line and extract column: the index of the first pattern that matches (later
    patterns are tried only on lines the earlier ones missed), then that pattern's groups
    only; a window carries fill_down values within a session."""
    rules = mapping.lines
    where = f"{mapping.path or mapping.name}"
    by = rules.fill_down_within
    within_column = [by] if by is not None and by not in rules.groups() else []
    keys = list(dict.fromkeys([*rules.extract, *rules.records, *within_column]))
    per_line, source = _sources(keys, fmt, f"{where}: extract")
    which, extracts, picks, unparsed = [], [], [], []
    by_group: dict[str, list[tuple[str, str]]] = {n: [] for n in rules.groups()}
    for i, (column, patterns) in enumerate(rules.extract.items()):
        src = source[column]
        arms = " ".join(
            f"WHEN regexp_matches({src}, {sql_literal(p)}) THEN {j}" for j, p in enumerate(patterns)
        )
        which.append(f"CASE {arms} END AS _k{i}")
        for j, pattern in enumerate(patterns):
            names = group_names(pattern)
            if names:
                listed = "[" + ", ".join(sql_literal(n) for n in names) + "]"
                extracts.append(
                    f"CASE WHEN _k{i} = {j} THEN regexp_extract({src}, {sql_literal(pattern)},"
                    f" {listed}) END AS _g{i}_{j}"
                )
            for name in by_group:
                value = f"_g{i}_{j}.{name}" if name in names else "NULL"
                by_group[name].append((f"_k{i} = {j}", value))
        unparsed.append(f"({src} IS NOT NULL AND _k{i} IS NULL)")
    for name, arms_ in by_group.items():
        cases = " ".join(f"WHEN {m} THEN {v}" for m, v in arms_)
        picks.append(f"nullif(CASE {cases} END, '') AS {name}")
    record = " AND ".join(
        f"coalesce(regexp_matches({source[c]}, {sql_literal(p)}), false)"
        for c, p in rules.records.items()
    )
    flags = [
        f"{'NOT _ok OR (' + record + ')' if record else 'true'} AS _record",
        f"_ok AND ({' OR '.join(unparsed) if unparsed else 'false'}) AS _unparsed",
    ]
    if within_column:  # a column of the file, not a group
        by = source[by]
    within = f"PARTITION BY {by} " if by else ""
    filled = [
        f"last_value({n} IGNORE NULLS) OVER ({within}ORDER BY _line"
        f" ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS {n}"
        for n in rules.fill_down
    ]
    groups = list(by_group)
    kept = ", ".join(["line", "_ok", "_line", *groups, "_unparsed"])
    sql = (
        f"SELECT {kept}, _record FROM (SELECT *"
        + (f" REPLACE ({', '.join(filled)})" if filled else "")
        + f" FROM (SELECT *, {', '.join([*picks, *flags])}"
        f" FROM (SELECT *{', ' + ', '.join(extracts) if extracts else ''}"
        f" FROM (SELECT *{', ' + ', '.join(which) if which else ''}"
        f" FROM (SELECT *, rowid + 1 AS _line{per_line} FROM {lines})))))"
    )
    return sql, groups


def _count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    row = con.execute(f"SELECT count(*) FROM {table}").fetchone()
    return int(row[0]) if row else 0


def derive_lines(
    con: duckdb.DuckDBPyConnection,
    lines: str,
    fmt: str,
    mapping: SourceMapping,
    keys: list[str],
    path: Path,
) -> Expansion | None:
    """Replace the staged ``lines`` by its records with the extracted columns; None when
    the mapping has no line rules."""
    if not mapping.lines.active:
        return None
    if fmt not in ("lines", "jsonl"):
        raise InputError(
            f"the mapping reads lines (extract, records), from .log text or JSON Lines, not {fmt}",
            where=str(path),
            fix="export the log as text lines or JSON Lines, or map its columns directly",
        )
    clash = [g for g in mapping.lines.groups() if g in keys]
    if clash:
        raise ConfigError(
            f"extract group(s) {clash} have the names of columns the file already has",
            where=f"{mapping.path or mapping.name}: extract",
            fix="rename the groups",
        )
    sql, groups = _derived_sql(mapping, fmt, lines)
    # A window (fill_down) does not keep the file's order: put it back. Without one the
    # scan's order is kept (DuckDB preserves insertion order), so no sort is paid.
    order = " ORDER BY _line" if mapping.lines.fill_down else ""
    before = _count(con, lines)
    con.execute(
        f"CREATE TEMP TABLE {lines}_records AS SELECT * EXCLUDE (_record) FROM ({sql})"
        f" WHERE _record{order}"
    )
    con.execute(f"DROP TABLE {lines}")
    con.execute(f"ALTER TABLE {lines}_records RENAME TO {lines.split('.')[-1]}")
    context = [before - _count(con, lines)]
    warnings = []
    if context and context[0]:
        warnings.append(
            f"{path}: {context[0]} line(s) are not records (records: in the source mapping):"
            " read for their values (fill_down) only, not counted as rows"
        )
    message = (
        "'the record matches none of the extract patterns of the source mapping; the system"
        " wrote a form the mapping does not know: add a pattern for it'"
    )
    return Expansion(
        mapping=mapping,
        columns=groups,
        checks=[("_unparsed", UNPARSED, "", message)],
        line_sql="_line",
        warnings=warnings,
    )


def reshape_records(
    con: duckdb.DuckDBPyConnection,
    lines: str,
    fmt: str,
    mapping: SourceMapping,
    keys: list[str],
    kind: str,
    path: Path,
) -> Expansion | None:
    """One record per [*] item, or the records of a line log; None when neither applies."""
    expanded = expand_items(con, lines, fmt, mapping, keys, kind, path)
    return expanded or derive_lines(con, lines, fmt, mapping, keys, path)
