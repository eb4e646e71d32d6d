"""Read and stage each format (CSV, JSON Lines, Parquet) as text columns in the _stage view."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from dwatch.csv_trouble import header_dialect, unclosed_quote_line
from dwatch.errors import InputError
from dwatch.ingest.base import LINES, _lit, _q
from dwatch.mapping import (
    SourceMapping,
    split_path,
)


@dataclass
class _Stage:
    columns: list[str]
    header_lines: int
    rejects: bool  # whether _rejects holds parse-level rejects
    # A Parquet file's column types; a column named in ``direct`` is staged as it is
    # (dwatch.ingest.direct), every other column as text.
    types: dict[str, str] = field(default_factory=dict)
    direct: frozenset[str] = frozenset()
    numbered: bool = False  # GROUP_ROW holds each record's number in the file (from 1)


# Columns a group's staging adds beside the file's own: which file (its index in the
# group) and which row of it (from 1). A file with a column of these names loads alone.
GROUP_FILE, GROUP_ROW = "_gfile", "_grow"
_READER_FILE = "_dwatch_file"
GROUP_RESERVED = {GROUP_FILE, GROUP_ROW, _READER_FILE, "file_row_number"}

_REJECT_ARGS = [
    "store_rejects = true",
    "rejects_table = '_rejects'",
    "rejects_scan = '_rejects_scan'",
    "rejects_limit = 0",
]


def _csv_options(path: Path, mapping: SourceMapping) -> dict[str, str | None]:
    """Delimiter (None: sniffed), quote and escape a CSV file is read with."""
    opts: dict[str, str | None] = {"delim": None, "quote": '"', "escape": '"'}
    opts.update(mapping.csv_options)
    if path.suffix.lower() == ".tsv":
        opts["delim"] = "\t"
    return opts


def _stage_csv(
    con: duckdb.DuckDBPyConnection, path: Path, mapping: SourceMapping, *, rejects: bool
) -> _Stage:
    opts = _csv_options(path, mapping)
    args = [
        "all_varchar = true",
        "header = true",
        *(_REJECT_ARGS if rejects else []),
        "max_line_size = 16777216",
    ]
    params: dict[str, object] = {"path": str(path)}
    for key in ("delim", "quote", "escape"):
        if opts.get(key) is not None:
            args.append(f"{key} = ${key}")
            params[key] = opts[key]
    try:
        con.execute(_csv_view_sql(path, args, params))
    except duckdb.InvalidInputException:
        _name_unclosed_quote(path, opts)
        raise
    # The view's columns were fixed when it was created (one sniff); DESCRIBE would sniff again.
    cols = [
        r[0]
        for r in con.execute(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_catalog = 'temp' AND table_name = '_stage'"
            " ORDER BY ordinal_position"
        ).fetchall()
    ]
    if len(cols) == 1:
        _name_unclosed_quote(path, opts)
    return _Stage(cols, header_lines=1, rejects=rejects)


def _name_unclosed_quote(path: Path, opts: dict[str, str | None]) -> None:
    """The sniffer gave up or saw one column: one unclosed quote makes every dialect look
    wrong. If the header has columns and a line leaves a quote open, say which line."""
    quote = opts.get("quote")
    if header_dialect(path, opts.get("delim"), quote) is None:
        return
    line = unclosed_quote_line(path, quote)
    if line is not None:
        raise InputError(
            f"line {line} opens a quote ({quote or chr(34)}) it never closes, so the reader"
            " cannot tell where that record ends",
            where=str(path),
            fix="close the quote on that line (a quote inside a field is written twice),"
            " or remove the line, and load the file again",
        )


def _csv_view_sql(path: Path, args: list[str], params: dict[str, object]) -> str:
    # Views cannot take parameters: inline the (escaped) values. The scan runs once, when
    # _typed is built, so the file is parsed a single time.
    inlined = []
    for arg in args:
        name, _, value = arg.partition(" = ")
        if value.startswith("$"):
            inlined.append(f"{name} = {_lit(str(params[value[1:]]))}")
        else:
            inlined.append(arg)
    return (
        "CREATE OR REPLACE TEMP VIEW _stage AS SELECT * FROM "
        f"read_csv({_lit(str(path))}, {', '.join(inlined)})"
    )


def _stage_jsonl(con: duckdb.DuckDBPyConnection, path: Path) -> _Stage:
    # Read physical lines (so a truncated or invalid line is one bad record, not a failed
    # file), then take the keys seen in valid objects as the columns. As for CSV, a strict
    # scan runs first (store_rejects makes the scan single-threaded); a file with invalid
    # UTF-8 or an over-long line is read again keeping those lines for quarantine.
    for rejects in (False, True):
        try:
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE {LINES} AS SELECT line,"
                # CASE, not AND: DuckDB's AND does not short-circuit and json_type rejects
                # bad JSON. A line starting with '{' that is valid JSON is an object: one
                # parse, not two.
                " CASE WHEN starts_with(line, '{') THEN json_valid(line)"
                " WHEN json_valid(line) THEN json_type(line) = 'OBJECT' ELSE false END AS _ok"
                " FROM read_csv($path, columns = {'line': 'VARCHAR'}, header = false,"
                " delim = chr(31), quote = '', escape = '', auto_detect = false,"
                f" {', '.join(_REJECT_ARGS) + ',' if rejects else ''} max_line_size = 16777216)",
                {"path": str(path)},
            )
            break
        except (duckdb.InvalidInputException, duckdb.ConversionException):
            if rejects:
                raise
    keys = [
        r[0]
        for r in con.execute(
            "SELECT k FROM (SELECT unnest(json_keys(CASE WHEN _ok THEN line END)) AS k, min(rowid) AS first"
            f" FROM {LINES} GROUP BY 1) ORDER BY first, k"
        ).fetchall()
    ]
    _jsonl_view(con, keys, {})
    return _Stage(keys, header_lines=0, rejects=rejects)


def _jsonl_view(con: duckdb.DuckDBPyConnection, keys: list[str], paths: dict[str, str]) -> None:
    """The staging view over the lines: one parse per line extracts every top-level key and
    every nested path (``paths``: staged name -> JSON path) at once; the list is indexed."""
    json_paths = [_lit("$." + _json_key_path(k)) for k in keys]
    json_paths += [_lit(p) for p in paths.values()]
    listed = "[" + ", ".join(json_paths) + "]" if json_paths else "['$.none']"
    names = [*keys, *paths]
    selects = ", ".join(f"_vals[{i + 1}] AS {_q(k)}" for i, k in enumerate(names))
    # Columns beside line and _ok (dwatch.mapping_lines: item positions, extracted groups,
    # line numbers) pass through.
    con.execute(
        "CREATE OR REPLACE TEMP VIEW _stage AS SELECT * EXCLUDE (_vals)"
        + (", " + selects if selects else "")
        + " FROM (SELECT * EXCLUDE (line), line AS _raw_line,"
        f" CASE WHEN _ok THEN json_extract_string(line, {listed}) END AS _vals FROM {LINES})"
    )


def _heads(paths: dict[str, str] | list[str]) -> set[str]:
    """Top-level keys of dotted paths ('user' of 'user.id')."""
    return {split_path(p)[0] for p in paths}  # type: ignore[index]


def _unmapped_warnings(path: Path, extras: list[str], path_columns: list[str]) -> list[str]:
    """Columns the mapping leaves unmapped, said once per file. A nested key read at paths
    is not kept whole (a quarantined record keeps its raw form whole)."""
    warnings = []
    if extras:
        warnings.append(
            f"{path}: column(s) {extras} are not canonical; kept in the extra column (JSON)."
            " Map them in a source mapping or list them under ignore_columns"
        )
    if path_columns:
        warnings.append(
            f"{path}: nested key(s) {sorted(_heads(path_columns))} are read only at the mapped"
            f" paths {sorted(path_columns)}; other fields inside them are not kept. Map more"
            " paths in the source mapping if they matter"
        )
    return warnings


def _lazy_json_keys(
    keys: list[str], mapping: SourceMapping, paths: dict[str, str] | list[str]
) -> set[str]:
    """JSON keys not extracted per line: read only at dotted paths, or ignored."""
    return (_heads(paths) | set(mapping.ignore_columns)) & set(keys)


def _stage_paths(
    con: duckdb.DuckDBPyConnection, stage: _Stage, fmt: str, mapping: SourceMapping
) -> list[str]:
    """Stage the mapping's dotted paths into nested records (``user.id``, ``items[0].name``)
    as columns named by the path; returns their names.

    JSON Lines: added to the one json_extract_string pass over each line. Parquet: read
    from the nested column's JSON form. CSV has no nesting: a dotted name is a header."""
    if fmt == "csv":
        return []
    present = set(stage.columns)
    paths: dict[str, str] = {}
    heads: dict[str, str] = {}
    for written in [*mapping.columns.values(), *mapping.identifiers]:
        split = split_path(written)
        if written in present or split is None or split[0] not in present:
            continue
        heads[written], rest = split
        paths[written] = "$." + _json_key_path(split[0]) + rest[1:]
        if fmt == "parquet":
            paths[written] = rest
    if fmt == "jsonl":
        # A key read only at paths or ignored is not extracted whole for every line
        # (re-serialising objects is the costliest part of the pass); a quarantined line's
        # raw form reads it from the line itself.
        lazy = _lazy_json_keys(stage.columns, mapping, paths)
        if paths or lazy:
            _jsonl_view(con, [c for c in stage.columns if c not in lazy], paths)
        return list(paths)
    if not paths:
        return []
    else:
        selects = ", ".join(
            f"json_extract_string(s.{_q(heads[name])}, {_lit(path)}) AS {_q(name)}"
            for name, path in paths.items()
        )
        con.execute("ALTER VIEW _stage RENAME TO _stage_top")
        con.execute(f"CREATE TEMP VIEW _stage AS SELECT s.*, {selects} FROM _stage_top s")
    return list(paths)


