"""Training on a summary summed in DuckDB: the window never narrows with history.

A detector whose model only counts its rows (``MLDetector.fits_summary``: the transfer
likelihood model counts values per key) fits the same model on the distinct feature rows
of its window, each with how many rows it stands for, as on the rows themselves
(``ConditionalSurprise.fit(sample_weight=...)``). DuckDB sums that summary over the whole
window; Python sees one row per distinct combination of features (9,917 for the 80,357
transfers of the generated 1M-event store), however many years the window holds. The
alert floor is read the same way: every row of a half of the window has the score its
summary row gets from the model fitted on the other half, and the rows an open rule alert
names are counted per summary row.

The summary holds, besides the feature columns: ``_first_half`` (the row lies before the
window's middle event, as :func:`detectors.ml.run.held_out_scores` splits it), ``_rows``
and ``_flagged`` (how many of its rows an open rule alert names).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb
import numpy as np
import polars as pl
from numpy.typing import NDArray
from sklearn.pipeline import Pipeline

from detectors.ml import bounds, features, reuse
from detectors.ml.detectors import MLDetector

ROWS = "_rows"
# Kept for scoring: the store rows (the detector's row_locator) each summary row stands for.
LOCATED = "_located"
FLAGGED = "_flagged"
FIRST_HALF = "_first_half"
# A half of the window with fewer rows than this is too small to fit a held-out model.
MIN_FOLD_ROWS = 20
_TABLE = "_ml_training_summary"


@dataclass(frozen=True)
class Summary:
    """A detector's training window as distinct feature rows with their counts."""

    window: bounds.TrainingWindow
    frame: pl.DataFrame
    # Detector metadata read off the rows themselves (summary_metadata).
    metadata: dict[str, Any]

    @property
    def counts(self) -> NDArray[np.float64]:
        return self.frame[ROWS].cast(pl.Float64).to_numpy()

    @property
    def rows(self) -> int:
        return int(self.frame[ROWS].sum()) if self.frame.height else 0

    @property
    def flagged(self) -> NDArray[np.float64] | None:
        if FLAGGED not in self.frame.columns:
            return None
        return self.frame[FLAGGED].cast(pl.Float64).to_numpy()


def _middle(con: duckdb.DuckDBPyConnection, query: features.FeatureQuery) -> datetime | None:
    """The window's middle instant: the row at half its count in time order (nulls first),
    as ``held_out_scores`` takes it from the rows."""
    timed = features.narrowed(query, ["occurred_at"])
    row = con.execute(
        f"""
        SELECT occurred_at FROM ({timed.sql}) AS t ORDER BY occurred_at NULLS FIRST
        LIMIT 1 OFFSET (SELECT count(*) // 2 FROM ({timed.sql}) AS c)
        """,
        timed.params,
    ).fetchall()
    return row[0][0] if row else None


_NAMED = """
    named AS (
        SELECT DISTINCT ae.source_system, ae.event_id
        FROM alert_events ae JOIN alerts a USING (alert_id)
        WHERE a.detector_kind = 'rule' AND a.status = 'open'
          AND ae.event_type IN (SELECT unnest($_types::VARCHAR[]))
    ),"""


def _summary_sql(
    detector: MLDetector, query: features.FeatureQuery, named: bool, located: bool = False
) -> str:
    keys = ", ".join(f'f."{c}"' for c in detector.feature_columns)
    wanted = [*detector.feature_columns, "occurred_at", "source_system", "event_id"]
    if located:  # each summary row's store rows, for the scoring that follows (reuse.py)
        wanted.append(str(detector.row_locator))
    framed = features.narrowed(query, list(dict.fromkeys(wanted)))
    flagged = f"count(n.event_id) AS {FLAGGED}" if named else f"CAST(0 AS BIGINT) AS {FLAGGED}"
    if located:
        flagged += f', list(f."{detector.row_locator}") AS {LOCATED}'
    join = (
        "LEFT JOIN named n ON n.source_system = f.source_system AND n.event_id = f.event_id"
        if named
        else ""
    )
    return f"""
    WITH {_NAMED if named else ""}
    f AS ({framed.sql})
    SELECT {keys}, coalesce(f.occurred_at < $_middle::TIMESTAMPTZ, TRUE) AS {FIRST_HALF},
           count(*) AS {ROWS}, {flagged}
    FROM f {join}
    GROUP BY ALL
    """


