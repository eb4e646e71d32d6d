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
    timestamp_format: "%m/%d/%Y %I:%M:%S %p"  # strptime; with %z the offset is in the text;
                                            # epoch / epoch_ms for Unix time (no zone needed)
    match_columns: [Activity ID, Event Time]   # auto-selects this mapping for such files
    columns: {event_id: Activity ID, occurred_at: Event Time}
    constants: {disclosing_agency: IRS}
    values: {event_type: {File Upload: disclosure, File Download: access}}
    identifiers: [Subject TIN]              # pseudonymised into taxpayer_ref
    list_separator: ";"                     # for data_elements written as a;b;c
    ignore_columns: [Browser]               # known columns deliberately not kept
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from dwatch.errors import ConfigError
from dwatch.schema import SOURCES_DIR, load_schema

KINDS = ("events", "request_items")
KIND_TABLE = {"events": "disclosure_events", "request_items": "request_items"}
_ALLOWED_KEYS = {
    "source_system",
    "kind",
    "description",
    "timezone",
    "timestamp_format",
    "match_columns",
    "columns",
    "constants",
    "values",
    "identifiers",
    "list_separator",
    "ignore_columns",
    "format",
    "csv",
    "source",
}


@dataclass(frozen=True)
class SourceMapping:
    name: str
    kind: str | None = None
    source_system: str | None = None
    description: str = ""
    timezone: str | None = None
    timestamp_format: str | None = None
    match_columns: tuple[str, ...] = ()
    columns: dict[str, str] = field(default_factory=dict)
    constants: dict[str, str] = field(default_factory=dict)
    values: dict[str, dict[str, str]] = field(default_factory=dict)
    identifiers: tuple[str, ...] = ()
    list_separator: str | None = None
    ignore_columns: tuple[str, ...] = ()
    csv_options: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def is_canonical(self) -> bool:
        return self.path is None


CANONICAL = SourceMapping(name="canonical")


def _where(path: Path, key: str) -> str:
    return f"{path}: {key}"


def parse_mapping(raw: Any, path: Path) -> SourceMapping:
    if not isinstance(raw, dict):
        raise ConfigError("a source mapping must be a YAML mapping", where=str(path))
    unknown = set(raw) - _ALLOWED_KEYS
    if unknown:
        raise ConfigError(
            f"unknown key(s) {sorted(unknown)}",
            where=str(path),
            fix=f"use only {sorted(_ALLOWED_KEYS)}",
        )
    schema = load_schema()
    kind = raw.get("kind")
    if kind is not None and kind not in KINDS:
        raise ConfigError(f"kind must be one of {KINDS}, not {kind!r}", where=_where(path, "kind"))
    targets = {f.name for t in schema.tables.values() for f in t.input_fields}
    for section in ("columns", "constants", "values"):
        value = raw.get(section) or {}
        if not isinstance(value, dict):
            raise ConfigError(f"{section} must be a mapping", where=_where(path, section))
        for canonical in value:
            if canonical not in targets:
                raise ConfigError(
                    f"{canonical!r} is not a canonical field",
                    where=_where(path, f"{section}.{canonical}"),
                    fix="see `dwatch schema` for the field names",
                )
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
    return SourceMapping(
        name=path.stem,
        kind=kind,
        source_system=raw.get("source_system"),
        description=raw.get("description", ""),
        timezone=tz,
        timestamp_format=raw.get("timestamp_format"),
        match_columns=tuple(raw.get("match_columns") or ()),
        columns={k: str(v) for k, v in (raw.get("columns") or {}).items()},
        constants={k: str(v) for k, v in (raw.get("constants") or {}).items()},
        values={
            k: {str(a): str(b) for a, b in v.items()} for k, v in (raw.get("values") or {}).items()
        },
        identifiers=tuple(raw.get("identifiers") or ()),
        list_separator=raw.get("list_separator"),
        ignore_columns=tuple(raw.get("ignore_columns") or ()),
        csv_options=dict(raw.get("csv") or {}),
        path=path,
    )


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
) -> SourceMapping | None:
    """The mapping whose match_columns all appear in ``columns`` (most specific wins)."""
    present = set(columns)
    best: SourceMapping | None = None
    for mapping in (mappings if mappings is not None else available_mappings(directory)).values():
        fits = bool(mapping.match_columns) and set(mapping.match_columns) <= present
        if fits and (best is None or len(mapping.match_columns) > len(best.match_columns)):
            best = mapping
    return best
