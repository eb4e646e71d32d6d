"""Durations and instants written in settings files ('15 minutes', '1990-01-01T00:00:00Z')."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from dwatch.errors import ConfigError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(seconds?|minutes?|hours?|days?|s|m|h|d)\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: object, *, where: str) -> timedelta:
    """'15 minutes', '7 days', '30 s' -> timedelta."""
    m = _DURATION.match(str(text))
    if not m:
        raise ConfigError(
            f"not a duration: {text!r}",
            where=where,
            fix="write '<number> <unit>' with unit seconds, minutes, hours or days, e.g. '7 days'",
        )
    return timedelta(seconds=float(m.group(1)) * _UNIT_SECONDS[m.group(2)[0]])


def parse_setting_instant(text: object, *, where: str) -> datetime:
    """'1990-01-01T00:00:00Z' -> an aware UTC datetime; a zone is required."""
    try:
        value = text if isinstance(text, datetime) else datetime.fromisoformat(str(text))
    except ValueError as exc:
        raise ConfigError(
            f"not an ISO 8601 instant: {text!r}",
            where=where,
            fix="write e.g. '1990-01-01T00:00:00Z'",
        ) from exc
    if value.tzinfo is None:
        raise ConfigError(
            f"instant {text!r} has no time zone",
            where=where,
            fix="add 'Z' or an offset such as '+00:00'",
        )
    return value.astimezone(UTC)
