"""Ingest: disclosure logs (CSV, JSON Lines, Parquet) into the store, nothing lost.

Every input record ends in exactly one of ``disclosure_events`` / ``request_items`` and
``quarantine`` (which keeps file, row, line, the raw record with identifiers
pseudonymised, a reason code, the field and a message). Each file is one transaction,
recorded in ``ingest_runs``; the same content is not loaded twice unless forced.

The work is set-wise in DuckDB: the file is scanned once into a staging table of text
columns, one SQL statement converts and checks every field (reason per row), and two
filtered INSERTs split good rows from bad. DuckDB streams the scan and spills to disk
under its memory limit, so files larger than memory load with bounded memory.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from dwatch import ledger, progress
from dwatch.csv_trouble import header_dialect, overlong_line, unclosed_quote_line
from dwatch.errors import ConfigError, DWatchError, InputError
from dwatch.localtime import dst_class_sql, local_instant_sql
from dwatch.mapping import (
    CANONICAL,
    KIND_TABLE,
    SourceMapping,
    available_mappings,
    derived_event_id_sql,
    get_mapping,
    match_mapping,
    named_by_mappings,
    not_logged_warning,
    split_path,
)
from dwatch.mapping_lines import reshape_records, stage_text_lines
from dwatch.masking import (
    MASK,
    UDF_MASK_TEXT,
    mask_json,
    mask_path,
    register,
    sql_mask_text,
    sql_may_have_shape_any,
    sql_pseudonymise_id,
)
from dwatch.memory import parse_memory
from dwatch.pseudonym import hmac_pads, resolve_key, sql_pseudonymise
from dwatch.schema import FieldSpec, TableSpec, load_schema
from dwatch.store import transaction

FORMATS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".log": "lines",  # text, one record per line: read through a mapping's extract patterns
}
# Extensions picked up when a folder is scanned; .json and .txt only when named explicitly
# (folders hold README.md, ground-truth and notes too).
FOLDER_FORMATS = {".csv", ".tsv", ".jsonl", ".ndjson", ".parquet", ".pq"}
COMPRESSIONS = {".gz", ".zst"}

# Working tables of one load live in their own schema of the store, not in temp memory:
# persistent tables are compressed and spill under the memory limit, so a file larger
# than memory loads with bounded memory. They are dropped after each file (and any left
# by a crash are dropped before the next load).
# Work tables live in the connection's temp catalog: never written to the store file (a
# persistent work table cost a compressed write of every record before the real insert),
# spilled to the store's temp folder past the memory cap, gone if the process dies.
WORK = "temp.main"
_WORK_PREFIX = "ingest_work_"
TYPED = f"{WORK}.{_WORK_PREFIX}typed"  # one row per record: typed values, reason (NULL when good), raw form
ROWS = f"{WORK}.{_WORK_PREFIX}typed_rows"  # TYPED with _rid (rowid) and _row (record number in the file)
AUTHORITY_MAP = f"{WORK}.{_WORK_PREFIX}authority_map"
LINES = f"{WORK}.{_WORK_PREFIX}lines"
REJECT_OFFSETS = f"{WORK}.{_WORK_PREFIX}reject_offsets"
# Per staged row: may any text field carry a taxpayer-id shape (dwatch.masking)?
ROW_MAY_HAVE_TIN = "_may_tin"

# One hashing thread for the process: file_sha256 releases the GIL while it hashes.
_HASHER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dwatch-sha256")


class _AlreadyLoaded(Exception):
    """The file's content was loaded before (and --force was not given): skip it."""


# Test hook: called between the writes of one file's transaction (crash injection).
_before_commit: Callable[[], None] | None = None


@dataclass
class _Context:
    """What one ingest call loads once and reuses for every file (registry, mappings)."""

    mappings: dict[str, SourceMapping] | None = None
    registry: object | None = None
    registry_problem: str | None = None
    registry_loaded: bool = False
    registry_lock: threading.Lock = field(default_factory=threading.Lock)

    def source_mappings(self) -> dict[str, SourceMapping]:
        if self.mappings is None:
            self.mappings = available_mappings()
        return self.mappings

    def prefetch_registry(self) -> None:
        """Start loading the registry in the background (~0.4 s of imports and YAML).

        It overlaps the first file's hashing and CSV sniffing, which release the GIL, instead
        of adding to the load after the typed pass. normaliser() waits for it."""
        threading.Thread(target=self._load_registry, name="dwatch-registry", daemon=True).start()

    def _load_registry(self) -> None:
        with self.registry_lock:
            if self.registry_loaded:
                return
            try:
                from dwatch.policy import load_registry

                self.registry = load_registry()
            except ImportError:
                self.registry = None
            except DWatchError as exc:
                self.registry_problem = exc.what
            self.registry_loaded = True

    def normaliser(self) -> Callable[[str], str | None] | None:
        """The registry's citation normaliser, or None (with registry_problem) if unavailable."""
        self._load_registry()
        if self.registry is None:
            return None
        from dwatch.policy import normalise_citation

        registry = self.registry
        return lambda text: normalise_citation(text, registry)  # type: ignore[arg-type]


@dataclass
class IngestResult:
    run_id: str
    source_file: str
    status: str  # loaded | skipped | failed
    kind: str | None = None
    source_system: str | None = None
    file_format: str | None = None
    rows_read: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    message: str = ""
    warnings: list[str] = field(default_factory=list)
    quarantined_by_reason: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status in ("loaded", "skipped")


# ---------------------------------------------------------------------------- paths


