"""Training a count-rate detector (``ml.actor_peers``) on sums DuckDB takes over its whole
window: the window never narrows with history.

:class:`detectors.ml.surprise.CountRateSurprise` learns from sums per unit (an agency's
active days, first and last day, daily totals) and per entity (a user's rows, sum and sum
of squares of each count): :mod:`detectors.ml.count_stats`. DuckDB sums them per half of
the window (the alert floor's split, as :func:`detectors.ml.run.held_out_scores` makes it)
from the window's rows held in a temporary table; the model is fitted on both halves'
sums, each half's model on its own. The alert floor then needs every row's held-out score:
the rows stream from the table in chunks, each scored by the other half's model, and only
the highest scores are kept (the floor is read off at most a few hundred of them).
Python holds the sums (one row per user and per agency) and one chunk, whatever the
window's length.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import duckdb
import numpy as np
import polars as pl
from numpy.typing import NDArray
from sklearn.pipeline import Pipeline

from detectors.ml import bounds, count_stats, features, partitions, reuse
from detectors.ml.detectors import MLDetector
from detectors.ml.surprise import CountRateSurprise

_TABLE = "_ml_count_rows"
_HALF = "_first_half"
# A half of the window with fewer rows than this is too small to fit a held-out model.
MIN_FOLD_ROWS = 20


@dataclass(frozen=True)
class CountFit:
    """The model fitted on the window's sums, and the highest held-out scores."""

    window: bounds.TrainingWindow
    model: Pipeline
    rows: int
    events: float
    # The highest held-out scores (descending), enough to place the alert floor.
    top: NDArray[np.float64]
    sums_sha256: str
    entities: int
    units: int


def _layout(det: MLDetector, est: CountRateSurprise) -> tuple[list[str], list[tuple[str, str]]]:
    """The key columns (unit first) and, per measure, its count and the unit total."""
    cols = list(det.feature_columns)
    k = est.n_key_columns
    block = (1 + est.windows) * 2
    measures = [(cols[j], cols[j + 1 + est.windows]) for j in range(k + 1, len(cols), block)]
    return cols[:k], measures