def _json_key_path(key: str) -> str:
    return '"' + key.replace('"', '\\"') + '"'


def parquet_layout(con: duckdb.DuckDBPyConnection, path: Path) -> list[tuple[str, str]]:
    """A Parquet file's columns and their types (read from its footer, not its rows)."""
    described = con.execute(
        "DESCRIBE SELECT * FROM read_parquet($path)", {"path": str(path)}
    ).fetchall()
    return [(str(d[0]), str(d[1])) for d in described]


def _parquet_texts(layout: list[tuple[str, str]], direct: frozenset[str] = frozenset()) -> str:
    selects = []
    for name, typ in layout:
        if name in direct:
            selects.append(_q(name))
        elif typ.endswith("[]") or typ.startswith(("STRUCT", "MAP")):
            selects.append(f"CAST(to_json({_q(name)}) AS VARCHAR) AS {_q(name)}")
        else:
            selects.append(f"CAST({_q(name)} AS VARCHAR) AS {_q(name)}")
    return ", ".join(selects)


def _stage_parquet(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    layout: list[tuple[str, str]] | None = None,
    direct: frozenset[str] = frozenset(),
    span: tuple[int, int] | None = None,
) -> _Stage:
    """Stage a Parquet file; ``span``: only records ``first`` to ``last`` - 1 (from 0), each
    with its number in the file (row groups outside the range are not read)."""
    layout = layout if layout is not None else parquet_layout(con, path)
    selects, reader = _parquet_texts(layout, direct), f"read_parquet({_lit(str(path))})"
    if span is not None:
        selects += f", file_row_number + 1 AS {GROUP_ROW}"
        reader = (
            f"read_parquet({_lit(str(path))}, file_row_number = true)"
            f" WHERE file_row_number >= {int(span[0])} AND file_row_number < {int(span[1])}"
        )
    con.execute(f"CREATE OR REPLACE TEMP VIEW _stage AS SELECT {selects} FROM {reader}")
    names = [name for name, _ in layout]
    return _Stage(
        names,
        header_lines=0,
        rejects=False,
        types=dict(layout),
        direct=direct,
        numbered=span is not None,
    )


