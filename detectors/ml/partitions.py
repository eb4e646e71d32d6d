"""Building a partitioned feature frame a group of partitions at a time, so DuckDB's memory
for it follows the budget, not the store.

A detector with a ``scope_by`` column (``ml.actor_peers``: the recipient agency) builds
each row from events of its own partition only. Its feature query's per-day aggregate
counts distinct taxpayers, and DuckDB cannot spill a ``count(DISTINCT ...)``: at 100M
events (91M user events in the two-year training window) the whole-window query ran out
of its 1.3 GiB share, where the same query without the distinct count fitted. Run over a
group of partitions, it needs memory in proportion to the group's events; the union of the
groups' rows is the whole query's rows, because no row reads another partition's events.

:func:`groups` packs the partition values, in order, into groups of at most
:func:`cap_events` events (a partition larger than that forms a group alone); when every
event fits one group it returns None and the query runs unchanged. Within :func:`only`
the feature query reads only that group's partitions (:func:`read_filter`,
:func:`params`); within :func:`members`, only the events of some users of each."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import Any

import duckdb

from dwatch.memory import memory_budget

# DuckDB memory per event of a partitioned feature query (the per-day aggregate's distinct
# counts and lists). 91M events failed in a 1.3 GiB share and a third of them fitted:
# at 100 bytes the default 3 GB budget (1.4 GB for DuckDB) takes 14M events a group.
EVENT_BYTES = 100

_ONLY: ContextVar[tuple[str, tuple[str | None, ...]] | None] = ContextVar("_ONLY", default=None)
_MEMBERS: ContextVar[tuple[str, tuple[str | None, ...]] | None] = ContextVar(
    "_MEMBERS", default=None
)


@contextmanager
def only(by: str, values: Sequence[str | None]) -> Iterator[None]:
    """Within the block, a feature query partitioned by ``by`` reads only ``values``."""
    token = _ONLY.set((by, tuple(values)))
    try:
        yield
    finally:
        _ONLY.reset(token)


@contextmanager
def members(column: str, values: Sequence[str | None]) -> Iterator[None]:
    """Within the block, a partitioned feature query reads only the events whose event
    ``column`` is one of ``values`` (the flagged users rebuilt for their explanations,
    :func:`detectors.ml.score_rows.score_partitioned`). Its rows of those values keep the
    columns made of their own events; columns made of the whole partition's (an agency's
    workload) come out wrong, so the caller takes those from the rows it scored."""
    token = _MEMBERS.set((column, tuple(dict.fromkeys(values))))
    try:
        yield
    finally:
        _MEMBERS.reset(token)


def _applies(by: str | None) -> tuple[str | None, ...] | None:
    scope = _ONLY.get()
    if scope is None or by is None or scope[0] != by:
        return None
    return scope[1]


def read_filter(by: str | None, value: str) -> str:
    """The events-filter fragment of a query partitioned by ``by`` (``value``: the event
    expression of its partition): empty unless inside :func:`only` for ``by`` or
    :func:`members`."""
    sql = ""
    if _applies(by) is not None:
        sql = (
            f"AND ({value} IN (SELECT unnest($part_values::VARCHAR[]))"
            f" OR ($part_null AND {value} IS NULL))"
        )
    chosen = _MEMBERS.get() if by is not None else None
    if chosen is not None:
        column = f'e."{chosen[0]}"'
        sql += (
            f" AND ({column} IN (SELECT unnest($member_values::VARCHAR[]))"
            f" OR ($member_null AND {column} IS NULL))"
        )
    return sql


def params(by: str | None) -> dict[str, Any]:
    """The parameters :func:`read_filter` takes ({} outside :func:`only` and
    :func:`members`)."""
    out: dict[str, Any] = {}
    values = _applies(by)
    if values is not None:
        out["part_values"] = [v for v in values if v is not None]
        out["part_null"] = any(v is None for v in values)
    chosen = _MEMBERS.get() if by is not None else None
    if chosen is not None:
        out["member_values"] = [v for v in chosen[1] if v is not None]
        out["member_null"] = any(v is None for v in chosen[1])
    return out


def cap_events() -> int:
    """The most events one group holds under this run's DuckDB share."""
    return max(memory_budget().duckdb_bytes // EVENT_BYTES, 1)


def groups(
    con: duckdb.DuckDBPyConnection,
    by: str,
    event_types: Sequence[str],
    window_from: datetime | None,
    window_to: datetime | None,
    cap: int | None = None,
) -> list[tuple[str | None, ...]] | None:
    """``by``'s values among the window's events of ``event_types``, packed in order into
    groups of at most ``cap`` events; None when they all fit one group."""
    limit = cap if cap is not None else cap_events()
    counts = con.execute(
        f"""
        SELECT "{by}", count(*) FROM disclosure_events
        WHERE event_type IN (SELECT unnest($types::VARCHAR[]))
          AND ($from::TIMESTAMPTZ IS NULL OR occurred_at >= $from::TIMESTAMPTZ)
          AND ($to::TIMESTAMPTZ IS NULL OR occurred_at < $to::TIMESTAMPTZ)
        GROUP BY 1 ORDER BY 1 NULLS FIRST
        """,
        {"types": list(event_types), "from": window_from, "to": window_to},
    ).fetchall()
    if sum(n for _, n in counts) <= limit:
        return None
    packed: list[tuple[str | None, ...]] = []
    group: list[str | None] = []
    held = 0
    for value, n in counts:
        if group and held + n > limit:
            packed.append(tuple(group))
            group, held = [], 0
        group.append(value)
        held += n
    if group:
        packed.append(tuple(group))
    return packed
