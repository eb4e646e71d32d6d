"""How a mapping reads logs written as lines of text: extract, records, fill_down.

Syslog and journald logs (OpenSSH's sftp-server among them) write one message per line
with no columns. A mapping names regular expressions whose named groups become columns
(``extract``), which lines are records (``records``; the others are context, such as the
"session opened" line that names the user), and which values a record takes from an
earlier line of the same session (``fill_down`` within ``fill_down_within``). These are
parsed here; dwatch/mapping_lines.py applies them to a staged file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dwatch.errors import ConfigError

_GROUP = re.compile(r"\(\?P<(\w+)>")


@dataclass(frozen=True)
class LineRules:
    # column -> patterns tried in order; the first that matches gives the groups
    extract: dict[str, tuple[str, ...]] = field(default_factory=dict)
    records: dict[str, str] = field(default_factory=dict)  # column -> pattern a record matches
    fill_down: tuple[str, ...] = ()
    fill_down_within: str | None = None

    @property
    def active(self) -> bool:
        return bool(self.extract or self.records or self.fill_down)

    def groups(self) -> list[str]:
        """Every named group, in the order first written."""
        names: list[str] = []
        for patterns in self.extract.values():
            for pattern in patterns:
                names += [n for n in group_names(pattern) if n not in names]
        return names


def group_names(pattern: str) -> list[str]:
    return _GROUP.findall(pattern)


def _pattern(text: Any, where: str) -> str:
    if not isinstance(text, str) or not text:
        raise ConfigError(f"a pattern must be text, not {text!r}", where=where)
    try:
        re.compile(text)
    except re.error as exc:
        raise ConfigError(
            f"{text!r} is not a regular expression: {exc}",
            where=where,
            fix="write RE2 syntax with named groups, e.g. 'user (?P<user>\\S+)'",
        ) from exc
    return text


def parse_line_rules(raw: dict[str, Any], path: Path) -> LineRules:
    """The extract / records / fill_down keys of a mapping, checked; errors name file and key."""
    extract: dict[str, tuple[str, ...]] = {}
    for column, patterns in (raw.get("extract") or {}).items():
        where = f"{path}: extract.{column}"
        listed = patterns if isinstance(patterns, list) else [patterns]
        extract[str(column)] = tuple(_pattern(p, where) for p in listed)
        for p in extract[str(column)]:
            if any(n.startswith("_") for n in group_names(p)):
                raise ConfigError("group names must not start with '_'", where=where)
    records = {
        str(c): _pattern(p, f"{path}: records.{c}") for c, p in (raw.get("records") or {}).items()
    }
    rules = LineRules(
        extract=extract,
        records=records,
        fill_down=tuple(str(n) for n in raw.get("fill_down") or ()),
        fill_down_within=raw.get("fill_down_within"),
    )
    unknown = [n for n in rules.fill_down if n not in rules.groups()]
    if unknown:
        raise ConfigError(
            f"fill_down names {unknown}, which no extract pattern captures",
            where=f"{path}: fill_down",
            fix="fill down the named groups of extract patterns only",
        )
    if rules.fill_down_within and not rules.fill_down:
        raise ConfigError("fill_down_within without fill_down", where=f"{path}: fill_down_within")
    return rules
