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
                                            # the offset is in the text; epoch / epoch_ms / epoch_us
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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from dwatch import yamlfile
from dwatch.errors import ConfigError
from dwatch.line_rules import LineRules, parse_line_rules
from dwatch.mapping_keys import (  # noqa: F401 - re-exported
    AMBIGUOUS_POLICIES,
    DEFAULT_AMBIGUOUS,
    DEFAULT_NONEXISTENT,
    KEYS,
    KIND_TABLE,
    KINDS,
    NONEXISTENT_POLICIES,
    reference_markdown,
)
from dwatch.schema import SOURCES_DIR, TableSpec, load_schema

_ALLOWED_KEYS = {k.name for k in KEYS}
_LIST_KEYS = (
    "match_columns", "match_files", "identifiers", "ignore_columns", "not_logged", "event_id_from",
)  # fmt: skip


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
    not_logged: tuple[str, ...] = ()
    event_id_from: tuple[str, ...] = ()
    csv_options: dict[str, Any] = field(default_factory=dict)
    # The list whose items each become one record ('Records' of 'Records[*].eventID').
    item_list: str | None = None
    lines: LineRules = field(default_factory=LineRules)
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

# A dotted path into nested JSON: name segments, optionally with [n] array indexes, or
# [*] for every item of a list (dwatch.mapping_items makes one record of each).
_PATH_SEGMENT = re.compile(r"([^.\[\]]+)((?:\[(?:\d+|\*)\])*)")
WILDCARD = "[*]"
POSITION = "[#]"


def wildcard_list(path: str) -> str | None:
    """'Records[*].eventID' -> 'Records'; the path of the list a [*] or [#] path walks."""
    for marker in (WILDCARD, POSITION):
        if marker in path:
            return path.split(marker, 1)[0]
    return None


def split_path(path: str) -> tuple[str, str] | None:
    """'user.org.code' -> ('user', '$."org"."code"'); 'items[0].name' -> ('items',
    '$[0]."name"'); 'Records[*].eventID' -> ('Records', '$."eventID"') read in the record
    made of one item. None when the text is not a path (no '.' or '[')."""
    if "." not in path and "[" not in path:
        return None
    # Each item of a [*] list stands in the list's place in its own record.
    path = path.replace(WILDCARD, "")
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


def _line_rules(raw: dict[str, Any], path: Path) -> LineRules:
    rules = parse_line_rules(raw, path)
    if rules.active and _item_list(raw, path):
        raise ConfigError(
            "a mapping cannot both walk a list ([*]) and read lines (extract, records)",
            where=_where(path, "extract"),
            fix="write two mappings, one per export",
        )
    return rules


def _event_id_from(raw: dict[str, Any], path: Path) -> tuple[str, ...]:
    names = _text_list(raw, "event_id_from", path)
    folded = {re.sub(r"[^0-9a-z]+", "_", n.lower()).strip("_"): n for n in names}
    raw_ids = set(_text_list(raw, "identifiers", path)) & set(names)
    raw_ids |= {n for f, n in folded.items() if f in load_schema().identifier_columns}
    if raw_ids:
        raise ConfigError(
            f"event_id_from lists taxpayer identifier column(s) {sorted(raw_ids)}: the hash"
            " is not keyed, so the identifier could be recovered from the event id",
            where=_where(path, "event_id_from"),
            fix="derive the id from times, users, actions and file ids only",
        )
    if names and "event_id" in (raw.get("columns") or {}):
        raise ConfigError(
            "event_id is both mapped to a column and derived (event_id_from)",
            where=_where(path, "event_id_from"),
            fix="keep columns.event_id when the log has an id; event_id_from when it has none",
        )
    return names


def derived_event_id_sql(mapping: SourceMapping, columns: set[str]) -> str | None:
    """SQL of an event id hashed from the event_id_from columns ('h' and 24 hex digits);
    None when one of them is not in the file (then event_id is a missing column)."""
    if any(c not in columns for c in mapping.event_id_from):
        return None
    quoted = ['coalesce("' + c.replace('"', '""') + "\", '')" for c in mapping.event_id_from]
    return f"'h' || left(sha256(concat_ws(chr(31), {', '.join(quoted)})), 24)"


