"""Scoring a window's rows from their feature columns alone (:func:`score_located`,
:func:`score_partitioned`): every row is scored from the numbers the model reads, and only
the rows at or above the threshold are read (or built) whole for their explanations. Used
by :func:`detectors.ml.scoring.score_chunks`."""

from __future__ import annotations

from contextlib import nullcontext
from datetime import datetime

import duckdb
import numpy as np
import polars as pl
from numpy.typing import NDArray
from sklearn.pipeline import Pipeline

from detectors.ml import days, features, partitions, reuse
from detectors.ml.detectors import MLDetector, ModelContext
from detectors.ml.registry import ModelRecord
from detectors.ml.summary import LOCATED, ROWS


def model_context(record: ModelRecord) -> ModelContext:
    return ModelContext(
        version=record.version,
        threshold=record.threshold,
        threshold_percentile=record.threshold_percentile,
        train_from=record.train_from,
        train_to=record.train_to,
        metadata=record.metadata,
    )


def score_located(
    con: duckdb.DuckDBPyConnection,
    detector: MLDetector,
    model: Pipeline,
    record: ModelRecord,
    query: features.FeatureQuery,
    *,
    rows: int,
    threads: int,
    rescored: list[pl.DataFrame] | None,
) -> tuple[pl.DataFrame, int]:
    """:func:`detectors.ml.scoring.score_chunks` for a detector with a ``row_locator``: every row is scored
    from its feature columns alone (numbers, handed over from Arrow without a copy), and
    only the rows at or above the threshold are read whole, by their locator, for their
    explanations. The rows and their scores are those of the whole frame, so the alerts
    are the same."""
    locator = detector.row_locator
    assert locator is not None
    # The distinct feature rows a training just summed for all history (summary.py).
    kept = reuse.take(con, detector, query) if rescored is None else None
    if kept is not None:
        hit_rows, hit_scores, scored = _score_summary(con, detector, model, record, kept, rows)
    else:
        hit_rows, hit_scores, scored = _score_rows(
            con, detector, model, record, query, rows, threads, rescored
        )
    located = np.concatenate(hit_rows).astype(np.int64)
    by_row = pl.DataFrame(
        {locator: located, "_score": np.concatenate(hit_scores)},
        schema={locator: pl.Int64, "_score": pl.Float64},
    )
    flagged = (
        features.run_query(con, features.locate(query, locator, located.tolist()))
        .with_columns(pl.col(locator).cast(pl.Int64))
        .join(by_row, on=locator, how="inner")
        .sort("_score", descending=True, maintain_order=True)
    )
    candidates = detector.alert_rows(
        flagged.drop("_score"), flagged["_score"].to_numpy(), model, model_context(record)
    )
    return candidates.unique("alert_id", keep="first", maintain_order=True), scored


_Hits = tuple[list[NDArray[np.int64]], list[NDArray[np.float64]], int]


def _score_rows(
    con: duckdb.DuckDBPyConnection,
    detector: MLDetector,
    model: Pipeline,
    record: ModelRecord,
    query: features.FeatureQuery,
    rows: int,
    threads: int,
    rescored: list[pl.DataFrame] | None,
) -> _Hits:
    """Every row's locator and features, scored: the flagged rows' locators and scores."""
    locator = str(detector.row_locator)
    keys = list(detector.alert_key_columns or detector.key_columns)
    wanted = [locator, *detector.feature_columns, *(keys if rescored is not None else [])]
    hit_rows: list[NDArray[np.int64]] = []
    hit_scores: list[NDArray[np.float64]] = []
    scored = 0
    for chunk in features.batches(con, features.narrowed(query, list(dict.fromkeys(wanted))), rows):
        scores = detector.anomaly_scores(model, chunk, threads=threads)
        hit = scores >= record.threshold
        hit_rows.append(chunk[locator].to_numpy()[hit])
        hit_scores.append(scores[hit])
        scored += chunk.height
        if rescored is not None:
            rescored.append(chunk.select(keys))
    return hit_rows, hit_scores, scored


def _score_summary(
    con: duckdb.DuckDBPyConnection,
    detector: MLDetector,
    model: Pipeline,
    record: ModelRecord,
    table: str,
    rows: int,
) -> _Hits:
    """:func:`_score_rows` from the distinct feature rows of all history (``table``, kept
    by :func:`detectors.ml.summary.summarize`): a row's score is a function of its features
    alone, so each distinct row is scored once and its store rows take its score."""
    columns = ", ".join(_quoted(c) for c in (*detector.feature_columns, ROWS, LOCATED))
    hit_rows: list[NDArray[np.int64]] = []
    hit_scores: list[NDArray[np.float64]] = []
    scored = 0
    for chunk in features.batches(
        con, features.FeatureQuery(f"SELECT {columns} FROM {table}", {}), rows
    ):
        scores = detector.anomaly_scores(model, chunk, threads=1)
        hit = scores >= record.threshold
        flagged = chunk.filter(pl.Series(hit))
        sizes = flagged[LOCATED].list.len().to_numpy()
        hit_rows.append(flagged[LOCATED].explode().drop_nulls().to_numpy())
        hit_scores.append(np.repeat(scores[hit], sizes))
        scored += int(chunk[ROWS].sum() or 0)
    return hit_rows, hit_scores, scored


