"""Which rows an incremental run scores: the days its new events touched, per detector.

A run judges event-time windows (whole UTC days per log, ``dwatch.watermark``): the days
its new batches landed events on, plus gaps and backfills. A detector's rows change only
where events of its own types changed, so each detector scores the UTC days on which the
windows' logs hold events of its ``event_types`` (a log's window of access events does not
reopen the transfer detectors' days), widened by its ``rescore_days`` on both sides: a
row's features may look that far back or ahead (a user's 7-day sums), so a late event
changes the rows after it as well as before. :func:`days.on_days` then builds those
rows whole, and the merge retracts only alerts of rows scored again.

Scoring an increment this way writes the same alerts, with the same scores, as scoring
the whole history at once (tests/ml/test_incremental_scoring.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING

import duckdb
import polars as pl

from detectors.alerts import ALERT_ID_SQL

if TYPE_CHECKING:  # the detectors import scikit-learn; touched() must not (dwatch.pipeline)
    from detectors.ml.detectors import MLDetector

# (log, start, end): one window to judge; log '*' stands for every log (a backfill).
SourceWindow = tuple[str, datetime, datetime]
ALL_SOURCES = "*"


def _days_between(start: datetime, end: datetime) -> list[date]:
    """The UTC days [start, end) touches."""
    first = start.astimezone(UTC).date()
    last = (end.astimezone(UTC) - timedelta(microseconds=1)).date()
    return [first + timedelta(days=k) for k in range((last - first).days + 1)]


def touched(
    con: duckdb.DuckDBPyConnection,
    event_types: Sequence[str],
    windows: Iterable[SourceWindow],
    by: str | None = None,
    batches: Sequence[str] | None = None,
) -> list[tuple[str, date]]:
    """The (value of ``by``, UTC day) pairs of the windows' events of ``event_types``
    (value '' without ``by``). Given ``batches`` (the ingest batches whose arrival opened
    the windows), only their events count in a log's window: a window opened by request
    items alone (items arriving after their events) changes no ML feature. A backfill
    window ('*') counts every event."""
    found = Touched.read(con, event_types, windows, [by] if by else [], batches)
    return found.of(event_types, by)


@dataclass(frozen=True)
class Touched:
    """The windows' events as (event type, UTC day, value of each partition column),
    read once (:meth:`read`) for every detector of a run (:meth:`of` is :func:`touched`
    of each: the query differed only in the event types it kept)."""

    by: tuple[str, ...]
    rows: tuple[tuple[str, date, tuple[str, ...]], ...]

    @classmethod
    def read(
        cls,
        con: duckdb.DuckDBPyConnection,
        event_types: Iterable[str],
        windows: Iterable[SourceWindow],
        by: Sequence[str] = (),
        batches: Sequence[str] | None = None,
    ) -> Touched:
        by = tuple(dict.fromkeys(by))
        query = _windows_events(con, event_types, windows, by, batches)
        if query is None:
            return cls(by, ())
        sql, params = query
        picked = "".join(f", e.v{i}" for i in range(len(by)))
        rows = con.execute(
            f"""
            {sql}
            SELECT DISTINCT e.event_type, e.day{picked} FROM e SEMI JOIN w
                ON w.day = e.day
               AND (w.source_system = $all OR (w.source_system = e.source_system AND e.arrived))
            -- A parallel DISTINCT returns its rows in any order: sorted, two reads of the
            -- same events compare equal (and the scope a run records is reproducible).
            ORDER BY ALL
            """,
            params,
        ).fetchall()
        return cls(by, tuple((str(r[0]), r[1], tuple(str(v) for v in r[2:])) for r in rows))

    def of(self, event_types: Iterable[str], by: str | None = None) -> list[tuple[str, date]]:
        """The (value of ``by``, UTC day) pairs of the events of ``event_types``, ordered
        by day then value (value '' without ``by``)."""
        types = set(event_types)
        k = self.by.index(by) if by else None
        found = {(vals[k] if k is not None else "", d) for t, d, vals in self.rows if t in types}
        return sorted(found, key=lambda pair: (pair[1], pair[0]))


def _windows_events(
    con: duckdb.DuckDBPyConnection,
    event_types: Iterable[str],
    windows: Iterable[SourceWindow],
    by: Sequence[str],
    batches: Sequence[str] | None,
) -> tuple[str, dict[str, object]] | None:
    """The CTEs ``w`` (the windows' (log, day) pairs) and ``e`` (events of ``event_types``
    on those days, with the UTC day, ``by``'s values as v0, v1, ... and whether they
    arrived in ``batches``) and their parameters; None when the windows hold no day."""
    pairs = sorted({(src, d) for src, start, end in windows for d in _days_between(start, end)})
    if not pairs:
        return None
    days = [d for _, d in pairs]
    values = "".join(f", coalesce(\"{c}\", '') AS v{i}" for i, c in enumerate(by))
    # Only the batches' events count unless a window is a backfill's: then no row lies
    # below the first of theirs (a constant, so DuckDB skips history's row groups).
    backfill = batches is None or any(src == ALL_SOURCES for src, _ in pairs)
    first = 0 if backfill else first_new_row(con, list(batches or []))
    sql = f"""
            WITH w AS (SELECT unnest($sources::VARCHAR[]) AS source_system,
                              unnest($days::DATE[]) AS day),
            e AS (SELECT source_system, event_type{values},
                         CAST(timezone('UTC', occurred_at) AS DATE) AS day,
                         ($batches::VARCHAR[] IS NULL
                          OR ingest_run_id IN (SELECT unnest($batches::VARCHAR[]))) AS arrived
                  FROM disclosure_events
                  WHERE event_type IN (SELECT unnest($types::VARCHAR[]))
                    AND occurred_at >= $lo AND occurred_at < $hi AND rowid >= {int(first)})"""
    params: dict[str, object] = {
        "batches": None if batches is None else list(batches),
        "sources": [s for s, _ in pairs],
        "days": days,
        "types": sorted(set(event_types)),
        "lo": datetime.combine(min(days), time.min, tzinfo=UTC),
        "hi": datetime.combine(max(days) + timedelta(days=1), time.min, tzinfo=UTC),
        "all": ALL_SOURCES,
    }
    return sql, params


def any_touched(
    con: duckdb.DuckDBPyConnection,
    event_types: Sequence[str],
    windows: Iterable[SourceWindow],
    batches: Sequence[str] | None = None,
) -> bool:
    """Whether :func:`touched` would find any pair: the first such event ends the read
    (a run deciding whether to load the ML stack need not list every touched day)."""
    query = _windows_events(con, event_types, windows, (), batches)
    if query is None:
        return False
    sql, params = query
    rows = con.execute(
        f"""
        {sql}
        SELECT EXISTS (SELECT 1 FROM e SEMI JOIN w ON w.day = e.day
            AND (w.source_system = $all OR (w.source_system = e.source_system AND e.arrived)))
        """,
        params,
    ).fetchall()
    return bool(rows and rows[0][0])


# Rows of a DuckDB row group: the least tail worth bounding.
_ROW_GROUP = 122_880


def first_new_row(con: duckdb.DuckDBPyConnection, batches: Sequence[str]) -> int:
    """A row id of ``disclosure_events`` no event of ``batches`` lies below (0: not known).

    Ingest appends, so a run's new events are the table's last rows; their batch ids skip
    no row group (ids of one day share the bytes DuckDB's zone maps keep), a row id bound
    does. The table's tail is read, widened until it holds as many of the batches' events
    as ``ingest_runs`` says they have loaded (validation may have quarantined some, which
    that count follows): the same bound as ``dwatch.validate.selecting.first_rows``."""
    if not batches:
        return 0
    row = con.execute(
        "SELECT (SELECT count(*) FROM disclosure_events), (SELECT coalesce(sum(rows_loaded), 0)"
        " FROM ingest_runs WHERE kind = 'events'"
        " AND run_id IN (SELECT unnest($ids::VARCHAR[])))",
        {"ids": list(batches)},
    ).fetchall()
    total, expected = (int(v) for v in row[0])
    tail = max(2 * expected, _ROW_GROUP)
    while tail < total:
        found = con.execute(
            "SELECT count(*), min(rowid) FROM disclosure_events WHERE rowid >= $from"
            " AND ingest_run_id IN (SELECT unnest($ids::VARCHAR[]))",
            {"ids": list(batches), "from": total - tail},
        ).fetchall()[0]
        if int(found[0]) == expected:
            return int(found[1]) if found[0] else total
        tail *= 4
    return 0


def days_around(days: Iterable[date], margin: int) -> list[date]:
    """Each day and ``margin`` days either side of it."""
    return sorted({d + timedelta(days=k) for d in days for k in range(-margin, margin + 1)})


def bounds(days: Sequence[date]) -> tuple[datetime, datetime]:
    """The instants [first day's start, day after the last) covering ``days``."""
    return (
        datetime.combine(min(days), time.min, tzinfo=UTC),
        datetime.combine(max(days) + timedelta(days=1), time.min, tzinfo=UTC),
    )


@dataclass(frozen=True)
class DetectorScope:
    """What one detector scores: a window (its merge retracts any alert in it that is not
    found again), or ``days`` kept (only alerts of the rows scored again can be retracted)."""

    window_from: datetime | None
    window_to: datetime | None
    days: list[date] | None = None
    # With a partition (the detector's scope_by): the (value, day) pairs kept.
    by: str | None = None
    keys: list[tuple[str, date]] = field(default_factory=list)


def detector_scope(
    con: duckdb.DuckDBPyConnection,
    detector: MLDetector,
    window_from: datetime | None,
    window_to: datetime | None,
    windows: Sequence[SourceWindow] | None,
    batches: Sequence[str] | None = None,
    read: Touched | None = None,
) -> DetectorScope | None:
    """The detector's share of a run: the window, or (given ``windows``) the days they
    touch (of ``batches``' events, see :func:`touched`; ``read``: the windows' events
    already read for every detector, :meth:`Touched.read`); None when the windows hold
    nothing of its event types."""
    if windows is None:
        # A detector that looks ahead rescores the days just before the window too (their
        # week-ahead evidence is complete only now); its merge covers the same range.
        start = (
            window_from - timedelta(days=detector.rescore_days)
            if window_from is not None and detector.rescore_days
            else window_from
        )
        return DetectorScope(start, window_to)
    found = (
        read.of(detector.event_types, detector.scope_by)
        if read is not None
        else touched(con, detector.event_types, windows, detector.scope_by, batches)
    )
    if not found:
        return None
    margin = detector.rescore_days
    keys = sorted({(v, d) for v, day in found for d in days_around([day], margin)})
    days = sorted({d for _, d in keys})
    by = detector.scope_by
    return DetectorScope(*bounds(days), days=days, by=by, keys=keys if by else [])


def rescored_alerts(
    con: duckdb.DuckDBPyConnection, det: MLDetector, keys: list[pl.DataFrame], table: str
) -> None:
    """A temp table of the alert ids of the rows scored, made in DuckDB (ALERT_ID_SQL, the
    same as ``make_alert_id``; a Python loop over 100k rows cost seconds). Key columns
    other than text and dates go through ``det.alert_ids``."""
    frame = pl.concat(keys, how="vertical_relaxed") if keys else pl.DataFrame()
    text = {pl.String: "{c}", pl.Date: "CAST({c} AS VARCHAR)"}
    if frame.width and all(dtype in text for dtype in frame.dtypes):
        # make_alert_id writes a missing key part as str(None).
        parts = ", ".join(
            f"coalesce({text[dtype].format(c=f'k{i}')}, 'None')"
            for i, dtype in enumerate(frame.dtypes)
        )
        keyed = frame.rename({c: f"k{i}" for i, c in enumerate(frame.columns)})
        con.register("_ml_rescored_keys", keyed.to_arrow())
        try:
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT DISTINCT"
                f" {ALERT_ID_SQL.format(parts=f'$detector, {parts}')} AS alert_id"
                " FROM _ml_rescored_keys",
                {"detector": det.detector_id},
            )
        finally:
            con.unregister("_ml_rescored_keys")
        return
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT DISTINCT unnest(?::VARCHAR[]) AS alert_id",
        [det.alert_ids(frame) if frame.width else []],
    )