def _sums(
    con: duckdb.DuckDBPyConnection, det: MLDetector, est: CountRateSurprise, middle: date | None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Per half (``_first_half``): sums per entity and per unit."""
    keys, measures = _layout(det, est)
    day = det.feature_columns[len(keys)]
    key_list = ", ".join(f'"{c}"' for c in keys)
    half = f"coalesce(day < $middle::DATE, TRUE) AS {_HALF}"
    entity_sums = ", ".join(
        f'CAST(sum("{x}") AS DOUBLE) AS s{m}, '
        f'CAST(sum(CAST("{x}" AS HUGEINT) * "{x}") AS DOUBLE) AS q{m}'
        for m, (x, _) in enumerate(measures)
    )
    entities = features.run_query(
        con,
        features.FeatureQuery(
            f"SELECT {key_list}, {half}, count(*) AS n, {entity_sums} FROM {_TABLE} GROUP BY ALL",
            {"middle": middle},
        ),
    )
    # A unit's total is one figure per day: any row of the (unit, day) gives it.
    totals = ", ".join(f'any_value("{t}") AS t{m}' for m, (_, t) in enumerate(measures))
    unit_sums = ", ".join(f"CAST(sum(t{m}) AS DOUBLE) AS t{m}" for m in range(len(measures)))
    units = features.run_query(
        con,
        features.FeatureQuery(
            f"""
            WITH d AS (SELECT "{keys[0]}", "{day}", {half}, {totals}
                       FROM {_TABLE} GROUP BY ALL)
            SELECT "{keys[0]}", {_HALF}, count(*) AS exposure,
                   CAST(min("{day}") AS DOUBLE) AS first, CAST(max("{day}") AS DOUBLE) AS last,
                   {unit_sums}
            FROM d GROUP BY ALL
            """,
            {"middle": middle},
        ),
    )
    return entities, units


def _stats(entities: pl.DataFrame, units: pl.DataFrame, keys: list[str], n_measures: int) -> Any:
    """:class:`count_stats.CountStats` of the sums (already summed over the halves wanted)."""
    return count_stats.from_sums(
        units[keys[0]].to_numpy(),
        {
            "exposure": units["exposure"].to_numpy(),
            "first": units["first"].to_numpy(),
            "last": units["last"].to_numpy(),
            "total": units.select([f"t{m}" for m in range(n_measures)]).to_numpy(),
        },
        [entities[c].to_numpy() for c in keys],
        {
            "rows": entities["n"].to_numpy(),
            "sum": entities.select([f"s{m}" for m in range(n_measures)]).to_numpy(),
            "sum_sq": entities.select([f"q{m}" for m in range(n_measures)]).to_numpy(),
        },
    )


def _combined(
    entities: pl.DataFrame, units: pl.DataFrame, keys: list[str], n_measures: int
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Both halves' sums as one (a unit-day lies in one half, so its days add up)."""
    sums = [f"s{m}" for m in range(n_measures)] + [f"q{m}" for m in range(n_measures)]
    e = entities.group_by(keys).agg(pl.col("n").sum(), *(pl.col(c).sum() for c in sums))
    u = units.group_by(keys[0]).agg(
        pl.col("exposure").sum(),
        pl.col("first").min(),
        pl.col("last").max(),
        *(pl.col(f"t{m}").sum() for m in range(n_measures)),
    )
    return e, u


def _fitted(det: MLDetector, stats: Any) -> Pipeline:
    model = det.build_pipeline()
    model.steps[-1][1].fit_stats(stats, list(det.feature_columns))
    return model


def _top_scores(
    con: duckdb.DuckDBPyConnection,
    det: MLDetector,
    folds: tuple[Pipeline, Pipeline] | None,
    model: Pipeline,
    middle: date | None,
    keep: int,
    chunk_rows: int,
) -> NDArray[np.float64]:
    """The ``keep`` highest held-out scores of the table's rows, highest first (each row
    scored by the model of the other half; by ``model`` when a half is too small)."""
    cols = ", ".join(f'"{c}"' for c in det.feature_columns)
    query = features.FeatureQuery(
        f"SELECT {cols}, coalesce(day < $middle::DATE, TRUE) AS {_HALF} FROM {_TABLE}",
        {"middle": middle},
    )
    top = np.empty(0)
    for chunk in features.batches(con, query, chunk_rows):
        if chunk.height == 0:
            continue
        first = chunk[_HALF].to_numpy()
        scores = np.empty(chunk.height)
        for part, fold in ((first, 0), (~first, 1)):
            scorer = model if folds is None else folds[fold]
            if part.any():
                scores[part] = det.anomaly_scores(scorer, chunk.filter(pl.Series(part)), threads=1)
        top = np.concatenate([top, scores])
        if top.size > keep:
            top = np.partition(top, top.size - keep)[top.size - keep :]
    return np.sort(top)[::-1]


def fit_on_sums(
    con: duckdb.DuckDBPyConnection,
    det: MLDetector,
    window_from: datetime | None,
    window_to: datetime | None,
    chunk_rows: int,
    keep_for_scoring: bool = False,
) -> CountFit | None:
    """Fit ``det`` on its window's sums; None when it is not a count-rate model.
    ``keep_for_scoring``: when the window's rows are all history's, keep them (with the
    columns scoring reads) for the scoring that follows (:mod:`detectors.ml.reuse`)."""
    est = det.build_pipeline().steps[-1][1]
    if not isinstance(est, CountRateSurprise) or not est.with_load:
        return None
    start, notes = bounds._needed(con, det, window_from, window_to)
    # Only a partitioned detector is scored from these lean rows (score_rows.py).
    kept = (
        keep_for_scoring
        and det.scope_by is not None
        and reuse.covers_history(con, det, start, window_to)
    )
    wanted = [*det.feature_columns, "day", "events", *(reuse.scoring_columns(det) if kept else [])]
    leans = _lean_queries(con, det, start, window_to, list(dict.fromkeys(wanted)))
    if leans is None:
        return None
    keys, measures = _layout(det, est)
    table = reuse.table_name(det) if kept else _TABLE
    done = False
    try:
        for i, lean in enumerate(leans):
            into = f"INSERT INTO {table} " if i else f"CREATE OR REPLACE TEMP TABLE {table} AS "
            con.execute(into + lean.sql, lean.params)
        if kept:
            con.execute(f"CREATE OR REPLACE TEMP VIEW {_TABLE} AS SELECT * FROM {table}")
        rows, events, middle = _totals(con)
        entities, units = _sums(con, det, est, middle)
        both = _combined(entities, units, keys, len(measures))
        model = _fitted(det, _stats(*both, keys, len(measures)))
        folds = _folds(det, entities, units, keys, len(measures))
        allowed = (det.settings.false_alarms_per_10k or 0.0) * events / 10_000.0
        top = _top_scores(
            con, det, folds, model, middle, 2 * int(np.ceil(allowed)) + 64, chunk_rows
        )
        done = True
    except duckdb.Error as exc:
        raise features._query_error(exc) from exc
    finally:
        con.execute(f"DROP {'VIEW' if kept else 'TABLE'} IF EXISTS {_TABLE}")
        if kept and not done:
            con.execute(f"DROP TABLE IF EXISTS {table}")
    if kept:
        reuse.keep(con, det, table)
    sha = _sums_sha256(both[0].sort(keys), both[1].sort(keys[0]))
    window = bounds.TrainingWindow(start, window_to, "; ".join(notes))
    return CountFit(window, model, rows, events, top, sha, both[0].height, both[1].height)


def _lean_queries(
    con: duckdb.DuckDBPyConnection,
    det: MLDetector,
    start: datetime | None,
    window_to: datetime | None,
    wanted: list[str],
) -> list[features.FeatureQuery] | None:
    """The window's feature query narrowed to ``wanted``, or one per group of partitions
    when the window's events outgrow DuckDB's share (:mod:`detectors.ml.partitions`);
    None when the detector's training frame is not one feature query."""
    by = det.scope_by
    groups = partitions.groups(con, by, det.event_types, start, window_to) if by else None
    queries: list[features.FeatureQuery] = []
    for group in groups or [None]:
        with partitions.only(by, group) if by and group is not None else nullcontext():
            planned = bounds._plan(con, det, start, window_to)
        if planned is None:
            return None
        body = features.FeatureQuery(bounds._unsorted(planned.sql)[0], planned.params)
        queries.append(features.narrowed(body, wanted))
    return queries


def _totals(con: duckdb.DuckDBPyConnection) -> tuple[int, float, date | None]:
    """Rows, events, and the window's middle day (the row at half the count in day order,
    nulls first, as ``held_out_scores`` takes it)."""
    # Rows per day, in day order (a few hundred days), not a sort of every row: the middle
    # row's day is the first whose running count passes half the rows.
    per_day = con.execute(
        f"SELECT day, count(*), sum(events) FROM {_TABLE} GROUP BY day ORDER BY day NULLS FIRST"
    ).fetchall()
    rows = sum(int(n) for _, n, _ in per_day)
    events = float(sum(int(e or 0) for _, _, e in per_day))
    seen, middle = 0, None
    for day, n, _ in per_day:
        seen += int(n)
        if seen > rows // 2:
            middle = day
            break
    return rows, events, middle


def _folds(
    det: MLDetector, entities: pl.DataFrame, units: pl.DataFrame, keys: list[str], n: int
) -> tuple[Pipeline, Pipeline] | None:
    """The models scoring the first and the second half (each fitted on the other)."""
    halves = []
    for first in (False, True):  # the first half is scored by the second half's model
        e = entities.filter(pl.col(_HALF) == first)
        if int(e["n"].sum() or 0) < MIN_FOLD_ROWS:
            return None
        halves.append(_fitted(det, _stats(e, units.filter(pl.col(_HALF) == first), keys, n)))
    return halves[0], halves[1]


def _sums_sha256(entities: pl.DataFrame, units: pl.DataFrame) -> str:
    from detectors.ml.registry import frame_sha256

    return frame_sha256(pl.concat([entities, units], how="diagonal_relaxed"))