def expand_paths(paths: Iterable[str | Path]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files to load, and (path, problem) pairs for inputs that name nothing loadable."""
    files: list[Path] = []
    problems: list[tuple[str, str]] = []
    loadable = _scan_filter()
    for raw in paths:
        text = str(raw)
        if any(ch in text for ch in "*?["):
            matched = sorted(Path(p) for p in glob.glob(text, recursive=True))
            hits = [p for p in matched if p.is_file() and loadable(p)]
            if not hits:
                problems.append((text, "the pattern matches no log file"))
            files += hits
            continue
        path = Path(text)
        if not path.exists():
            problems.append((text, "no such file or folder"))
        elif path.is_dir():
            hits = sorted(p for p in path.rglob("*") if p.is_file() and loadable(p))
            if not hits:
                problems.append((text, "the folder holds no .csv, .jsonl or .parquet file"))
            files += hits
        else:
            files.append(path)
    seen: set[Path] = set()
    unique = []
    for f in files:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique, problems


def _scan_filter() -> Callable[[Path], bool]:
    """Files a folder scan or glob reads: the usual extensions, plus .json and .log files a
    mapping's match_files names (CloudTrail deliveries, sftp session logs)."""
    named: list[Callable[[str], bool]] = []

    def loadable(path: Path) -> bool:
        if _format_of(path, explicit=False):
            return True
        if not _format_of(path, explicit=True):
            return False
        if not named:
            named.append(named_by_mappings())
        return named[0](path.name)

    return loadable


def _format_of(path: Path, *, explicit: bool) -> str | None:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in COMPRESSIONS:
        suffixes = suffixes[:-1]
    if not suffixes:
        return None
    ext = suffixes[-1]
    if not explicit and ext not in FOLDER_FORMATS:
        return None
    return FORMATS.get(ext)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


# ---------------------------------------------------------------------------- staging


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(text: str) -> str:
    """SQL string literal for text WE wrote (field names, codes); never for log data."""
    return "'" + text.replace("'", "''") + "'"


@dataclass
class _Stage:
    columns: list[str]
    header_lines: int
    rejects: bool  # whether _rejects holds parse-level rejects


_REJECT_ARGS = [
    "store_rejects = true",
    "rejects_table = '_rejects'",
    "rejects_scan = '_rejects_scan'",
    "rejects_limit = 0",
]


def _stage_csv(
    con: duckdb.DuckDBPyConnection, path: Path, mapping: SourceMapping, *, rejects: bool
) -> _Stage:
    opts = {"delim": None, "quote": '"', "escape": '"'}
    opts.update(mapping.csv_options)
    if path.suffix.lower() == ".tsv":
        opts["delim"] = "\t"
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


def _stage_parquet(con: duckdb.DuckDBPyConnection, path: Path) -> _Stage:
    described = con.execute(
        "DESCRIBE SELECT * FROM read_parquet($path)", {"path": str(path)}
    ).fetchall()
    selects = []
    for name, typ, *_ in described:
        if typ.endswith("[]") or typ.startswith(("STRUCT", "MAP")):
            selects.append(f"CAST(to_json({_q(name)}) AS VARCHAR) AS {_q(name)}")
        else:
            selects.append(f"CAST({_q(name)} AS VARCHAR) AS {_q(name)}")
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW _stage AS SELECT {', '.join(selects)}"
        f" FROM read_parquet({_lit(str(path))})"
    )
    return _Stage([d[0] for d in described], header_lines=0, rejects=False)


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


# US and territory zone abbreviations agency systems print after a local time
# ("2025-06-04 09:15:00 EDT"): each names one fixed offset, unlike a bare local time.
ZONE_ABBREVIATIONS = {
    "EST": "-05:00", "EDT": "-04:00", "CST": "-06:00", "CDT": "-05:00",
    "MST": "-07:00", "MDT": "-06:00", "PST": "-08:00", "PDT": "-07:00",
    "AKST": "-09:00", "AKDT": "-08:00", "HST": "-10:00", "HDT": "-09:00",
    "AST": "-04:00", "ADT": "-03:00", "CHST": "+10:00", "SST": "-11:00",
}  # fmt: skip
_ABBREVIATION = "|".join(ZONE_ABBREVIATIONS)
# timestamp_format values meaning Unix time, and their units per second.
EPOCH_FORMATS = {"epoch": 1, "epoch_ms": 1000, "epoch_us": 1_000_000}  # journald: epoch_us
# Zoned: an offset or Z, UTC/GMT, an abbreviation above, or an IANA name after a space
# ("2025-06-04 09:15:00 America/New_York", which DuckDB reads directly).
_TZ_SUFFIX = (
    r"(Z|z|[+-]\d{2}(:?\d{2})?|\s?UTC|\s?GMT|\s(?i:" + _ABBREVIATION + r")"
    r"|\s[A-Za-z]+/[A-Za-z_]+(/[A-Za-z_]+)?)$"
)


@dataclass
class _FieldSQL:
    """SQL for one canonical field, evaluated in layers so nothing is computed twice.

    ``x`` (the text) is a column of layer 1; ``helpers`` are layer-2 columns over it;
    ``typed`` is the layer-3 value over both; ``checks`` are (condition, reason code,
    message) over x, helpers and the typed column ``t``; the first failing check wins.
    """

    x: str
    t: str
    typed: str
    helpers: list[tuple[str, str]] = field(default_factory=list)
    helpers2: list[tuple[str, str]] = field(default_factory=list)  # over helpers
    checks: list[tuple[str, str, str]] = field(default_factory=list)
    dst: str | None = None  # helper naming a repeated/skipped local hour, if any


def _formats_sql(formats: tuple[str, ...], suffix: str = "") -> str:
    """strptime patterns as DuckDB takes them: one text, or a list tried in order."""
    if len(formats) == 1:
        return _lit(formats[0] + suffix)
    return "[" + ", ".join(_lit(f + suffix) for f in formats) + "]"