def _not_logged(raw: dict[str, Any], path: Path, table: TableSpec) -> tuple[str, ...]:
    """Fields the system does not record: optional canonical fields the mapping leaves empty."""
    names = _text_list(raw, "not_logged", path)
    fields = {f.name: f for f in table.input_fields}
    filled = set(raw.get("columns") or {}) | set(raw.get("constants") or {})
    for name in names:
        problem = (
            "is not a canonical field" if name not in fields
            else "is required: give a constant instead" if fields[name].required
            else "is filled by columns or constants" if name in filled
            else None
        )  # fmt: skip
        if problem:
            raise ConfigError(
                f"{name!r} {problem}",
                where=_where(path, "not_logged"),
                fix="list only optional fields the system never records",
            )
    return names


def not_logged_warning(mapping: SourceMapping, file: Path) -> list[str]:
    """Said on every load: which fields this system does not record, left empty."""
    if not mapping.not_logged:
        return []
    return [
        f"{file}: {mapping.name} records no {', '.join(mapping.not_logged)} (not_logged in"
        f" {mapping.path}); left empty: detectors that need them judge these events without"
    ]


def _item_list(raw: dict[str, Any], path: Path) -> str | None:
    """The one list the mapping's [*] / [#] paths walk, or None; each such path names it
    once, and [#] (the item's position) stands alone at the end of its path."""
    lists: dict[str, str] = {}
    written = [("columns", str(v)) for v in (raw.get("columns") or {}).values()]
    written += [("identifiers", v) for v in _text_list(raw, "identifiers", path)]
    for key, text in written:
        marks = text.count(WILDCARD) + text.count(POSITION)
        listed = wildcard_list(text)
        if listed is None:
            continue
        if marks > 1 or (POSITION in text and not text.endswith(POSITION)):
            raise ConfigError(
                f"{text!r} walks more than one list, or [#] is not at its end",
                where=_where(path, key),
                fix="one [*] per path (Records[*].eventID); [#] only as Records[#]",
            )
        if not listed or split_path(listed + ".x") is None:
            raise ConfigError(f"{text!r} names no list before [*]", where=_where(path, key))
        lists[listed] = text
    if len(lists) > 1:
        raise ConfigError(
            f"the paths walk several lists {sorted(lists)}; one event per item needs one list",
            where=_where(path, "columns"),
            fix="use [*] on one list and [0], [1] ... to pick from the others",
        )
    return next(iter(lists), None)


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
    if len(formats) > 1 and any(f in ("epoch", "epoch_ms", "epoch_us") for f in formats):
        raise ConfigError(
            "epoch / epoch_ms / epoch_us cannot be combined with other timestamp patterns",
            where=_where(path, "timestamp_format"),
            fix="give epoch, epoch_ms or epoch_us alone",
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
        event_id_from=_event_id_from(raw, path),
        not_logged=_not_logged(
            raw, path, schema.items if kind == "request_items" else schema.events
        ),
        csv_options=dict(raw.get("csv") or {}),
        item_list=_item_list(raw, path),
        lines=_line_rules(raw, path),
        path=path,
        explicit=frozenset(raw),
    )


def load_mapping(path: Path) -> SourceMapping:
    try:
        raw = yamlfile.safe_load(path.read_text(encoding="utf-8"))
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


def named_by_mappings(directory: Path | None = None) -> Callable[[str], bool]:
    """Whether a file name is one some mapping's match_files names."""
    try:
        patterns = [p for m in available_mappings(directory).values() for p in m.match_files]
    except ConfigError:
        patterns = []  # a broken mapping is reported when a file is loaded
    return lambda name: any(fnmatch.fnmatchcase(name, p) for p in patterns)


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