def csv_layout(
    con: duckdb.DuckDBPyConnection, path: Path, mapping: SourceMapping
) -> tuple[tuple[str, str, str], list[str]] | None:
    """A CSV file's dialect (delimiter, quote, escape) and header as the sniffer reads them
    with the options loading uses, or None when it needs the reader of its own (no
    header, lines to skip, a comment marker, or one column: maybe an unclosed quote)."""
    opts = _csv_options(path, mapping)
    given = {k: v for k, v in opts.items() if v is not None}
    args = "".join(f", {k} = ${k}" for k in given)
    row = con.execute(
        "SELECT Delimiter, SkipRows, HasHeader, Comment, Columns FROM sniff_csv($path,"
        f" all_varchar = true, header = true, max_line_size = 16777216{args})",
        {"path": str(path), **given},
    ).fetchone()
    if row is None:
        return None
    delimiter, skip, header, comment, columns = row
    names = [str(c["name"]) for c in columns]
    if skip or not header or comment not in (None, "", "(empty)") or len(names) < 2:
        return None
    return (str(delimiter), str(opts["quote"]), str(opts["escape"])), names


def _stage_csv_group(
    con: duckdb.DuckDBPyConnection,
    paths: list[Path],
    dialect: tuple[str, str, str],
    columns: list[str],
) -> _Stage:
    """Stage CSV files of one dialect and header as one view, each row with its file's
    index in ``paths``. The scan is strict (a malformed line fails it: the group then loads
    file by file, where rejected lines are kept for quarantine). Rows arrive in file and
    line order, as for one file (DuckDB keeps insertion order); the caller checks it."""
    listed = "[" + ", ".join(_lit(str(p)) for p in paths) + "]"
    delim, quote, escape = (_lit(v) for v in dialect)
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW _stage AS SELECT * EXCLUDE ({_READER_FILE}),"
        f" CAST(list_position({listed}, {_READER_FILE}) - 1 AS INTEGER) AS {GROUP_FILE}"
        f" FROM read_csv({listed}, all_varchar = true, header = true, max_line_size = 16777216,"
        f" delim = {delim}, quote = {quote}, escape = {escape}, filename = {_lit(_READER_FILE)})"
    )
    staged = [
        r[0]
        for r in con.execute(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_catalog = 'temp' AND table_name = '_stage' ORDER BY ordinal_position"
        ).fetchall()
    ]
    if staged != [*columns, GROUP_FILE]:
        raise InputError(
            "the files' headers read differently together than alone", where=str(paths[0])
        )
    return _Stage(columns, header_lines=1, rejects=False)


def _stage_parquet_group(
    con: duckdb.DuckDBPyConnection,
    paths: list[Path],
    layout: list[tuple[str, str]],
    direct: frozenset[str] = frozenset(),
) -> _Stage:
    """Stage Parquet files of one layout as one view: one scan, each row with its file's
    index in ``paths`` and its row number in that file (not the scan's order)."""
    listed = "[" + ", ".join(_lit(str(p)) for p in paths) + "]"
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW _stage AS SELECT {_parquet_texts(layout, direct)},"
        f" CAST(list_position({listed}, {_READER_FILE}) - 1 AS INTEGER) AS {GROUP_FILE},"
        f" file_row_number + 1 AS {GROUP_ROW}"
        f" FROM read_parquet({listed}, filename = {_lit(_READER_FILE)}, file_row_number = true)"
    )
    names = [name for name, _ in layout]
    return _Stage(names, header_lines=0, rejects=False, types=dict(layout), direct=direct)