def _dst_checks(
    name: str, shown: str, dst: str, mapping: SourceMapping
) -> list[tuple[str, str, str]]:
    """Quarantine checks for the DST policies that say so (before the generic bad_timestamp)."""
    zone = mapping.timezone
    checks = []
    if mapping.ambiguous_time == "quarantine":
        checks.append(
            (
                f"{dst} = 'ambiguous'",
                "ambiguous_local_time",
                f"'{name}: ' || {shown} || ' falls in the hour repeated when clocks went back"
                f" in {zone} and names two instants; the mapping says ambiguous_time:"
                " quarantine (earlier or later picks one reading)'",
            )
        )
    if mapping.nonexistent_time == "quarantine":
        checks.append(
            (
                f"{dst} = 'nonexistent'",
                "nonexistent_local_time",
                f"'{name}: ' || {shown} || ' falls in the hour skipped when clocks went"
                f" forward in {zone} and never happened there; the mapping says"
                " nonexistent_time: quarantine (shift reads it with the earlier offset)'",
            )
        )
    return checks


# An offset written after a time whose hours pass 14 (no zone is further from UTC) or whose
# minutes pass 59: DuckDB would read '+25:00' as a day's shift.
_IMPOSSIBLE_OFFSET = (
    r"\d{2}:\d{2}(:\d{2}(\.\d+)?)?\s*[+-]((1[5-9]|[2-9]\d)(:?\d{2})?|\d{2}:?[6-9]\d)$"
)


def _instant_checks(f: FieldSpec, x: str, z: str, t: str, shown: str) -> list[tuple[str, str, str]]:
    """A zoned value with an impossible offset, a value that is no finite instant, and an
    instant outside the plausible window (schemas/canonical.yaml: instants)."""
    schema = load_schema()
    floor = schema.instants_not_before
    ahead = schema.instants_ahead_of_ingest
    ahead_text = f"{ahead.total_seconds() / 3600:g} hour(s)"
    return [
        (
            f"CASE WHEN {z} AND NOT ends_with({x}, 'Z') THEN"
            f" regexp_matches({x}, {_lit(_IMPOSSIBLE_OFFSET)}) ELSE false END",
            "bad_timestamp",
            f"'{f.name}: ' || {shown} || ' has an impossible UTC offset (offsets run from"
            " -12:00 to +14:00, minutes below 60); fix the value at the source'",
        ),
        (
            f"{t} IS NOT NULL AND NOT isfinite({t})",
            "bad_timestamp",
            f"'{f.name}: ' || {shown} || ' is not a point in time; write ISO 8601 such as"
            " 2025-08-07T14:03:00Z'",
        ),
        (
            f"{t} < {_lit(floor.isoformat())}::TIMESTAMPTZ"
            f" OR {t} > now() + INTERVAL {int(ahead.total_seconds())} SECOND",
            "out_of_range",
            f"'{f.name}: ' || {shown} || ' is outside the plausible window (not before"
            f" {floor.date().isoformat()}, at most {ahead_text} after the time of ingest);"
            " a date in the future is kept here as a finding: fix the clock or the value at"
            " the source (the window: instants in schemas/canonical.yaml)'",
        ),
    ]


