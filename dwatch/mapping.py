"""Source mappings: how one real log's columns become the canonical event.

One YAML file per source system in ``schemas/sources/<name>.yaml``. A file whose columns
already carry the canonical names needs no mapping at all (``CANONICAL``). A mapping
renames columns, sets constants, translates values, names the time zone of zone-less
timestamps and the timestamp format, and names the identifier columns to pseudonymise.

Example::

    source_system: kiteworks-activity       # written to source_system unless a column maps it
    kind: events                            # events | request_items
    description: Secure file-transfer activity export
    timezone: America/New_York              # zone of timestamps written without an offset
    timestamp_format: "%m/%d/%Y %I:%M:%S %p"  # strptime, or a list tried in order; with %z
                                            # the offset is in the text; epoch / epoch_ms
    ambiguous_time: earlier                 # repeated fall-back hour: earlier|later|quarantine
    nonexistent_time: shift                 # skipped spring hour: shift|quarantine
    match_columns: [Activity ID, Event Time]   # auto-selects this mapping for such files
    match_files: ["activity-*.csv"]         # ... or for files named so
    columns: {event_id: Activity ID, occurred_at: Event Time, actor_id: user.id}
    constants: {disclosing_agency: IRS}
    values: {event_type: {File Upload: disclosure, File Download: access}}
    identifiers: [Subject TIN]              # pseudonymised into taxpayer_ref
    list_separator: ";"                     # for data_elements written as a;b;c
    ignore_columns: [Browser]               # known columns deliberately not kept

Every key, with an example, is in ``schemas/sources/README.md``, written from :data:`KEYS`.
"""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from dwatch.errors import ConfigError
from dwatch.schema import SOURCES_DIR, load_schema

KINDS = ("events", "request_items")
KIND_TABLE = {"events": "disclosure_events", "request_items": "request_items"}
AMBIGUOUS_POLICIES = ("earlier", "later", "quarantine")
NONEXISTENT_POLICIES = ("shift", "quarantine")
DEFAULT_AMBIGUOUS = "earlier"
DEFAULT_NONEXISTENT = "shift"


@dataclass(frozen=True)
class KeyDoc:
    """One key of a source mapping: what it holds, what it does, and an example.

    The loader accepts exactly these keys and the reference page
    (``schemas/sources/README.md``, :func:`reference_markdown`) is written from them."""

    name: str
    holds: str
    meaning: str
    example: str


