"""Per-source suites: what only one source promises, next to its mapping.

``schemas/sources/<source_system>.expectations.yaml`` (or under $DWATCH_SOURCES_DIR)::

    source_system: irs-disclosure-ledger
    description: What this log promises beyond the canonical schema.
    silence_window: 3 days            # optional: overrides the default for this source
    expectations:
      - type: expect_column_values_to_be_in_set
        column: disclosing_agency
        value_set: [IRS]
        action: quarantine            # optional: quarantine | record (default: settings)
      - type: expect_column_values_to_match_regex
        column: event_id
        regex: "^DL-[0-9]{8}$"

Only expectation types whose failing rows can also be expressed in SQL are accepted (the
rows are quarantined by the same condition), listed in ``SUPPORTED``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from dwatch import yamlfile
from dwatch.errors import ConfigError
from dwatch.schema import SOURCES_DIR, TableSpec
from dwatch.validate.config import ROW_ACTIONS, parse_duration
from dwatch.validate.suites import Check, GxSpec, ident, sql_literal

SUFFIX = ".expectations.yaml"


def _value(v: object) -> object:
    """YAML value for SQL: ISO strings with a zone become instants (for timestamp bounds)."""
    if isinstance(v, str):
        try:
            parsed = datetime.fromisoformat(v)
        except ValueError:
            return v
        return parsed if parsed.tzinfo else v
    return v


def _in_list(values: list[object]) -> str:
    return ", ".join(sql_literal(_value(v)) for v in values) or "NULL"


def _between(col: str, kw: dict[str, Any]) -> str:
    parts = []
    if kw.get("min_value") is not None:
        parts.append(f"{col} < {sql_literal(_value(kw['min_value']))}")
    if kw.get("max_value") is not None:
        parts.append(f"{col} > {sql_literal(_value(kw['max_value']))}")
    return f"{col} IS NOT NULL AND ({' OR '.join(parts) or 'FALSE'})"


def _lengths(col: str, kw: dict[str, Any]) -> str:
    return _between(f"length({col})", kw)


# type -> (GX class in great_expectations.expectations, required kwargs, SQL predicate TRUE
# when the row fails)
SUPPORTED: dict[str, tuple[str, tuple[str, ...], Callable[[str, dict], str]]] = {
    "expect_column_values_to_not_be_null": (
        "ExpectColumnValuesToNotBeNull",
        (),
        lambda c, kw: f"{c} IS NULL",
    ),
    "expect_column_values_to_be_in_set": (
        "ExpectColumnValuesToBeInSet",
        ("value_set",),
        lambda c, kw: f"{c} IS NOT NULL AND {c} NOT IN ({_in_list(kw['value_set'])})",
    ),
    "expect_column_values_to_not_be_in_set": (
        "ExpectColumnValuesToNotBeInSet",
        ("value_set",),
        lambda c, kw: f"{c} IN ({_in_list(kw['value_set'])})",
    ),
    "expect_column_values_to_be_between": (
        "ExpectColumnValuesToBeBetween",
        (),
        _between,
    ),
    "expect_column_value_lengths_to_be_between": (
        "ExpectColumnValueLengthsToBeBetween",
        (),
        _lengths,
    ),
    "expect_column_values_to_match_regex": (
        "ExpectColumnValuesToMatchRegex",
        ("regex",),
        lambda c, kw: f"{c} IS NOT NULL AND NOT regexp_matches({c}, {sql_literal(kw['regex'])})",
    ),
    "expect_column_values_to_not_match_regex": (
        "ExpectColumnValuesToNotMatchRegex",
        ("regex",),
        lambda c, kw: f"{c} IS NOT NULL AND regexp_matches({c}, {sql_literal(kw['regex'])})",
    ),
}


@dataclass(frozen=True)
class SourceSuite:
    source_system: str
    path: Path
    description: str = ""
    silence_window: timedelta | None = None
    expectations: tuple[dict[str, Any], ...] = field(default_factory=tuple)

    @property
    def suite_name(self) -> str:
        return f"source.{self.source_system}"

    def checks(self, table: TableSpec, default_action: str) -> list[Check]:
        out = []
        for i, spec in enumerate(self.expectations):
            etype = spec["type"]
            cls, _, predicate = SUPPORTED[etype]
            column = spec["column"]
            kwargs = {
                k: (_value(v) if k in ("min_value", "max_value") else v)
                for k, v in spec.items()
                if k not in ("type", "column", "action", "description")
            }
            name = f"{etype}({column})"
            description = spec.get("description") or f"{self.source_system} promises this"

            spec_gx = GxSpec(
                cls,
                {
                    "column": column,
                    "meta": {"dwatch_check": name},
                    "description": description,
                    **kwargs,
                },
            )

            out.append(
                Check(
                    etype,
                    column,
                    "row",
                    description,
                    spec_gx,
                    predicate=predicate(f"b.{ident(column)}", kwargs),
                    action=spec.get("action", default_action),
                    check_id=f"{self.suite_name}[{i}]",
                )
            )
        return out


# Arguments a suite may give beside type, column, action and description, with the kind of
# value each takes. Checked here without Great Expectations (the checks run on SQL alone;
# GX validates the expectation again when it builds the Data Docs).
ARGUMENTS: dict[str, tuple[type, ...]] = {
    "value_set": (list,),
    "regex": (str,),
    "min_value": (int, float, str, datetime),
    "max_value": (int, float, str, datetime),
    "strict_min": (bool,),
    "strict_max": (bool,),
    "mostly": (int, float),
}


def _check_arguments(spec: dict[str, Any], where: str) -> None:
    for key, value in spec.items():
        if key in ("type", "column", "action", "description"):
            continue
        kinds = ARGUMENTS.get(key)
        if kinds is None:
            raise ConfigError(
                f"invalid expectation: unknown argument {key!r}",
                where=where,
                fix=f"use {', '.join(sorted(ARGUMENTS))}",
            )
        # bool is an int to Python, not a number to a suite
        wrong = not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds)
        if value is not None and wrong:
            raise ConfigError(
                f"invalid expectation: {key} must be {' or '.join(k.__name__ for k in kinds)},"
                f" not {value!r}",
                where=where,
            )


def sources_dir(explicit: Path | None = None) -> Path:
    return explicit or Path(os.environ.get("DWATCH_SOURCES_DIR") or SOURCES_DIR)


def load_source_suites(
    directory: Path | None = None, table: TableSpec | None = None
) -> dict[str, SourceSuite]:
    """Every ``*.expectations.yaml`` in the sources folder, checked, by source_system."""
    folder = sources_dir(directory)
    suites: dict[str, SourceSuite] = {}
    if not folder.is_dir():
        return suites
    for path in sorted(folder.glob(f"*{SUFFIX}")):
        suite = _load_one(path, table)
        if suite.source_system in suites:
            raise ConfigError(
                f"two suites for source {suite.source_system!r}",
                where=f"{suites[suite.source_system].path}, {path}",
                fix="keep one file per source_system",
            )
        suites[suite.source_system] = suite
    return suites


def _load_one(path: Path, table: TableSpec | None) -> SourceSuite:
    try:
        raw = yamlfile.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read the source suite: {exc}", where=str(path)) from exc
    if not isinstance(raw, dict) or not raw.get("source_system"):
        raise ConfigError(
            "a source suite needs source_system and expectations",
            where=str(path),
            fix=f"see the example at the top of {__file__}",
        )
    expected_name = path.name.removesuffix(SUFFIX)
    if raw["source_system"] != expected_name:
        raise ConfigError(
            f"source_system {raw['source_system']!r} does not match the file name",
            where=str(path),
            fix=f"name the file {raw['source_system']}{SUFFIX}",
        )
    window = raw.get("silence_window")
    specs = raw.get("expectations") or []
    if not isinstance(specs, list):
        raise ConfigError("expectations must be a list", where=f"{path}: expectations")
    for i, spec in enumerate(specs):
        where = f"{path}: expectations[{i}]"
        if not isinstance(spec, dict) or spec.get("type") not in SUPPORTED:
            raise ConfigError(
                f"unsupported expectation {spec.get('type') if isinstance(spec, dict) else spec!r}",
                where=where,
                fix=f"use one of {', '.join(sorted(SUPPORTED))}",
            )
        if not spec.get("column"):
            raise ConfigError("expectation without a column", where=where)
        if table is not None and spec["column"] not in table.names:
            raise ConfigError(
                f"unknown column {spec['column']!r}",
                where=where,
                fix=f"use a canonical column of {table.name}",
            )
        missing = [k for k in SUPPORTED[spec["type"]][1] if k not in spec]
        if missing:
            raise ConfigError(f"missing {', '.join(missing)}", where=where)
        if spec.get("action", "quarantine") not in ROW_ACTIONS:
            raise ConfigError(
                f"unknown action {spec['action']!r}", where=where, fix=f"use {ROW_ACTIONS}"
            )
        _check_arguments(spec, where)
    return SourceSuite(
        source_system=str(raw["source_system"]),
        path=path,
        description=str(raw.get("description") or ""),
        silence_window=parse_duration(window, where=f"{path}: silence_window") if window else None,
        expectations=tuple(specs),
    )