def _field_sql(f: FieldSpec, mapping: SourceMapping) -> _FieldSQL:
    x, t = f"x__{f.name}", f"t__{f.name}"
    spec = _FieldSQL(x=x, t=t, typed=x)
    shown = f"coalesce({sql_mask_text(x)}, '')"
    checks = spec.checks
    if f.required:
        checks.append((f"{x} IS NULL", "missing_required", f"'{f.name}: required value is empty'"))
    if f.pseudonym:
        pass  # its text is already the keyed pseudonym (_source_text): nothing raw to mask
    elif f.type == "VARCHAR":
        # A TIN typed into any text must not reach the store (dwatch.masking): an id
        # carrying one becomes the pseudonym of the whole id, other text is masked.
        # _may_tin is the row's one RE2 test over all its text fields (see _load).
        if f.identifier:
            whole = f"coalesce({sql_pseudonymise(x)}, {_lit(MASK)})"
            spec.typed = sql_pseudonymise_id(x, whole, may=ROW_MAY_HAVE_TIN)
        else:
            spec.typed = sql_mask_text(x, may=ROW_MAY_HAVE_TIN)
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
        z = f"z__{f.name}"
        spec.helpers.append((z, f"regexp_matches({x}, {_lit(_TZ_SUFFIX)})"))
        # Most zoned stamps cast as they are; only a glued suffix (...00UTC) needs the rewrite,
        # and coalesce evaluates it for those rows alone.
        # Then an offset written after a space ("09:15:00 -04:00") and an abbreviation
        # replaced by its offset: later arguments run only for rows the earlier ones missed.
        abbreviations = ", ".join(f"{_lit(k)}: {_lit(v)}" for k, v in ZONE_ABBREVIATIONS.items())
        zoned = (
            f"coalesce(TRY_CAST({x} AS TIMESTAMPTZ),"
            f" TRY_CAST(regexp_replace({x}, '\\s?(UTC|GMT)$', 'Z') AS TIMESTAMPTZ),"
            f" TRY_CAST(regexp_replace({x}, '\\s+([+-]\\d{{2}}(:?\\d{{2}})?)$', '\\1') AS TIMESTAMPTZ),"
            f" TRY_CAST(regexp_replace({x}, '\\s+[A-Za-z]+$', '')"
            f" || MAP {{{abbreviations}}}[upper(regexp_extract({x}, '[A-Za-z]+$'))] AS TIMESTAMPTZ))"
        )
        fmt = mapping.timestamp_format
        formats = mapping.timestamp_formats
        if formats and any("%z" in f or "%Z" in f for f in formats):
            # The mapping's format carries the offset itself ("%m/%d/%Y %H:%M %z").
            zoned = f"coalesce({zoned}, try_strptime({x}, {_formats_sql(formats)})::TIMESTAMPTZ)"
        elif fmt and fmt not in EPOCH_FORMATS:
            # The mapping's format followed by an offset or a zone abbreviation
            # ("06/04/2025 09:15:00 AM EDT"): the zone written wins over the mapping's.
            with_zone = _formats_sql(formats, " %z")
            zoned = (
                f"coalesce({zoned}, try_strptime({x}, {with_zone}),"
                f" try_strptime(regexp_replace({x}, '\\s+[A-Za-z]+$', '') || ' '"
                f" || MAP {{{abbreviations}, 'UTC': '+00:00', 'GMT': '+00:00'}}"
                f"[upper(regexp_extract({x}, '[A-Za-z]+$'))], {with_zone}))"
            )
        local = (
            f"try_strptime({x}, {_formats_sql(formats)})" if fmt else f"TRY_CAST({x} AS TIMESTAMP)"
        )
        if fmt in EPOCH_FORMATS:
            # Unix time is an instant: no zone to name. Zoned text still reads as written.
            per_second = EPOCH_FORMATS[fmt]
            spec.typed = (
                f"CASE WHEN {z} THEN {zoned}"
                f" ELSE try(to_timestamp(TRY_CAST({x} AS DOUBLE) / {per_second})) END"
            )
            checks.append(
                (
                    f"{x} IS NOT NULL AND {t} IS NULL",
                    "bad_timestamp",
                    f"'{f.name}: ' || {shown} || ' is not a Unix time ({fmt}: "
                    f"{ {1: 'seconds', 1000: 'milliseconds'}.get(per_second, 'microseconds') } since 1970-01-01 UTC);"
                    " fix the value or timestamp_format in the source mapping'",
                )
            )
        elif mapping.timezone:
            # The local reading, and whether it falls in a repeated or skipped hour, are
            # helpers: computed once, used by the value and by the checks.
            lt, dst = f"l__{f.name}", f"d__{f.name}"
            spec.helpers.append((lt, f"CASE WHEN NOT {z} THEN {local}::TIMESTAMP END"))
            spec.helpers2.append((dst, dst_class_sql(lt, mapping.timezone)))
            reading = local_instant_sql(lt, dst, mapping.timezone, mapping.ambiguous_time)
            spec.typed = f"CASE WHEN {z} THEN {zoned} ELSE {reading} END"
            spec.dst = dst
            checks += _dst_checks(f.name, shown, dst, mapping)
            fmt_hint = (
                f" in the format {' or '.join(mapping.timestamp_formats)}"
                if mapping.timestamp_formats
                else ""
            )
            checks.append(
                (
                    f"{x} IS NOT NULL AND {t} IS NULL",
                    "bad_timestamp",
                    f"'{f.name}: ' || {shown} || ' is not a timestamp{fmt_hint}; write ISO 8601"
                    " (2025-08-07T14:03:00-04:00) or fix timestamp_format in the source mapping'",
                )
            )
        else:
            spec.typed = f"CASE WHEN {z} THEN {zoned} END"
            checks.append(
                (
                    # Only a value shaped like a date (or Unix time) lacks just a zone:
                    # 'garbage', 'NaT', '0', 'infinity' are bad timestamps. CASE keeps the
                    # zoned rows, nearly all of them, from paying for the test.
                    f"CASE WHEN {x} IS NULL OR {z} THEN false"
                    f" ELSE regexp_full_match({x}, '\\d{{9,13}}(\\.\\d+)?')"
                    f" OR regexp_matches({x}, '^\\d{{1,4}}[-/.]\\d{{1,2}}[-/.]\\d{{1,4}}') END",
                    "timestamp_without_zone",
                    # The message is built for refused rows only: recognising Unix time here
                    # costs good rows nothing.
                    f"CASE WHEN regexp_full_match({x}, '\\d{{9,13}}(\\.\\d+)?')"
                    f" THEN '{f.name}: ' || {shown} || ' looks like a Unix time; name it in a"
                    " source mapping (timestamp_format: epoch, or epoch_ms for milliseconds)'"
                    f" ELSE '{f.name}: ' || {shown} || ' has no time zone; write an offset (Z, -05:00) or name the zone"
                    " in a source mapping (timezone: America/New_York)' END",
                )
            )
            checks.append(
                (
                    f"{x} IS NOT NULL AND {t} IS NULL",
                    "bad_timestamp",
                    f"'{f.name}: ' || {shown} || ' is not a valid timestamp; write ISO 8601 such as 2025-08-07T14:03:00Z'",
                )
            )
        checks += _instant_checks(f, x, z, t, shown)
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
            f" lambda v: {UDF_MASK_TEXT}(v)) ELSE {listed} END"
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


# ---------------------------------------------------------------------------- the load


def _new_run_id() -> str:
    return "ing_" + datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "_" + uuid.uuid4().hex[:8]


def _record_run(
    con: duckdb.DuckDBPyConnection,
    r: IngestResult,
    sha: str | None,
    started: datetime,
    forced: bool,
    key: bytes | None,
) -> None:
    """One ingest_runs row; file name, message and warnings masked (dwatch.masking)."""
    con.execute(
        "INSERT INTO ingest_runs (run_id, source_file, content_sha256, kind, source_system, file_format,"
        " rows_read, rows_loaded, rows_quarantined, started_at, finished_at, status, message, warnings, forced)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, now(), ?, ?, ?, ?)",
        [
            r.run_id,
            mask_path(r.source_file, key),
            sha,
            r.kind,
            r.source_system,
            r.file_format,
            r.rows_read,
            r.rows_loaded,
            r.rows_quarantined,
            started,
            r.status,
            mask_path(r.message, key) if r.message is not None else None,
            [mask_path(w, key) for w in r.warnings],
            forced,
        ],
    )
    ledger.append(con, r.run_id)