def summarize(
    con: duckdb.DuckDBPyConnection,
    detector: MLDetector,
    window_from: datetime | None,
    window_to: datetime | None,
    max_rows: int | None = None,
    keep_for_scoring: bool = False,
) -> Summary | None:
    """The detector's summary over its whole window (its ``training_days`` when no start
    is given); None when the summary itself holds more rows than the budget (the caller
    then fits on rows, narrowed as :mod:`detectors.ml.bounds` narrows them).

    ``keep_for_scoring``: a detector scored by its ``row_locator`` whose window holds all
    history keeps the summary, with each row's store rows (``_located``), for the scoring
    of all history that follows (:mod:`detectors.ml.reuse`): a row's score is its feature
    row's, so scoring the distinct rows scores every transfer."""
    start, notes = bounds._needed(con, detector, window_from, window_to)
    planned = bounds._plan(con, detector, start, window_to)
    if planned is None:
        return None
    query = features.FeatureQuery(bounds._unsorted(planned.sql)[0], planned.params)
    params = {**query.params, "_middle": _middle(con, query), "_types": detector.event_types}
    located = (
        keep_for_scoring
        and detector.row_locator is not None
        and reuse.covers_history(con, detector, start, window_to)
    )
    table = reuse.table_name(detector) if located else _TABLE
    kept = False
    try:
        try:
            sql = _summary_sql(detector, query, named=True, located=located)
            con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS {sql}", params)
        except duckdb.CatalogException:  # a store without alert tables: no row is named
            sql = _summary_sql(detector, query, named=False, located=located)
            con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS {sql}", params)
        held = con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
        if held > (max_rows or bounds.max_training_rows(detector)):
            return None
        order = ", ".join(f'"{c}"' for c in (*detector.feature_columns, FIRST_HALF))
        columns = f"* EXCLUDE ({LOCATED})" if located else "*"
        frame = features.run_query(
            con, features.FeatureQuery(f"SELECT {columns} FROM {table} ORDER BY {order}", {})
        )
        if located:
            reuse.keep(con, detector, table)
            kept = True
    except duckdb.Error as exc:
        raise features._query_error(exc) from exc
    finally:
        if not kept:
            con.execute(f"DROP TABLE IF EXISTS {table}")
    metadata = detector.summary_metadata(con, query)
    return Summary(bounds.TrainingWindow(start, window_to, "; ".join(notes)), frame, metadata)


def fit(detector: MLDetector, summary: Summary, offset: bool = True) -> Pipeline:
    """The detector's model fitted on the summary's rows, each counted as often as it
    stands for (the same model as fitted on the rows themselves)."""
    return _fit(detector, summary.frame, offset)


def _fit(detector: MLDetector, frame: pl.DataFrame, offset: bool) -> Pipeline:
    model = detector.build_pipeline()
    name, estimator = model.steps[-1]
    kwargs: dict[str, Any] = {f"{name}__sample_weight": frame[ROWS].cast(pl.Float64).to_numpy()}
    if not offset and "offset" in inspect.signature(estimator.fit).parameters:
        kwargs[f"{name}__offset"] = False
    return model.fit(frame.select(detector.feature_columns), **kwargs)


def held_out_scores(detector: MLDetector, summary: Summary, model: Pipeline) -> NDArray[np.float64]:
    """Each summary row's score from the model fitted on the other half of the window
    (``model``'s own scores when a half holds fewer than :data:`MIN_FOLD_ROWS` rows), as
    :func:`detectors.ml.run.held_out_scores` scores the rows themselves."""
    frame = summary.frame
    first = frame[FIRST_HALF].to_numpy()
    counts = summary.counts
    if counts[first].sum() < MIN_FOLD_ROWS or counts[~first].sum() < MIN_FOLD_ROWS:
        return detector.anomaly_scores(model, frame)
    scores = np.empty(frame.height)
    for part in (first, ~first):
        fold = _fit(detector, frame.filter(pl.Series(~part)), offset=False)
        scores[part] = detector.anomaly_scores(fold, frame.filter(pl.Series(part)))
    return scores
