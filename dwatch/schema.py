"""The canonical disclosure event, loaded from ``schemas/canonical.yaml``.

This module is the only reader of that file: the DDL, the field documentation and the
validation suites are all derived from the objects here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from dwatch import yamlfile
from dwatch.errors import ConfigError
from dwatch.timevalues import parse_duration, parse_setting_instant

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"
CANONICAL_PATH = SCHEMA_DIR / "canonical.yaml"
SOURCES_DIR = SCHEMA_DIR / "sources"

# Lineage columns every canonical table carries; written by ingest, never by the source.
SYSTEM_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("ingest_run_id", "VARCHAR", "The ingest run that loaded the row (ingest_runs.run_id)."),
    ("source_row", "BIGINT", "Row number of the record in its source file (1 = first data row)."),
    ("extra", "JSON", "Columns the source had beyond the canonical ones, kept rather than lost."),
)

_TYPES = {"VARCHAR", "BIGINT", "TIMESTAMPTZ", "BOOLEAN", "VARCHAR[]", "DOUBLE"}


@dataclass(frozen=True)
class FieldSpec:
    name: str
    type: str
    required: bool
    description: str
    derived: bool = False
    vocabulary: str | None = None
    strict: bool = False  # values outside the vocabulary are rejected, not just reported
    case: str | None = None
    free_text: bool = False
    identifier: bool = False  # an id: a taxpayer-id shape makes the whole value a pseudonym
    pseudonym: bool = False
    sensitive: bool = False
    min: int | None = None


@dataclass(frozen=True)
class TableSpec:
    name: str
    description: str
    key: tuple[str, ...]
    fields: tuple[FieldSpec, ...]

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]

    @property
    def input_fields(self) -> list[FieldSpec]:
        """Fields a source supplies (derived ones are computed on ingest)."""
        return [f for f in self.fields if not f.derived]

    @property
    def required(self) -> list[str]:
        return [f.name for f in self.fields if f.required and not f.derived]

    def field(self, name: str) -> FieldSpec:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)


@dataclass(frozen=True)
class CanonicalSchema:
    version: int
    vocabularies: dict[str, tuple[str, ...]]
    identifier_columns: tuple[str, ...]
    tables: dict[str, TableSpec] = field(default_factory=dict)
    # Plausible instants (``instants:``): not before the floor, not later than the time of
    # ingest plus the margin.
    instants_not_before: datetime = datetime(1900, 1, 1, tzinfo=UTC)
    instants_ahead_of_ingest: timedelta = timedelta(days=1)

    @property
    def events(self) -> TableSpec:
        return self.tables["disclosure_events"]

    @property
    def items(self) -> TableSpec:
        return self.tables["request_items"]


def _parse(raw: dict[str, Any], path: Path) -> CanonicalSchema:
    tables: dict[str, TableSpec] = {}
    for tname, t in raw["tables"].items():
        fields = []
        for i, f in enumerate(t["fields"]):
            where = f"{path}: tables.{tname}.fields[{i}]"
            if f.get("type") not in _TYPES:
                raise ConfigError(
                    f"unknown type {f.get('type')!r}",
                    where=where,
                    fix=f"use one of {sorted(_TYPES)}",
                )
            if not re.fullmatch(r"[a-z_][a-z0-9_]*", f["name"]):
                raise ConfigError(f"bad field name {f['name']!r}", where=where)
            fields.append(FieldSpec(**f))
        tables[tname] = TableSpec(tname, t["description"], tuple(t["key"]), tuple(fields))
    return CanonicalSchema(
        version=int(raw["version"]),
        vocabularies={k: tuple(v) for k, v in raw["vocabularies"].items()},
        identifier_columns=tuple(raw["identifier_columns"]),
        tables=tables,
        **_instants(raw.get("instants") or {}, f"{path}: instants"),
    )


def _instants(raw: dict[str, Any], where: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    if "not_before" in raw:
        found["instants_not_before"] = parse_setting_instant(
            raw["not_before"], where=f"{where}.not_before"
        )
    if "ahead_of_ingest" in raw:
        found["instants_ahead_of_ingest"] = parse_duration(
            raw["ahead_of_ingest"], where=f"{where}.ahead_of_ingest"
        )
    return found


@cache
def load_schema(path: Path = CANONICAL_PATH) -> CanonicalSchema:
    try:
        raw = yamlfile.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read the canonical schema: {exc}", where=str(path)) from exc
    return _parse(raw, path)


def ddl(table: TableSpec) -> str:
    """CREATE TABLE statement for a canonical table, with lineage columns appended."""
    cols = [f"    {f.name} {f.type}{' NOT NULL' if f.required else ''}" for f in table.fields]
    cols += [f"    {name} {typ}" for name, typ, _ in SYSTEM_COLUMNS]
    comments = [
        f"COMMENT ON COLUMN {table.name}.{f.name} IS '{_sql_str(f.description)}';"
        for f in table.fields
    ] + [
        f"COMMENT ON COLUMN {table.name}.{name} IS '{_sql_str(desc)}';"
        for name, _, desc in SYSTEM_COLUMNS
    ]
    return (
        f"CREATE TABLE IF NOT EXISTS {table.name} (\n"
        + ",\n".join(cols)
        + "\n);\n"
        + f"COMMENT ON TABLE {table.name} IS '{_sql_str(table.description)}';\n"
        + "\n".join(comments)
    )


def _sql_str(text: str) -> str:
    # Descriptions are our own text from the schema file, never log data.
    return text.replace("'", "''")


def field_docs_markdown(schema: CanonicalSchema | None = None) -> str:
    """Field documentation, generated from the schema (docs/schema.md is this output)."""
    schema = schema or load_schema()
    out = [
        "# Canonical schema",
        "",
        "Generated from `schemas/canonical.yaml` by `dwatch schema --markdown`; do not edit by hand.",
        "",
    ]
    for t in schema.tables.values():
        out += [f"## `{t.name}`", "", t.description, "", f"Key: `{', '.join(t.key)}`", ""]
        out += ["| field | type | required | meaning |", "|---|---|---|---|"]
        for f in t.fields:
            req = "derived" if f.derived else ("yes" if f.required else "no")
            desc = f.description
            if f.vocabulary and schema.vocabularies.get(f.vocabulary):
                desc += (
                    " Accepted: "
                    + ", ".join(f"`{v}`" for v in schema.vocabularies[f.vocabulary])
                    + "."
                )
            out.append(f"| {f.name} | {f.type} | {req} | {desc} |")
        for name, typ, desc in SYSTEM_COLUMNS:
            out.append(f"| {name} | {typ} | system | {desc} |")
        out.append("")
    return "\n".join(out)