def ingest_file(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    *,
    kind: str | None = None,
    source: str | None = None,
    force: bool = False,
    key: bytes | None = None,
    context: _Context | None = None,
) -> IngestResult:
    """Load one file in one transaction. Never raises for bad content: the result says."""
    context = context or _Context()
    register(con)  # the masking policy's SQL functions, on any connection
    started = datetime.now(UTC)
    run_id = _new_run_id()
    result = IngestResult(run_id=run_id, source_file=str(path), status="failed")
    fmt = _format_of(path, explicit=True)
    result.file_format = fmt
    sha: str | None = None
    hashing: Future[str] | None = None
    try:
        if not path.is_file():
            raise InputError("no such file", where=str(path), fix="check the path")
        if fmt is None:
            raise InputError(
                f"unrecognised file type {''.join(path.suffixes) or '(none)'}",
                where=str(path),
                fix="use .csv, .tsv, .jsonl/.ndjson/.json, .parquet or .log (text lines, read through a mapping), optionally .gz",
            )
        # Hashing a large file takes a core for a while (0.8 s per GB): it runs beside the
        # CSV sniff, and the skip check waits for it before any record is read.
        hashing = _HASHER.submit(file_sha256, path)
        if path.stat().st_size == 0:
            sha = hashing.result()
            raise InputError(
                "the file is empty (0 bytes)",
                where=str(path),
                fix="re-export it from the source system",
            )

        def skip_if_loaded() -> None:
            nonlocal sha
            sha = hashing.result()
            if force:
                return
            prior = con.execute(
                "SELECT run_id, source_file FROM ingest_runs WHERE content_sha256 = ? AND status = 'loaded'"
                " ORDER BY finished_at DESC LIMIT 1",
                [sha],
            ).fetchone()
            if prior:
                raise _AlreadyLoaded(
                    f"same content already loaded by {prior[0]} from {prior[1]}; nothing to do"
                    " (use --force to load it again)"
                )

        key = key if key is not None else resolve_key()
        try:
            raw_json = _load(
                con,
                path,
                fmt,
                result,
                kind=kind,
                source=source,
                key=key,
                context=context,
                skip_if_loaded=skip_if_loaded,
            )
        except _AlreadyLoaded as skipped:
            result.status = "skipped"
            result.message = str(skipped)
            result.kind = result.source_system = None
            result.warnings = []
            return result
        result.status = "loaded"
        with transaction(con):
            _write(con, result, raw_json, key)
            result.warnings += _judge_addresses(con, result.kind, context)
            _record_run(con, result, sha, started, force, key)
        return result
    except DWatchError as exc:
        result.status = "failed"
        result.message = exc.render()
    except duckdb.Error as exc:
        result.status = "failed"
        where = overlong_line(path, str(exc)) if fmt == "csv" else None
        result.message = f"{path}: " + (
            where or f"cannot be read as {fmt}: {str(exc).splitlines()[0]}"
        )
    finally:
        _drop_work(con)
    if hashing is not None and sha is None:
        sha = hashing.result()
    # Failed loads are recorded too (outside the rolled-back transaction), with nothing written.
    result.rows_loaded = 0
    result.rows_quarantined = 0
    _record_run(con, result, sha, started, force, key)
    return result


def _drop_work(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("DROP VIEW IF EXISTS _stage")
    con.execute(f"DROP VIEW IF EXISTS {ROWS}")
    for table in (
        TYPED,
        AUTHORITY_MAP,
        LINES,
        f"{LINES}_items",
        f"{LINES}_records",
        REJECT_OFFSETS,
    ):
        con.execute(f"DROP TABLE IF EXISTS {table}")
    con.execute("DROP VIEW IF EXISTS _stage_top")
    for table in ("_rejects", "_rejects_scan", "_lines"):
        con.execute(f"DROP TABLE IF EXISTS {table}")


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
) -> str:
    """Stage the file and build the typed work table (one row per record, reason NULL when good).

    Returns the SQL expression that renders a record's raw form for quarantine."""
    schema = load_schema()
    _drop_work(con)
    mapping = get_mapping(source) if source else CANONICAL
    con.execute("DROP TABLE IF EXISTS _rejects")
    con.execute("DROP TABLE IF EXISTS _rejects_scan")
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
        stage = _stage_parquet(con, path)
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
    result.warnings += not_logged_warning(mapping, path)
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
    missing = [n for n in table.required if texts[n] is None]
    used = set(mapping.columns.values()) | {n for n in colset if n in texts} | set(identifier_cols)
    extras = [
        c
        for c in columns
        if c not in used and c not in mapping.ignore_columns and c != "_raw_line" and c != "_ok"
    ]
    extras = [c for c in extras if c not in _heads(path_columns)]
    result.warnings += _unmapped_warnings(path, extras, path_columns)
    if missing:
        result.warnings.append(
            f"{path}: required column(s) {missing} are missing from the header; every record is"
            " quarantined (missing_column). Add the column or map it in a source mapping"
        )

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
    text_columns: list[str] = []  # one masking pre-test per row over all of them
    for f in table.fields:
        text = texts.get(f.name)
        if text is None:
            layer3.append(f"CAST(NULL AS {f.type}) AS t__{f.name}")
            if f.required and not f.derived:
                message = f"column {f.name} is missing from the file; add it or map it in a source mapping"
                checks.append(("true", "missing_column", f.name, _lit(message)))
            continue
        spec = _field_sql(f, mapping)
        # The pseudonym's hex digits would flag about a third of rows for the Python mask.
        if f.type in ("VARCHAR", "VARCHAR[]") and not f.pseudonym:
            text_columns.append(spec.x)
        layer1.append(f"{text} AS {spec.x}")  # already trimmed, '' as NULL
        layer2 += [f"{expr} AS {alias}" for alias, expr in spec.helpers]
        layer2b += [f"{expr} AS {alias}" for alias, expr in spec.helpers2]
        dst_helpers += [spec.dst] if spec.dst else []
        layer3.append(f"{spec.typed} AS {spec.t}")
        checks += [(cond, code, f.name, msg) for cond, code, msg in spec.checks]

    layer2.append(f"{sql_may_have_shape_any(text_columns)} AS {ROW_MAY_HAVE_TIN}")
    raw_cols = [c for c in columns if c not in ("_raw_line", "_ok")]
    lazy = _lazy_json_keys(columns, mapping, path_columns) if fmt == "jsonl" else set()
    ident_set = set(identifier_cols)

    def raw_value(c: str) -> str:
        column = _q(c)
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
        + f" FROM (SELECT *, {check_index} AS _check"
        f" FROM (SELECT *, {', '.join(layer3)}"
        f" FROM (SELECT *{', ' + ', '.join(layer2b) if layer2b else ''}"
        f" FROM (SELECT *{', ' + ', '.join(layer2) if layer2 else ''}"
        f" FROM (SELECT {', '.join([*layer1, extra_json + ' AS _extra'])}, s.* FROM _stage s)))))"
    )
    try:
        con.execute(sql, _pad_params(key, sql))
    except (duckdb.InvalidInputException, duckdb.ConversionException):
        if fmt != "csv" or stage.rejects:
            raise
        con.execute(f"DROP TABLE IF EXISTS {TYPED}")
        rescan = _stage_csv(con, path, mapping, rejects=True)
        if rescan.columns != stage.columns:
            raise
        stage = rescan
        con.execute(sql, _pad_params(key, sql))
    # The scan runs in parallel but DuckDB keeps insertion order, so rowid is the record
    # index (WITH ORDINALITY would force a single-threaded scan). Lines the reader rejected
    # before a record are added back so record numbers match the file's lines.
    if stage.rejects and con.execute("SELECT count(*) FROM _rejects").fetchone()[0]:
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
    # Before duplicates are marked: a duplicate's quarantined raw form is its typed values.
    _mark_duplicates(con, table, kind)
    result.warnings += _derive_authority(con, kind, context)
    result.warnings += _dst_warnings(con, mapping)
    return raw_json


