"""Score the ML detectors with their saved models and merge the alerts: the ML step of
`dwatch detect` and of a run (:func:`score_models`). A window is scored whole, streamed in
chunks; an increment's windows are scored for the rows they touch (:mod:`detectors.ml.scope`)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
from numpy.typing import NDArray
from sklearn.pipeline import Pipeline

from detectors.alerts import MergeResult, merge_alerts
from detectors.ml import bounds, days, features, reuse, scope, score_rows
from detectors.ml.detectors import DETECTORS, MLDetector
from detectors.ml.registry import MLConfig, ModelRecord, latest_models, load_config, load_model
from detectors.ml.score_rows import model_context
from dwatch.errors import ConfigError
from dwatch.memory import memory_budget
from dwatch.store import transaction

# What one scoring row costs in Python while its chunk is scored: the feature row (event
# id lists included) and the arrays the estimators build from it, with room to spare.
SCORE_ROW_BYTES = 4096


def enabled_detectors(config: MLConfig, only: list[str] | None) -> list[MLDetector]:
    if only:
        unknown = sorted(set(only) - set(DETECTORS))
        if unknown:
            raise ConfigError(
                f"unknown ML detector(s) {unknown}",
                where="--detector",
                fix=f"use one of {sorted(DETECTORS)}",
            )
    return [
        cls(config.detectors[det_id])
        for det_id, cls in sorted(DETECTORS.items())
        if config.detectors[det_id].enabled and (not only or det_id in only)
    ]


@dataclass
class DetectorScore:
    detector_id: str
    model_version: str | None
    rows_scored: int = 0
    alerts: int = 0
    message: str = ""
    # Scoring an increment: the UTC days this detector scored (None: a window).
    days: int | None = None


@dataclass
class ScoreSummary:
    """MergeResult-like totals over all ML detectors, plus what each did."""

    new: int = 0
    updated: int = 0
    reopened: int = 0
    retracted: int = 0
    detectors: list[DetectorScore] = field(default_factory=list)

    @property
    def untrained(self) -> list[str]:
        return [d.detector_id for d in self.detectors if d.model_version is None]


def score_detector(
    con: duckdb.DuckDBPyConnection,
    detector: MLDetector,
    model: Pipeline,
    *,
    window_from: datetime | None = None,
    window_to: datetime | None = None,
    threads: int = 2,
) -> tuple[pl.DataFrame, NDArray[np.float64]]:
    """Every scored row of the window and its anomaly score (higher = more anomalous)."""
    frame = detector.scoring_frame(con, window_from, window_to)
    return frame, detector.anomaly_scores(model, frame, threads=threads)


def scoring_chunks(
    con: duckdb.DuckDBPyConnection,
    detector: MLDetector,
    window_from: datetime | None,
    window_to: datetime | None,
    rows: int,
) -> Iterator[pl.DataFrame]:
    """The rows of ``detector.scoring_frame`` for the window, streamed from DuckDB in
    frames of at most ``rows`` rows (never all at once). The query is the one
    ``scoring_frame`` builds (read with :func:`features.planned`), so the rows are the
    same; a detector whose scoring frame is not one feature query is read whole. Rows a
    training just built for all history (:mod:`detectors.ml.reuse`) are read from its
    table, in the query's order."""
    with features.planned() as queries:
        detector.scoring_frame(con, window_from, window_to)
    if len(queries) != 1:
        yield detector.scoring_frame(con, window_from, window_to)
        return
    kept = reuse.take(con, detector, queries[0])
    if kept is not None:
        order = bounds.final_order(queries[0].sql)
        yield from features.batches(
            con, features.FeatureQuery(f"SELECT * FROM {kept}{order}", {}), rows
        )
        return
    yield from features.batches(con, queries[0], rows)