KEYS: tuple[KeyDoc, ...] = (
    KeyDoc("source_system", "text", "Written to source_system unless a column maps it.",
           "source_system: kiteworks-activity"),
    KeyDoc("kind", f"one of {', '.join(KINDS)}",
           "Which canonical table the file fills; guessed from the columns when absent.",
           "kind: events"),
    KeyDoc("description", "text", "What the export is, for people reading the mapping.",
           "description: Secure file-transfer activity export"),
    KeyDoc("format", "csv, jsonl or parquet",
           "Documentation of the export's file format; the reader follows the file's extension.",
           "format: csv"),
    KeyDoc("source", "text",
           "Documentation: where the export comes from (system, screen, job).",
           "source: Admin console > Reports > Activity, daily CSV"),
    KeyDoc("columns", "canonical field: column or path",
           "Which column holds each canonical field. In JSON Lines and Parquet a dotted path"
           " reaches into nested objects and arrays (arrays count from 0).",
           'columns: {event_id: Activity ID, actor_id: user.id, data_elements: "items[0].name"}'),
    KeyDoc("constants", "canonical field: value",
           "A value for every row; a mapped column's value wins where it is not empty.",
           "constants: {disclosing_agency: IRS}"),
    KeyDoc("values", "canonical field: {written: canonical}",
           "Values written another way (codes, Y/N, localised words), compared ignoring case;"
           " values not listed pass through.",
           "values: {event_type: {File Upload: disclosure}, encrypted: {Oui: 'true'}}"),
    KeyDoc("timezone", "IANA zone name",
           "The zone of timestamps written without an offset; a written offset or zone wins.",
           "timezone: America/New_York"),
    KeyDoc("timestamp_format", "strptime pattern, or a list tried in order",
           "How timestamps are written; with %z the offset is in the text; epoch / epoch_ms"
           " for Unix time. A list is tried in order, the first that reads a value wins.",
           'timestamp_format: ["%m/%d/%Y %I:%M:%S.%f %p", "%m/%d/%Y %I:%M:%S %p"]'),
    KeyDoc("ambiguous_time", f"one of {', '.join(AMBIGUOUS_POLICIES)}",
           "A zone-less time in the hour repeated when clocks go back: the first (earlier)"
           " or second (later) reading, or quarantine (ambiguous_local_time). Default"
           f" {DEFAULT_AMBIGUOUS}; every load that applies it says how many rows it touched.",
           "ambiguous_time: earlier"),
    KeyDoc("nonexistent_time", f"one of {', '.join(NONEXISTENT_POLICIES)}",
           "A zone-less time in the hour skipped when clocks go forward: shift (read with the"
           " offset before the change, so 02:30 becomes 03:30 daylight time) or quarantine"
           f" (nonexistent_local_time). Default {DEFAULT_NONEXISTENT}; every load that applies"
           " it says how many rows it touched.",
           "nonexistent_time: quarantine"),
    KeyDoc("match_columns", "list of column names",
           "Selects this mapping for a file holding all these columns (most specific wins).",
           "match_columns: [Activity ID, Event Time]"),
    KeyDoc("match_files", "list of file-name patterns",
           "Selects this mapping for files whose name matches one pattern (* ? [...])."
           " With match_columns too, both must hold. A file-name match beats a columns-only"
           " match, so logs with identical columns are told apart by name.",
           'match_files: ["receipts-ice-*.parquet"]'),
    KeyDoc("identifiers", "list of column names",
           "Columns holding raw taxpayer identifiers, pseudonymised into taxpayer_ref.",
           "identifiers: [Subject TIN]"),
    KeyDoc("list_separator", "text",
           "Separator of list fields (data_elements) written as a|b|c.",
           'list_separator: "|"'),
    KeyDoc("ignore_columns", "list of column names",
           "Known columns deliberately not kept (not reported as unmapped).",
           "ignore_columns: [Browser, Client IP]"),
    KeyDoc("csv", "mapping of delim, quote, escape",
           "CSV dialect when the sniffer would guess wrong.",
           "csv: {delim: ';', quote: '\"'}"),
)  # fmt: skip
_ALLOWED_KEYS = {k.name for k in KEYS}
_LIST_KEYS = ("match_columns", "match_files", "identifiers", "ignore_columns")


@dataclass(frozen=True)
class SourceMapping:
    name: str
    kind: str | None = None
    source_system: str | None = None
    description: str = ""
    timezone: str | None = None
    timestamp_formats: tuple[str, ...] = ()
    ambiguous_time: str = DEFAULT_AMBIGUOUS
    nonexistent_time: str = DEFAULT_NONEXISTENT
    match_columns: tuple[str, ...] = ()
    match_files: tuple[str, ...] = ()
    columns: dict[str, str] = field(default_factory=dict)
    constants: dict[str, str] = field(default_factory=dict)
    values: dict[str, dict[str, str]] = field(default_factory=dict)
    identifiers: tuple[str, ...] = ()
    list_separator: str | None = None
    ignore_columns: tuple[str, ...] = ()
    csv_options: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    # Keys given explicitly in the file (a default applied silently must be said: ingest warns).
    explicit: frozenset[str] = frozenset()

    @property
    def is_canonical(self) -> bool:
        return self.path is None

    @property
    def timestamp_format(self) -> str | None:
        """The first timestamp pattern (the only one for most mappings)."""
        return self.timestamp_formats[0] if self.timestamp_formats else None

    def matches_file(self, file_name: str) -> bool:
        return any(fnmatch.fnmatchcase(file_name, p) for p in self.match_files)


CANONICAL = SourceMapping(name="canonical")

# A dotted path into nested JSON: name segments, optionally with [n] array indexes.
_PATH_SEGMENT = re.compile(r"([^.\[\]]+)((?:\[\d+\])*)")