def _dst_warnings(con: duckdb.DuckDBPyConnection, mapping: SourceMapping) -> list[str]:
    """Say how many zone-less times fell in a repeated or skipped hour and what was done,
    naming the policy and whether the mapping chose it or it is the default."""
    counts = dict(
        con.execute(
            f"SELECT _dst, count(*) FROM {TYPED} WHERE _dst IS NOT NULL GROUP BY 1"
        ).fetchall()
    )
    warnings = []
    for case, key, policy, done in (
        (
            "ambiguous",
            "ambiguous_time",
            mapping.ambiguous_time,
            {
                "earlier": "read as the first (earlier) of its two instants",
                "later": "read as the second (later) of its two instants",
                "quarantine": "quarantined (ambiguous_local_time)",
            },
        ),
        (
            "nonexistent",
            "nonexistent_time",
            mapping.nonexistent_time,
            {
                "shift": "read with the offset before the change (moved past the skipped hour)",
                "quarantine": "quarantined (nonexistent_local_time)",
            },
        ),
    ):
        n = counts.get(case, 0)
        if not n:
            continue
        hour = "repeated when clocks went back" if case == "ambiguous" else "skipped when"
        hour += "" if case == "ambiguous" else " clocks went forward"
        chosen = "set in the mapping" if key in mapping.explicit else "the default"
        warnings.append(
            f"{n} zone-less time(s) fall in the hour {hour} in {mapping.timezone}:"
            f" {done[policy]} ({key}: {policy}, {chosen}; set {key} in"
            f" {mapping.path or 'the source mapping'} to choose)"
        )
    return warnings


def _pad_params(key: bytes, sql: str) -> dict[str, bytes]:
    """Bind the HMAC pads only when the statement uses them (DuckDB rejects unused names)."""
    if "$ipad" not in sql:
        return {}
    ipad, opad = hmac_pads(key)
    return {"ipad": ipad, "opad": opad}


def _mark_duplicates(con: duckdb.DuckDBPyConnection, table: TableSpec, kind: str) -> None:
    """Quarantine repeats of a key within the file and keys the store already holds."""
    keycols = ", ".join(f"t__{k}" for k in table.key)
    # A duplicate row was well-formed: its raw form is its typed values.
    typed_json = (
        "json_object(" + ", ".join(f"{_lit(f.name)}, t.t__{f.name}" for f in table.fields) + ")"
    )
    label = "event_id" if kind == "events" else "item_no"
    code = "duplicate_event_id" if kind == "events" else "duplicate_item"
    describe = (
        "'event_id ' || t__event_id || ' of ' || t__source_system"
        if kind == "events"
        else "'item ' || t__item_no || ' of request ' || t__request_id"
    )
    # Cheap in the common case: an aggregate over one hash of the key (not the key's
    # strings) finds candidates; the update below matches the real keys, so a hash
    # collision costs a no-op update and never a wrong quarantine.
    repeated = con.execute(
        f"SELECT count(*) FROM (SELECT 1 FROM {TYPED} WHERE _reason IS NULL GROUP BY hash({keycols}) HAVING count(*) > 1)"
    ).fetchone()[0]
    if repeated:
        con.execute(
            f"""
            UPDATE {TYPED} t SET _reason = {_lit(code)}, _field = {_lit(label)}, _message = d.msg, _raw = {typed_json}
            FROM (SELECT _rid, {describe} || ' repeats row ' || first_row || ' of this file' AS msg
                  FROM (SELECT *, first_value(_row) OVER (PARTITION BY {keycols} ORDER BY _row) AS first_row,
                               row_number() OVER (PARTITION BY {keycols} ORDER BY _row) AS n
                        FROM {ROWS}
                        WHERE _reason IS NULL AND ({keycols}) IN (
                            SELECT ({keycols}) FROM {TYPED} WHERE _reason IS NULL
                            GROUP BY {keycols} HAVING count(*) > 1))
                  WHERE n > 1) d
            WHERE t.rowid = d._rid
            """
        )
    target = KIND_TABLE[kind]
    match = " AND ".join(f"e.{k} = t.t__{k}" for k in table.key)
    already = con.execute(
        f"SELECT count(*) FROM {TYPED} t WHERE t._reason IS NULL AND EXISTS (SELECT 1 FROM {target} e WHERE {match})"
    ).fetchone()[0]
    if not already:
        return
    con.execute(
        f"""
        UPDATE {TYPED} t SET _reason = {_lit(code)}, _field = {_lit(label)}, _raw = {typed_json},
            _message = {describe.replace("t__", "t.t__")} || ' was already loaded by ingest run ' || e.ingest_run_id
        FROM {target} e
        WHERE t._reason IS NULL AND {match}
        """
    )


