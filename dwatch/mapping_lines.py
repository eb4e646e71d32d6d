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


def stage_text_lines(con: duckdb.DuckDBPyConnection, lines: str, path: Path) -> list[str]:
    """Stage a text log as ``lines`` (line, _ok) and the ``_stage`` view over it; returns
    the staged columns (['line'])."""
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {lines} AS SELECT line, true AS _ok"
        " FROM read_csv($path, columns = {'line': 'VARCHAR'}, header = false,"
        " delim = chr(31), quote = '', escape = '', auto_detect = false,"
        " max_line_size = 16777216)",
        {"path": str(path)},
    )
    con.execute(f"CREATE OR REPLACE TEMP VIEW _stage AS SELECT * EXCLUDE (_ok) FROM {lines}")
    return ["line"]


def _source(column: str, fmt: str, where: str) -> str:
    if fmt == "lines":
        if column != "line":
            raise ConfigError(
                f"a text log has one column, line, not {column!r}",
                where=where,
                fix="extract from line, and name the parts with groups",
            )
        return "line"
    return f"CASE WHEN _ok THEN json_extract_string(line, {sql_literal(json_path_of(column))}) END"


def _derived_sql(mapping: SourceMapping, fmt: str, lines: str) -> tuple[str, list[str]]:
    """SELECT over ``lines`` adding _line, each group, _record and _unparsed."""
    rules = mapping.lines
    where = f"{mapping.path or mapping.name}"
    sources, tests, picks = [], [], []
    unparsed = []
    by_group: dict[str, list[tuple[str, str]]] = {n: [] for n in rules.groups()}
    for i, (column, patterns) in enumerate(rules.extract.items()):
        sources.append(f"{_source(column, fmt, f'{where}: extract.{column}')} AS _src{i}")
        matched = []
        for j, pattern in enumerate(patterns):
            names = group_names(pattern)
            tests.append(f"regexp_matches(_src{i}, {sql_literal(pattern)}) AS _m{i}_{j}")
            if names:
                listed = "[" + ", ".join(sql_literal(n) for n in names) + "]"
                tests.append(
                    f"regexp_extract(_src{i}, {sql_literal(pattern)}, {listed}) AS _g{i}_{j}"
                )
            matched.append(f"_m{i}_{j}")
            for name in by_group:
                value = f"_g{i}_{j}.{name}" if name in names else "NULL"
                by_group[name].append((f"_m{i}_{j}", value))
        unparsed.append(f"(_src{i} IS NOT NULL AND NOT ({' OR '.join(matched)}))")
    for name, arms in by_group.items():
        cases = " ".join(f"WHEN {m} THEN {v}" for m, v in arms)
        picks.append(f"nullif(CASE {cases} END, '') AS {name}")
    record = " AND ".join(
        f"coalesce(regexp_matches({_source(c, fmt, f'{where}: records.{c}')}, {sql_literal(p)}), false)"
        for c, p in rules.records.items()
    )
    flags = [
        f"{'NOT _ok OR (' + record + ')' if record else 'true'} AS _record",
        f"_ok AND ({' OR '.join(unparsed) if unparsed else 'false'}) AS _unparsed",
    ]
    by = rules.fill_down_within
    if by is not None and by not in by_group:  # a column of the file, not a group
        by = _source(by, fmt, f"{where}: fill_down_within")
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
        f" FROM (SELECT *{', ' + ', '.join(tests) if tests else ''}"
        f" FROM (SELECT *{', ' + ', '.join(sources) if sources else ''}"
        f" FROM (SELECT *, rowid + 1 AS _line FROM {lines})))))"
    )
    return sql, groups


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
    con.execute(f"CREATE TEMP TABLE {lines}_all AS {sql}")
    context = con.execute(f"SELECT count(*) FROM {lines}_all WHERE NOT _record").fetchone()
    con.execute(f"DROP TABLE {lines}")
    con.execute(
        f"CREATE TEMP TABLE {lines} AS SELECT * EXCLUDE (_record) FROM {lines}_all"
        " WHERE _record ORDER BY _line"
    )
    con.execute(f"DROP TABLE {lines}_all")
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
