"""Rows a training built, kept for the scoring that follows it in the same step.

A run that trains a detector then scores all history with it (a new model). For
``ml.actor_peers`` the two read the same user-days when the training window holds all
history: training builds them into a temporary table (:mod:`detectors.ml.count_summary`),
and scoring built them again from the events (the feature query is most of each step's
cost). Asked to keep them (``train_models(keep_for_scoring=True)``), training leaves that
table, with the columns scoring reads, under :func:`table_name`, and records what it
equals: the detector's all-history scoring query, the zone lookups its local days came
from, and the events the store held. Scoring all history then reads the rows from the
table (:func:`take`) when all three are still the same, and builds them as before
otherwise; :func:`release` drops what is kept once scoring is done.

The rows are kept only when they are the all-history rows: the training window ends at
the store's end and no event of the detector's types lies before its start (a user-day's
sums look six days back and ahead, so an earlier event would change them or add rows).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import duckdb

from detectors.ml import features

if TYPE_CHECKING:
    from detectors.ml.base import MLDetector

_PREFIX = "_ml_kept_rows_"


@dataclass(frozen=True)
class Kept:
    """One detector's kept rows: its table and what they were built from."""

    con: duckdb.DuckDBPyConnection
    table: str
    query: features.FeatureQuery
    state: tuple[Any, ...]


_KEPT: dict[str, Kept] = {}


def table_name(detector: MLDetector) -> str:
    return _PREFIX + "".join(c if c.isalnum() else "_" for c in detector.detector_id)


def scoring_columns(detector: MLDetector) -> list[str]:
    """The columns scoring all history reads of a partitioned detector's rows
    (:func:`detectors.ml.score_rows.score_partitioned`)."""
    by = detector.scope_by
    keys = detector.alert_key_columns or detector.key_columns
    wanted = [*detector.key_columns, *([by] if by else []), "first_at"]
    return list(dict.fromkeys([*wanted, *detector.feature_columns, *keys]))


def _all_history(con: duckdb.DuckDBPyConnection, detector: MLDetector) -> features.FeatureQuery:
    with features.planned() as queries:
        detector.scoring_frame(con, None, None)
    if len(queries) != 1:
        raise ValueError(f"{detector.detector_id}: its scoring frame is not one query")
    return queries[0]


def _state(con: duckdb.DuckDBPyConnection) -> tuple[Any, ...]:
    """What the rows depend on besides the query: the zone lookups and the events held."""
    zones = tuple(
        tuple(con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall())
        for t in (features._ZONE_TABLE, features._SOURCE_ZONE_TABLE)
    )
    events = con.execute("SELECT count(*) FROM disclosure_events").fetchall()[0][0]
    return (*zones, events)


def covers_history(
    con: duckdb.DuckDBPyConnection,
    detector: MLDetector,
    window_from: datetime | None,
    window_to: datetime | None,
) -> bool:
    """Do the training rows of [window_from, window_to) equal the all-history rows? Only a
    partitioned detector (``scope_by``) is scored from kept rows."""
    if detector.scope_by is None or window_to is not None:
        return False
    if window_from is None:
        return True
    first = con.execute(
        "SELECT min(occurred_at) FROM disclosure_events"
        " WHERE event_type IN (SELECT unnest($types::VARCHAR[]))",
        {"types": detector.event_types},
    ).fetchall()[0][0]
    return first is None or first >= window_from


def keep(con: duckdb.DuckDBPyConnection, detector: MLDetector, table: str) -> None:
    """Record ``table`` (holding :func:`scoring_columns` of every all-history row) as the
    detector's kept rows; any rows kept before for it are dropped."""
    drop(detector.detector_id)
    _KEPT[detector.detector_id] = Kept(con, table, _all_history(con, detector), _state(con))


def take(
    con: duckdb.DuckDBPyConnection, detector: MLDetector, query: features.FeatureQuery
) -> str | None:
    """The table of the detector's kept rows if they are ``query``'s rows (same connection,
    same all-history query, same zones and events); else None, and anything kept for the
    detector is dropped."""
    kept = _KEPT.get(detector.detector_id)
    if kept is None:
        return None
    if kept.con is con and kept.query == query and kept.state == _state(con):
        return kept.table
    drop(detector.detector_id)
    return None


def drop(detector_id: str) -> None:
    kept = _KEPT.pop(detector_id, None)
    if kept is not None:
        # A closed connection took its temporary tables with it.
        with contextlib.suppress(duckdb.Error):
            kept.con.execute(f"DROP TABLE IF EXISTS {kept.table}")


def release(con: duckdb.DuckDBPyConnection | None = None) -> None:
    """Drop the kept rows (of ``con`` only, when given)."""
    for detector_id, kept in list(_KEPT.items()):
        if con is None or kept.con is con:
            drop(detector_id)