def _derive_authority(con: duckdb.DuckDBPyConnection, kind: str, context: _Context) -> list[str]:
    """authority_id from legal_authority, via the policy registry's normaliser.

    A registry that cannot be loaded does not stop the load: authority_id stays NULL and
    ``dwatch detect`` derives it again once the registry is fixed. Returns warnings."""
    if kind != "events":
        return []
    normalise = context.normaliser()
    if normalise is None:
        if context.registry_problem:
            return [
                f"authority_id left empty: the policy registry did not load ({context.registry_problem})"
            ]
        return []
    distinct = [
        r[0]
        for r in con.execute(
            f"SELECT DISTINCT t__legal_authority FROM {TYPED} WHERE t__legal_authority IS NOT NULL"
        ).fetchall()
    ]
    pairs = [(text, normalise(text)) for text in distinct]
    pairs = [(t, a) for t, a in pairs if a]
    if not pairs:
        return []
    # Few distinct citations: a small map joined at insert time (no update of every row).
    con.execute(
        f"CREATE TEMP TABLE {AUTHORITY_MAP} (legal_authority VARCHAR PRIMARY KEY, authority_id VARCHAR)"
    )
    con.executemany(f"INSERT INTO {AUTHORITY_MAP} VALUES (?, ?)", pairs)
    return []


def _judge_addresses(
    con: duckdb.DuckDBPyConnection, kind: str | None, context: _Context
) -> list[str]:
    """Verdicts for the supplied addresses this batch brings (dwatch/address_verdicts.py),
    each distinct text parsed once, so ``dwatch detect`` only looks them up. A registry that
    cannot be loaded leaves them to detect. Returns warnings."""
    if kind != "request_items":
        return []
    context._load_registry()  # once per ingest call, shared with the citation normaliser
    if context.registry is None:
        problem = context.registry_problem or "no registry"
        return [f"addresses left for detect to judge: the policy registry did not load ({problem})"]
    from dwatch.address import vocabulary_of
    from dwatch.address_verdicts import refresh_address_verdicts

    refresh_address_verdicts(con, vocabulary_of(context.registry))  # type: ignore[arg-type]
    return []


def _write(con: duckdb.DuckDBPyConnection, result: IngestResult, raw_json: str, key: bytes) -> None:
    schema = load_schema()
    kind = result.kind or "events"
    table = schema.events if kind == "events" else schema.items
    target = KIND_TABLE[kind]
    names = table.names
    has_map = bool(
        con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE database_name = 'temp' AND table_name = ?",
            [AUTHORITY_MAP.rsplit(".", 1)[1]],
        ).fetchone()[0]
    )
    select = ", ".join(
        "coalesce(m.authority_id, t.t__authority_id)"
        if has_map and f.name == "authority_id"
        else f"t.t__{f.name}"
        for f in table.fields
    )
    join = (
        f" LEFT JOIN {AUTHORITY_MAP} m ON m.legal_authority = t.t__legal_authority"
        if has_map
        else ""
    )
    con.execute(
        f"INSERT INTO {target} ({', '.join(names)}, ingest_run_id, source_row, extra)"
        f" SELECT {select}, ?, t._row, t._extra FROM {ROWS} t{join} WHERE t._reason IS NULL",
        [result.run_id],
    )
    header = 1 if (result.file_format == "csv") else 0
    shown_file = mask_path(result.source_file, key)
    _insert_quarantine(con, result, kind, header, raw_json, key)
    rejected = 0
    if con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = '_rejects'").fetchone()[
        0
    ]:
        rejected = con.execute("SELECT count(DISTINCT line) FROM _rejects").fetchone()[0]
        con.execute(
            f"""
            INSERT INTO quarantine (ingest_run_id, source_file, source_row, source_line, kind, reason_code,
                                    field, message, raw_row, stage)
            SELECT ?, ?, line - ?, line, ?,
                   CASE WHEN error_type = 'INVALID ENCODING' THEN 'invalid_utf8'
                        WHEN error_type IN ('MISSING COLUMNS', 'TOO MANY COLUMNS') THEN 'malformed_row'
                        ELSE 'unparseable_row' END,
                   column_name,
                   ? || ' line ' || line || ': ' ||
                   CASE WHEN error_type = 'INVALID ENCODING'
                        THEN 'bytes are not valid UTF-8; re-export the file as UTF-8'
                        WHEN error_type = 'MISSING COLUMNS'
                        THEN 'the record has too few fields (truncated?): ' || error_message
                        WHEN error_type = 'TOO MANY COLUMNS'
                        THEN 'the record has too many fields (unquoted delimiter?): ' || error_message
                        ELSE error_message END,
                   to_json({sql_mask_text("csv_line")}), 'ingest'
            FROM (SELECT DISTINCT ON (line) * FROM _rejects ORDER BY line, column_idx)
            """,
            [result.run_id, shown_file, header, kind, shown_file],
        )
    counts = con.execute(
        f"SELECT count(*) FILTER (WHERE _reason IS NULL), count(*) FILTER (WHERE _reason IS NOT NULL) FROM {TYPED}"
    ).fetchone()
    result.rows_loaded = int(counts[0])
    result.rows_quarantined = int(counts[1]) + int(rejected)
    result.rows_read = result.rows_loaded + result.rows_quarantined
    result.quarantined_by_reason = dict(
        con.execute(
            "SELECT reason_code, count(*) FROM quarantine WHERE ingest_run_id = ? GROUP BY 1 ORDER BY 2 DESC",
            [result.run_id],
        ).fetchall()
    )
    if result.rows_read == 0:
        result.warnings.append(f"{result.source_file}: header only, no records")
    if _before_commit is not None:
        _before_commit()