def split_path(path: str) -> tuple[str, str] | None:
    """'user.org.code' -> ('user', '$."org"."code"'); 'items[0].name' -> ('items',
    '$[0]."name"'). None when the text is not a path (no '.' or '[')."""
    if "." not in path and "[" not in path:
        return None
    segments = path.split(".")
    parts: list[str] = []
    for segment in segments:
        m = _PATH_SEGMENT.fullmatch(segment)
        if not m:
            return None
        parts.append(f'"{m.group(1)}"' if not parts else f'."{m.group(1)}"')
        parts.append(m.group(2))
    head = _PATH_SEGMENT.fullmatch(segments[0])
    assert head is not None
    rest = "".join(parts)[len(f'"{head.group(1)}"') :]
    return head.group(1), "$" + rest


def _where(path: Path, key: str) -> str:
    return f"{path}: {key}"


def _text_list(raw: Any, key: str, path: Path) -> tuple[str, ...]:
    value = raw.get(key)
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not all(isinstance(v, str | int | float) for v in value):
        raise ConfigError(
            f"{key} must be a list of texts, not {value!r}",
            where=_where(path, key),
            fix=f"write {key}: [first, second]",
        )
    return tuple(str(v) for v in value)


def _choice(raw: Any, key: str, allowed: tuple[str, ...], default: str, path: Path) -> str:
    value = raw.get(key, default)
    if value not in allowed:
        raise ConfigError(
            f"{key} must be one of {list(allowed)}, not {value!r}",
            where=_where(path, key),
            fix=f"write {key}: {default} (the default) or another of {list(allowed)}",
        )
    return str(value)


def _check_sections(raw: dict[str, Any], path: Path, targets: set[str]) -> None:
    """The mapping-valued and list-valued keys have their shapes and name canonical fields."""
    for section in ("columns", "constants", "values", "csv"):
        value = raw.get(section) or {}
        if not isinstance(value, dict):
            raise ConfigError(f"{section} must be a mapping", where=_where(path, section))
        for canonical in value if section != "csv" else ():
            if canonical not in targets:
                raise ConfigError(
                    f"{canonical!r} is not a canonical field",
                    where=_where(path, f"{section}.{canonical}"),
                    fix="see `dwatch schema` for the field names",
                )
    for canonical, written in (raw.get("values") or {}).items():
        if not isinstance(written, dict):
            raise ConfigError(
                "values of a field must be a mapping of written value to canonical value",
                where=_where(path, f"values.{canonical}"),
                fix=f"write values: {{{canonical}: {{Written: canonical}}}}",
            )
    for key in _LIST_KEYS:
        _text_list(raw, key, path)
    for source_path in (raw.get("columns") or {}).values():
        if not isinstance(source_path, str | int) or str(source_path).strip() == "":
            raise ConfigError(
                f"a column name must be text, not {source_path!r}", where=_where(path, "columns")
            )


def parse_mapping(raw: Any, path: Path) -> SourceMapping:
    if not isinstance(raw, dict):
        raise ConfigError("a source mapping must be a YAML mapping", where=str(path))
    unknown = set(raw) - _ALLOWED_KEYS
    if unknown:
        raise ConfigError(
            f"unknown key(s) {sorted(unknown)}",
            where=_where(path, sorted(unknown)[0]),
            fix=f"use only {sorted(_ALLOWED_KEYS)} (schemas/sources/README.md)",
        )
    schema = load_schema()
    kind = raw.get("kind")
    if kind is not None and kind not in KINDS:
        raise ConfigError(f"kind must be one of {KINDS}, not {kind!r}", where=_where(path, "kind"))
    _check_sections(raw, path, {f.name for t in schema.tables.values() for f in t.input_fields})
    tz = raw.get("timezone")
    if tz:
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ConfigError(
                f"unknown time zone {tz!r}",
                where=_where(path, "timezone"),
                fix="use an IANA zone name such as America/New_York",
            ) from exc
    formats = _text_list(raw, "timestamp_format", path)
    if len(formats) > 1 and any(f in ("epoch", "epoch_ms") for f in formats):
        raise ConfigError(
            "epoch / epoch_ms cannot be combined with other timestamp patterns",
            where=_where(path, "timestamp_format"),
            fix="give epoch or epoch_ms alone",
        )
    return SourceMapping(
        name=path.stem,
        kind=kind,
        source_system=raw.get("source_system"),
        description=raw.get("description", ""),
        timezone=tz,
        timestamp_formats=formats,
        ambiguous_time=_choice(raw, "ambiguous_time", AMBIGUOUS_POLICIES, DEFAULT_AMBIGUOUS, path),
        nonexistent_time=_choice(
            raw, "nonexistent_time", NONEXISTENT_POLICIES, DEFAULT_NONEXISTENT, path
        ),
        match_columns=_text_list(raw, "match_columns", path),
        match_files=_text_list(raw, "match_files", path),
        columns={k: str(v) for k, v in (raw.get("columns") or {}).items()},
        constants={k: str(v) for k, v in (raw.get("constants") or {}).items()},
        values={
            k: {str(a): str(b) for a, b in v.items()} for k, v in (raw.get("values") or {}).items()
        },
        identifiers=_text_list(raw, "identifiers", path),
        list_separator=raw.get("list_separator"),
        ignore_columns=_text_list(raw, "ignore_columns", path),
        csv_options=dict(raw.get("csv") or {}),
        path=path,
        explicit=frozenset(raw),
    )


