"""Feature frames cut to the days an increment touched (:func:`on_days`), rows built whole.

Inside ``on_days`` the feature queries of :mod:`detectors.ml.features` read only events of
the kept UTC days and of the days around them that a row needs (``margin_days``: a local
day reaches into the UTC day before or after it; a 7-day sum six days further), and keep
only the rows that touch a kept day. Given a partition (``by``: an event column such as
the recipient agency, for a frame whose rows read only events sharing its value) they
read and keep only the (value, day) pairs the increment touched.

The helpers below write the SQL fragments and parameters for that; outside ``on_days``
they add nothing, so training and window scoring read exactly what they did.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

# Separates a partition value from its day in the keys the queries compare.
_SEP = chr(31)


@dataclass(frozen=True)
class DayScope:
    """The kept UTC days, and (with ``by``) the (value of ``by``, day) pairs kept."""

    days: tuple[date, ...]
    by: str | None = None
    keys: tuple[tuple[str, date], ...] = ()


_SCOPE: ContextVar[DayScope | None] = ContextVar("_SCOPE", default=None)


@contextmanager
def on_days(
    days: Iterable[date], *, by: str | None = None, keys: Iterable[tuple[str, date]] = ()
) -> Iterator[None]:
    """Within the block, feature frames hold only the rows touching these UTC days (and,
    for a frame partitioned by ``by``, only the (value, day) ``keys``), each built whole."""
    scope = DayScope(tuple(sorted(set(days))), by, tuple(sorted(set(keys))) if by else ())
    token = _SCOPE.set(scope)
    try:
        yield
    finally:
        _SCOPE.reset(token)


def active() -> bool:
    return _SCOPE.get() is not None


def day_of(column: str) -> str:
    """The UTC day of an instant column."""
    return f"CAST(timezone('UTC', {column}) AS DATE)"


def _key(value: str, column: str) -> str:
    return f"coalesce({value}, '') || chr(31) || CAST({column} AS VARCHAR)"


def _partitioned(by: str | None) -> bool:
    scope = _SCOPE.get()
    return scope is not None and by is not None and scope.by == by


def read_filter(occurred_at: str, by: str | None = None, value: str | None = None) -> str:
    """``AND ...`` keeping the events of the days read (``$read_days``) and, when the
    scope is partitioned by the frame's ``by`` column (``value`` its expression), of the
    pairs read (``$read_keys``); empty outside on_days()."""
    if _SCOPE.get() is None:
        return ""
    sql = f"AND {day_of(occurred_at)} IN (SELECT unnest($read_days::DATE[]))"
    if _partitioned(by) and value is not None:
        sql += f" AND {_key(value, day_of(occurred_at))} IN (SELECT unnest($read_keys::VARCHAR[]))"
    return sql


def kept(first_at: str, last_at: str, by: str | None = None, value: str | None = None) -> str:
    """A condition keeping the rows that touch a kept day (``$keep_days``; a row is one
    local day or less, so its first and last events' UTC days are all it touches), or a
    kept pair (``$keep_keys``) when partitioned by ``by``; TRUE outside on_days()."""
    if _SCOPE.get() is None:
        return "TRUE"
    if _partitioned(by) and value is not None:
        keep = "(SELECT unnest($keep_keys::VARCHAR[]))"
        return (
            f"({_key(value, day_of(first_at))} IN {keep}"
            f" OR {_key(value, day_of(last_at))} IN {keep})"
        )
    keep = "(SELECT unnest($keep_days::DATE[]))"
    return f"({day_of(first_at)} IN {keep} OR {day_of(last_at)} IN {keep})"


def _around(days: Iterable[date], margin: int) -> list[date]:
    return sorted({d + timedelta(days=k) for d in days for k in range(-margin, margin + 1)})


def params(
    base: dict[str, Any], *, margin_days: int = 0, keep: bool = False, by: str | None = None
) -> dict[str, Any]:
    """``base`` (event types, from, to) with, inside on_days(), the window replaced by the
    days read (the kept days and ``margin_days`` around each) and the parameters the
    fragments above use (``keep``: the query calls :func:`kept`; ``by``: its partition)."""
    scope = _SCOPE.get()
    if scope is None:
        return base
    read = _around(scope.days, margin_days)
    out = {
        **base,
        "from": datetime.combine(read[0], time.min, tzinfo=UTC) if read else None,
        "to": datetime.combine(read[-1] + timedelta(days=1), time.min, tzinfo=UTC)
        if read
        else None,
        "read_days": read,
    }
    if _partitioned(by):
        out["read_keys"] = sorted(
            {
                f"{v}{_SEP}{d.isoformat()}"
                for v, day in scope.keys
                for d in _around([day], margin_days)
            }
        )
        if keep:
            out["keep_keys"] = sorted({f"{v}{_SEP}{d.isoformat()}" for v, d in scope.keys})
    elif keep:
        out["keep_days"] = list(scope.days)
    return out