def score_chunks(
    con: duckdb.DuckDBPyConnection,
    detector: MLDetector,
    model: Pipeline,
    record: ModelRecord,
    *,
    window_from: datetime | None,
    window_to: datetime | None,
    rows: int,
    threads: int = 2,
    rescored: list[pl.DataFrame] | None = None,
) -> tuple[pl.DataFrame, int]:
    """Alert candidates of the window and the rows scored, a chunk at a time: only the
    chunk and the rows at or above the threshold are held (scores are row by row, so
    they are the same as scoring the window whole). ``rescored`` receives the alert key
    columns of every row scored."""
    with features.planned() as queries:
        detector.scoring_frame(con, window_from, window_to)
    if detector.row_locator is not None and len(queries) == 1:
        return score_rows.score_located(
            con, detector, model, record, queries[0], rows=rows, threads=threads, rescored=rescored
        )
    # Lean scoring: rows scored without their evidence (rebuilt for the flagged rows only).
    lean = (
        score_rows.score_evidenced
        if detector.evidence_columns
        else score_rows.score_partitioned
        if detector.scope_by is not None
        else None
    )
    if lean is not None and len(queries) == 1:
        return lean(
            con,
            detector,
            model,
            record,
            queries[0],
            window=(window_from, window_to),
            rows=rows,
            threads=threads,
            rescored=rescored,
        )
    found: list[pl.DataFrame] = []
    scored = 0
    for chunk in scoring_chunks(con, detector, window_from, window_to, rows):
        scores = detector.anomaly_scores(model, chunk, threads=threads)
        found.append(alerts_for(detector, model, record, chunk, scores))
        scored += chunk.height
        if rescored is not None:
            rescored.append(chunk.select(detector.alert_key_columns or detector.key_columns))
    candidates = pl.concat(found, how="vertical_relaxed")
    # Several rows may make one alert (ml.log_coverage: the days of one run of silence, in
    # one chunk or several): the strongest row stands for it.
    candidates = candidates.sort("score", descending=True, maintain_order=True).unique(
        "alert_id", keep="first", maintain_order=True
    )
    return candidates, scored


def alerts_for(
    detector: MLDetector,
    model: Pipeline,
    record: ModelRecord,
    frame: pl.DataFrame,
    scores: NDArray[np.float64],
) -> pl.DataFrame:
    """Alert candidates for the rows at or above the model's threshold."""
    hit = scores >= record.threshold
    return detector.alert_rows(
        frame.filter(pl.Series(hit)), scores[hit], model, model_context(record)
    )


def _score_detector_scope(
    con: duckdb.DuckDBPyConnection,
    det: MLDetector,
    record: ModelRecord,
    models_dir: Path | None,
    where: scope.DetectorScope,
    *,
    rows: int,
    threads: int,
) -> tuple[pl.DataFrame, int, list[pl.DataFrame] | None]:
    """Candidates, rows scored, and (scoring kept days) the alert keys of every row scored."""
    model = load_model(record, models_dir)
    rescored: list[pl.DataFrame] | None = None if where.days is None else []
    scoped = (
        days.on_days(where.days, by=where.by, keys=where.keys)
        if where.days is not None
        else nullcontext()
    )
    with scoped:
        candidates, scored = score_chunks(
            con,
            det,
            model,
            record,
            window_from=where.window_from,
            window_to=where.window_to,
            rows=rows,
            threads=threads,
            rescored=rescored,
        )
    return candidates, scored, rescored


def _merge(
    con: duckdb.DuckDBPyConnection,
    det: MLDetector,
    record: ModelRecord,
    candidates: pl.DataFrame,
    rescored: list[pl.DataFrame] | None,
    where: scope.DetectorScope,
    run_id: str,
) -> MergeResult:
    """Merge the candidates; retract within the window, or among the rows scored again."""
    if rescored is not None:
        scope.rescored_alerts(con, det, rescored, "_ml_rescored")
    merged = merge_alerts(
        con,
        candidates.to_arrow(),
        detector_ids=[det.detector_id],
        run_id=run_id,
        retract_reason=f"no longer anomalous under model {record.version}",
        window_from=where.window_from if rescored is None else None,
        window_to=where.window_to if rescored is None else None,
        retract_within=None if rescored is None else "_ml_rescored",
    )
    if rescored is not None:
        con.execute("DROP TABLE _ml_rescored")
    return merged