def score_partitioned(
    con: duckdb.DuckDBPyConnection,
    detector: MLDetector,
    model: Pipeline,
    record: ModelRecord,
    query: features.FeatureQuery,
    *,
    window: tuple[datetime | None, datetime | None],
    rows: int,
    threads: int,
    rescored: list[pl.DataFrame] | None,
) -> tuple[pl.DataFrame, int]:
    """:func:`detectors.ml.scoring.score_chunks` for a detector whose rows read only events of their own
    partition (``scope_by``): every row is scored from its key and feature columns alone
    (the event id lists and text of every user-day were most of the query's cost), and the
    rows at or above the threshold are built whole again from their partition's days
    (:func:`days.on_days`, as an increment's rows are, so they are the same rows) for their
    explanations (with the detector's ``rebuild_by``, from the flagged users' own events,
    their features kept from the rows scored). The rows and their scores are those of the
    whole frame."""
    by = detector.scope_by
    assert by is not None
    row_keys = list(detector.key_columns)
    keys = list(detector.alert_key_columns or detector.key_columns)
    wanted = reuse.scoring_columns(detector)
    # Rebuilt from their own users' events, flagged rows keep the features scored.
    carried = list(detector.feature_columns) if detector.rebuild_by else []
    # The rows a training just built for all history, when it left them (reuse.py).
    kept = reuse.take(con, detector, query)
    sources = (
        [features.FeatureQuery(f"SELECT {', '.join(map(_quoted, wanted))} FROM {kept}", {})]
        if kept is not None
        else [features.narrowed(q, wanted) for q in _by_groups(con, detector, query, window)]
    )
    hits: list[pl.DataFrame] = []
    scored = 0
    for chunk in (c for source in sources for c in features.batches(con, source, rows)):
        scores = detector.anomaly_scores(model, chunk, threads=threads)
        hit = pl.Series(scores >= record.threshold)
        hits.append(
            chunk.filter(hit)
            .select(*dict.fromkeys([*row_keys, by, "first_at", *carried]))
            .with_columns(pl.Series("_score", scores[hit.to_numpy()], dtype=pl.Float64))
        )
        scored += chunk.height
        if rescored is not None:
            rescored.append(chunk.select(keys))
    found = pl.concat(hits, how="vertical_relaxed")
    flagged = (
        _rebuilt(con, detector, query, found, window)
        .drop(carried)
        .join(found.select(*dict.fromkeys([*row_keys, *carried, "_score"])), on=row_keys)
        .sort("_score", descending=True, maintain_order=True)
    )
    candidates = detector.alert_rows(
        flagged.drop("_score"), flagged["_score"].to_numpy(), model, model_context(record)
    )
    return candidates.unique("alert_id", keep="first", maintain_order=True), scored


def _quoted(column: str) -> str:
    return f'"{column}"'


def _by_groups(
    con: duckdb.DuckDBPyConnection,
    detector: MLDetector,
    query: features.FeatureQuery,
    window: tuple[datetime | None, datetime | None],
) -> list[features.FeatureQuery]:
    """``query``, or its rows a group of partitions at a time when the window's events
    outgrow DuckDB's share (:mod:`detectors.ml.partitions`; not inside days.on_days(),
    whose days bound the rows already)."""
    by = detector.scope_by
    assert by is not None
    found = None if days.active() else partitions.groups(con, by, detector.event_types, *window)
    if found is None:
        return [query]
    queries: list[features.FeatureQuery] = []
    for group in found:
        with partitions.only(by, group), features.planned() as planned:
            detector.scoring_frame(con, *window)
        queries.extend(planned)
    return queries


def _rebuilt(
    con: duckdb.DuckDBPyConnection,
    detector: MLDetector,
    query: features.FeatureQuery,
    found: pl.DataFrame,
    window: tuple[datetime | None, datetime | None],
) -> pl.DataFrame:
    """The whole rows of the partitions and UTC days of ``found`` (and others sharing
    them), built as an increment builds them; no rows: the frame's columns, empty. With
    the detector's ``rebuild_by``, only the rows of ``found``'s values of it are right
    (their features are not: the caller takes those from ``found``)."""
    if found.height == 0:
        return features.run_query(
            con,
            features.FeatureQuery(f"SELECT * FROM ({query.sql}) AS framed LIMIT 0", query.params),
        )
    by = detector.scope_by
    assert by is not None
    when = found["first_at"].dt.convert_time_zone("UTC").dt.date()
    pairs = set(zip(found[by].fill_null("").to_list(), when.to_list(), strict=True))
    # All history's flagged days can span most of the store: rebuilt a group of partitions
    # at a time, as they were scored (_by_groups), each group's days within its own events.
    groups = None if days.active() else partitions.groups(con, by, detector.event_types, *window)
    parts = (
        [pairs]
        if groups is None
        else [{p for p in pairs if p[0] in {"" if v is None else v for v in g}} for g in groups]
    )
    # With rebuild_by, only the flagged rows' own users' events are read (partitions.members).
    users = detector.rebuild_by
    frames = []
    for part in (p for p in parts if p):
        with (
            days.on_days({d for _, d in part}, by=by, keys=part),
            partitions.members(users, found[users].unique().to_list()) if users else nullcontext(),
            features.planned() as queries,
        ):
            detector.scoring_frame(con, *window)
        frames.append(features.run_query(con, queries[0]))
    return pl.concat(frames, how="vertical_relaxed")