def _insert_quarantine(
    con: duckdb.DuckDBPyConnection,
    result: IngestResult,
    kind: str,
    header: int,
    raw_json: str,
    key: bytes,
) -> None:
    table = load_schema().events if kind == "events" else load_schema().items
    # Every field the mapping could convert, under canonical names (NULL where it could
    # not), so sequence and coverage checks see the row: it was logged, only malformed.
    canonical = (
        "json_object(" + ", ".join(f"{_lit(f.name)}, t__{f.name}" for f in table.fields) + ")"
    )
    # Reshaped records carry their file line (_line); other rows are numbered from the header.
    reshaped = con.execute(
        "SELECT count(*) FROM duckdb_columns() WHERE table_name = ? AND column_name = '_line'",
        [TYPED.split(".")[-1]],
    ).fetchone()
    line = "coalesce(_line, _row + $header)" if reshaped and reshaped[0] else "_row + $header"
    con.execute(
        "INSERT INTO quarantine (ingest_run_id, source_file, source_row, source_line, kind, reason_code, field,"
        " message, raw_row, stage, canonical_row)"
        " SELECT $run, $file, _row,"
        f" CASE WHEN $fmt = 'parquet' THEN NULL ELSE {line} END, $kind,"
        f" _reason, _field, $file || ' row ' || _row || ': ' || _message, _raw, 'ingest', {canonical}"
        f" FROM {ROWS} WHERE _reason IS NOT NULL",
        {
            "run": result.run_id,
            "file": mask_path(result.source_file, key),
            "fmt": result.file_format,
            "header": header,
            "kind": kind,
        },
    )


INGEST_MEMORY_ENV = "DWATCH_INGEST_MEMORY"
DEFAULT_INGEST_MEMORY = "1GB"


@contextmanager
def _bounded_memory(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Cap DuckDB's buffer memory while loading, so a file larger than memory spills its
    work table to disk instead of growing the process: ``DWATCH_INGEST_MEMORY`` (default
    1GB), never above the run's DuckDB share of ``DWATCH_MEMORY``."""
    limit = os.environ.get(INGEST_MEMORY_ENV, DEFAULT_INGEST_MEMORY)
    try:
        wanted = parse_memory(limit)
    except ConfigError as exc:
        raise ConfigError(
            f"{INGEST_MEMORY_ENV}={limit!r} is not a memory size",
            where="environment",
            fix="use e.g. 1GB or 512MB, or unset it for 1GB",
        ) from exc
    previous = con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
    if wanted >= _size_bytes(previous):
        yield  # the run's own limit is already the smaller
        return
    con.execute(f"SET memory_limit = '{wanted}B'")
    try:
        yield
    finally:
        con.execute(f"SET memory_limit = {_lit(previous)}")


def _size_bytes(setting: str) -> float:
    """DuckDB's memory_limit as it prints it ('953.6 MiB', '1.0 GiB') in bytes."""
    number, _, unit = setting.strip().partition(" ")
    scale = {"bytes": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40, "PiB": 2**50}
    return float(number) * scale.get(unit.strip(), 1) if number else float("inf")


def ingest_paths(
    con: duckdb.DuckDBPyConnection,
    paths: Iterable[str | Path],
    *,
    kind: str | None = None,
    source: str | None = None,
    force: bool = False,
    key: bytes | None = None,
) -> list[IngestResult]:
    """Load files, folders and globs; one result (and one ingest_runs row) per file."""
    files, problems = expand_paths(paths)
    if source:
        get_mapping(source)  # an unknown mapping is a usage error: fail before loading anything
    results: list[IngestResult] = []
    for text, problem in problems:
        r = IngestResult(
            run_id=_new_run_id(), source_file=text, status="failed", message=f"{text}: {problem}"
        )
        _record_run(con, r, None, datetime.now(UTC), force, key)
        results.append(r)
    if files:
        key = key if key is not None else resolve_key()
    context = _Context()
    if files:
        context.prefetch_registry()
    sizes = [_size(path) for path in files]
    with (
        _bounded_memory(con),
        progress.task("ingest", total=sum(sizes) or None, unit="bytes") as reading,
    ):
        for n, (path, size) in enumerate(zip(files, sizes, strict=True), start=1):
            reading.working_on(path, f"file {n}/{len(files)}")
            result = ingest_file(
                con, path, kind=kind, source=source, force=force, key=key, context=context
            )
            results.append(result)
            reading.advance(size, rows=result.rows_read)
    return results


def _size(path: Path) -> int:
    with contextlib.suppress(OSError):
        return path.stat().st_size
    return 0


def _display_key() -> bytes | None:
    """The key file names are shown with (as ingest_runs stores them), if one is set."""
    with contextlib.suppress(ConfigError):
        return resolve_key()
    return None


def summarise(results: list[IngestResult]) -> str:
    """The results for a terminal, file names and messages masked as the store has them."""
    key = _display_key()
    lines = []
    for r in results:
        head = f"{r.status:8} {r.source_file}"
        if r.status == "loaded":
            head += f"  [{r.kind}{', ' + r.source_system if r.source_system else ''}] read {r.rows_read:,} = loaded {r.rows_loaded:,} + quarantined {r.rows_quarantined:,}"
        lines.append(head)
        if r.quarantined_by_reason:
            lines.append(
                "         quarantined: "
                + ", ".join(f"{k} {v:,}" for k, v in r.quarantined_by_reason.items())
            )
        if r.message:
            lines.append("         " + r.message.replace("\n", "\n         "))
        lines += ["         warning: " + w for w in r.warnings]
    return mask_path("\n".join(lines), key)


def to_json(results: list[IngestResult]) -> str:
    shown = mask_json(
        json.loads(json.dumps([r.__dict__ for r in results], default=str)), _display_key()
    )
    return json.dumps(shown, indent=2)