def _stale(det: MLDetector, record: ModelRecord | None) -> str | None:
    """Why the detector cannot score with ``record`` (None: it can)."""
    if record is None:
        return "no trained model: run `dwatch train`"
    if record.features and record.features != list(det.feature_columns):
        # A model fitted before the detector changed its features (a store trained by
        # an older release) cannot score today's rows: say so instead of failing.
        return (
            f"model {record.version} was fitted on features {record.features}, the "
            f"detector now reads {list(det.feature_columns)}: run `dwatch train`"
        )
    return None


def score_models(
    con: duckdb.DuckDBPyConnection,
    *,
    run_id: str,
    models_dir: Path | None = None,
    window_from: datetime | None = None,
    window_to: datetime | None = None,
    windows: Sequence[scope.SourceWindow] | None = None,
    batches: Sequence[str] | None = None,
    config: MLConfig | None = None,
    threads: int = 2,
    own_transaction: bool = True,
    chunk_rows: int | None = None,
) -> ScoreSummary:
    """Score with each detector's latest saved model (no retraining) and merge the alerts
    into ``alerts``; a detector never trained is reported, not an error.

    What is scored: the window [window_from, window_to) (all history when both are None),
    or, given ``windows`` (an incremental run's (log, start, end) windows), for each
    detector only the rows those windows touch (:mod:`detectors.ml.scope`; with
    ``batches``, the ingest batches that opened them, only their events count), whose
    alerts are then the same as scoring all history would give.

    Rows stream in chunks of ``chunk_rows`` (default: what the ``DWATCH_MEMORY`` budget
    holds, see :mod:`dwatch.memory`). Each detector's merge runs in its own transaction
    unless ``own_transaction`` is False (the caller already holds one)."""
    config = config or load_config()
    rows = chunk_rows or memory_budget().rows_for(SCORE_ROW_BYTES)
    features.prepare_zones(con, config.time_zones)
    try:
        return _score_all(
            con,
            config,
            run_id,
            models_dir,
            (window_from, window_to),
            windows,
            batches,
            threads=threads,
            own_transaction=own_transaction,
            rows=rows,
        )
    finally:
        reuse.release(con)  # rows a training kept for this scoring (reuse.py)


def _score_all(
    con: duckdb.DuckDBPyConnection,
    config: MLConfig,
    run_id: str,
    models_dir: Path | None,
    window: tuple[datetime | None, datetime | None],
    windows: Sequence[scope.SourceWindow] | None,
    batches: Sequence[str] | None,
    *,
    threads: int,
    own_transaction: bool,
    rows: int,
) -> ScoreSummary:
    window_from, window_to = window
    records = latest_models(con)
    summary = ScoreSummary()
    detectors = enabled_detectors(config, None)
    usable = [d for d in detectors if _stale(d, records.get(d.detector_id)) is None]
    # The windows' events are read once for every detector (each keeps its own types).
    read = (
        scope.Touched.read(
            con,
            {t for det in usable for t in det.event_types},
            windows,
            [det.scope_by for det in usable if det.scope_by],
            batches,
        )
        if windows is not None and usable
        else None
    )
    for det in detectors:
        record = records.get(det.detector_id)
        why_not = _stale(det, record)
        if why_not is not None or record is None:
            summary.detectors.append(DetectorScore(det.detector_id, None, message=why_not or ""))
            continue
        where = scope.detector_scope(con, det, window_from, window_to, windows, batches, read)
        if where is None:
            summary.detectors.append(
                DetectorScore(det.detector_id, record.version, message="no new events of its types")
            )
            continue
        candidates, scored, rescored = _score_detector_scope(
            con, det, record, models_dir, where, rows=rows, threads=threads
        )
        with transaction(con) if own_transaction else nullcontext():
            merged = _merge(con, det, record, candidates, rescored, where, run_id)
        summary.new += merged.new
        summary.updated += merged.updated
        summary.reopened += merged.reopened
        summary.retracted += merged.retracted
        summary.detectors.append(
            DetectorScore(
                det.detector_id,
                record.version,
                scored,
                candidates.height,
                f"{candidates.height} alert(s) from {scored:,} rows"
                + (f" on {len(where.days)} day(s)" if where.days is not None else ""),
                days=len(where.days) if where.days is not None else None,
            )
        )
    return summary