def reference_markdown() -> str:
    """The reference page of mapping keys (schemas/sources/README.md), from :data:`KEYS`."""
    lines = [
        "# Source mappings",
        "",
        "<!-- Generated from dwatch.mapping.KEYS by `dwatch mapping reference`; do not edit. -->",
        "",
        "One YAML file per source system in this folder (`<name>.yaml`) tells ingest how a",
        "real export's columns become the canonical event (`dwatch schema`). A file whose",
        "columns already carry the canonical names needs no mapping at all. Draft one with",
        "`dwatch mapping suggest FILE`, try it with `dwatch mapping test MAPPING FILE` (the",
        "store is not touched) and validate every mapping with `dwatch mapping check`.",
        "",
        "| key | holds | meaning | example |",
        "|---|---|---|---|",
    ]
    for key in KEYS:
        cells = [f"`{key.name}`", key.holds, key.meaning, f"`{key.example}`"]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def load_mapping(path: Path) -> SourceMapping:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read source mapping: {exc}", where=str(path)) from exc
    return parse_mapping(raw, path)


def sources_dir() -> Path:
    """Folder of source mappings: $DWATCH_SOURCES_DIR, else schemas/sources in the package."""
    return Path(os.environ.get("DWATCH_SOURCES_DIR") or SOURCES_DIR)


def available_mappings(directory: Path | None = None) -> dict[str, SourceMapping]:
    directory = directory or sources_dir()
    if not directory.is_dir():
        return {}
    return {
        p.stem: load_mapping(p)
        for p in sorted(directory.glob("*.yaml"))
        if not p.name.endswith(".expectations.yaml")
    }


def get_mapping(name: str, directory: Path | None = None) -> SourceMapping:
    directory = directory or sources_dir()
    mappings = available_mappings(directory)
    if name in ("canonical", ""):
        return CANONICAL
    if name not in mappings:
        raise ConfigError(
            f"unknown source mapping {name!r}",
            where=str(directory),
            fix=f"use one of {['canonical', *sorted(mappings)]} or add {directory}/{name}.yaml",
        )
    return mappings[name]


def match_mapping(
    columns: list[str],
    directory: Path | None = None,
    *,
    mappings: dict[str, SourceMapping] | None = None,
    file_name: str | None = None,
) -> SourceMapping | None:
    """The mapping selected for a file with these columns (and name).

    A mapping with match_files is a candidate only for a file whose name matches, and then
    its match_columns (if any) must be present too; a mapping with only match_columns is
    a candidate when they all appear. A file-name match beats a columns-only match; among
    equals the most specific (most match_columns) wins."""
    present = set(columns)
    best: SourceMapping | None = None
    best_rank = (-1, -1)
    for mapping in (mappings if mappings is not None else available_mappings(directory)).values():
        if mapping.match_files:
            if file_name is None or not mapping.matches_file(file_name):
                continue
        elif not mapping.match_columns:
            continue
        if not set(mapping.match_columns) <= present:
            continue
        rank = (int(bool(mapping.match_files)), len(mapping.match_columns))
        if rank > best_rank:
            best, best_rank = mapping, rank
    return best
