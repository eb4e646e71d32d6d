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

A detector fitted on its rows and scored from them whole (``ml.log_coverage``,
``ml.recipient_volume``: one row per flow and day) keeps them the same way
(:func:`shares_rows`): its training builds the all-history rows, evidence included, into
the table and fits on them; scoring reads them back in the query's order.
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


def all_history(con: duckdb.DuckDBPyConnection, detector: MLDetector) -> features.FeatureQuery:
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
    """Do the training rows of [window_from, window_to) equal the all-history rows (the
    window ends at the store's end and no event of the detector's types lies before it)?"""
    if window_to is not None:
        return False
    if window_from is None:
        return True
    first = con.execute(
        "SELECT min(occurred_at) FROM disclosure_events"
        " WHERE event_type IN (SELECT unnest($types::VARCHAR[]))",
        {"types": detector.event_types},
    ).fetchall()[0][0]
    return first is None or first >= window_from


def shares_rows(
    con: duckdb.DuckDBPyConnection,
    detector: MLDetector,
    window_from: datetime | None,
    window_to: datetime | None,
) -> bool:
    """Is a fit on rows of [window_from, window_to) a fit on the all-history scoring rows,
    whole (a detector scored from its whole rows, no ``row_locator`` or ``scope_by``, whose
    training frame is its scoring frame)? Then the rows are built once, with their
    evidence, for both (:func:`detectors.ml.bounds.window_and_frame`)."""
    if detector.row_locator is not None or detector.scope_by is not None:
        return False
    with features.planned() as training:
        detector.training_frame(con, None, None)
    if len(training) != 1 or training[0] != all_history(con, detector):
        return False
    return covers_history(con, detector, window_from, window_to)


def keep(con: duckdb.DuckDBPyConnection, detector: MLDetector, table: str) -> None:
    """Record ``table`` (holding :func:`scoring_columns` of every all-history row, or for a
    detector scored from whole rows, every column) as the detector's kept rows; any rows
    kept before for it under another table are dropped."""
    before = _KEPT.get(detector.detector_id)
    if before is not None and (before.con is not con or before.table != table):
        drop(detector.detector_id)  # (the same table on ``con`` is the one just built)
    _KEPT[detector.detector_id] = Kept(con, table, all_history(con, detector), _state(con))


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
