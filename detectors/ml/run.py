"""Train and score the ML detectors: the plain functions behind `dwatch train`, the train
flow, and the ML step of `dwatch detect` (:func:`score_models`, in :mod:`detectors.ml.scoring`
and re-exported here)."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import polars as pl
from numpy.typing import NDArray
from scipy.stats import poisson
from sklearn.pipeline import Pipeline

from detectors.ml import bounds, count_summary, features, reuse, summary
from detectors.ml.detectors import MLDetector
from detectors.ml.registry import (
    MLConfig,
    ModelRecord,
    default_models_dir,
    frame_sha256,
    load_config,
    save_model,
)
from detectors.ml.scoring import (
    SCORE_ROW_BYTES,
    DetectorScore,
    ScoreSummary,
    alerts_for,
    enabled_detectors,
    score_chunks,
    score_detector,
    score_models,
    scoring_chunks,
)
from detectors.ml.surprise import CountRateSurprise
from dwatch.memory import memory_budget

__all__ = [
    "SCORE_ROW_BYTES",
    "DetectorScore",
    "ScoreSummary",
    "TrainResult",
    "alerts_for",
    "held_out_scores",
    "rate_floor",
    "score_chunks",
    "score_detector",
    "score_models",
    "scoring_chunks",
    "threshold_for",
    "train_models",
]


@dataclass(frozen=True)
class TrainResult:
    detector_id: str
    status: str  # trained | skipped
    message: str
    record: ModelRecord | None = None


# Below this many allowed training alerts, the floor is read from a fitted tail rather
# than from the few highest training scores (which would put it at the training maximum).
TAIL_ROWS = 20
# A fitted tail that more held-out rows reach than a Poisson count at the stated rate
# would reach in this share of windows is not believed (see rate_floor).
TAIL_PLAUSIBLE = 0.05


def rate_floor(
    scores: NDArray[np.float64],
    events: float,
    per_10k: float,
    counts: NDArray[np.float64] | None = None,
) -> tuple[float, int]:
    """The lowest score at which at most ``per_10k`` rows per 10,000 ``events`` of the
    training window would alert, and how many training rows reach it (``counts``: how
    many rows each score stands for, as in a summary of distinct rows; None: one each).

    With at least :data:`TAIL_ROWS` alerts allowed, it is the training scores' own cut.
    With fewer (a short window, a strict rate) the highest scores are too few to place it,
    so an exponential tail is fitted to the ``TAIL_ROWS`` highest (peaks over the next
    one, ``u``; their mean excess ``beta``) and the floor is where that tail leaves the
    allowed number: ``u + beta ln(TAIL_ROWS / allowed)`` (surprise in nats of a
    well-calibrated model has such a tail, with ``beta`` near 1), raised above the
    held-out rows that reach it when more do than chance allows at that rate."""
    scores = np.asarray(scores, dtype=np.float64)
    n = np.ones(scores.size) if counts is None else np.asarray(counts, dtype=np.float64)
    size = int(n.sum())
    if size == 0:
        return float("inf"), 0
    allowed = per_10k * events / 10_000.0
    # Only the highest scores place the floor: those rows, each as often as it counts.
    if allowed >= TAIL_ROWS or size <= TAIL_ROWS:
        cut = min(int(np.floor(allowed)), size - 1)
        threshold = float(np.nextafter(_highest(scores, n, cut + 1)[cut], np.inf))
    else:
        plausible = int(poisson.isf(TAIL_PLAUSIBLE, allowed))  # P(N > plausible) < 5%
        ranked = _highest(scores, n, min(max(TAIL_ROWS, plausible) + 1, size))
        u = float(ranked[TAIL_ROWS])
        beta = float(np.mean(ranked[:TAIL_ROWS] - u))
        threshold = float(np.nextafter(u, np.inf))
        if beta > 0:
            threshold = max(threshold, u + beta * float(np.log(TAIL_ROWS / max(allowed, 1e-9))))
        # The fitted tail must agree with the held-out rows it extends: if more of them
        # reach it than chance allows at the stated rate (a Poisson count of mean
        # ``allowed`` reaching that many in under 5% of windows), the tail is heavier than
        # fitted, and the floor rises above all but the plausible number of them.
        if int(n[scores >= threshold].sum()) > plausible:
            threshold = float(np.nextafter(ranked[plausible], np.inf))
    return threshold, int(n[scores >= threshold].sum())


def _highest(
    scores: NDArray[np.float64], counts: NDArray[np.float64], k: int
) -> NDArray[np.float64]:
    """The ``k`` highest scores, highest first, each repeated as often as it counts (as
    ``np.sort(scores)[::-1][:k]`` of the rows themselves)."""
    order = np.argsort(scores, kind="stable")[::-1]
    kept = order[: int(np.searchsorted(np.cumsum(counts[order]), k)) + 1]
    return np.repeat(scores[kept], counts[kept].astype(np.int64))[:k]


def threshold_for(
    detector: MLDetector,
    model: Pipeline,
    train_scores: NDArray[np.float64],
    events_per_row: NDArray[np.float64] | None = None,
    rule_flagged: NDArray[np.bool_] | NDArray[np.float64] | None = None,
    counts: NDArray[np.float64] | None = None,
    events: float | None = None,
) -> tuple[float, float | None, dict[str, Any] | None]:
    """Alert threshold in anomaly-score units, the training percentile it came from (if
    one), and the false-alarm floor it was set by (if ``false_alarms_per_10k`` is set).
    Rows ``rule_flagged`` (named by an open rule alert) are not lawful events, so the
    false-alarm rate leaves them out, unless fewer than :data:`TAIL_ROWS` rows remain.

    ``counts``: how many training rows each score stands for (a summary of distinct rows);
    ``rule_flagged`` then holds how many of them a rule alert names, and
    ``events_per_row`` the events of each of them. ``events``: the training window's
    events, when ``train_scores`` holds only its highest scores (a fit on sums)."""
    settings = detector.settings
    floor = None
    pct = None
    n = np.ones(train_scores.size) if counts is None else np.asarray(counts, dtype=np.float64)
    if detector.percentile_threshold and settings.false_alarms_per_10k is not None:
        weights = np.ones(train_scores.size) if events_per_row is None else events_per_row
        kept = n
        if rule_flagged is not None:
            lawful = n - np.asarray(rule_flagged, dtype=np.float64)
            if lawful.sum() >= TAIL_ROWS:
                kept = lawful
        if events is None:
            events = float(np.sum(weights * kept))
        threshold, alerts = rate_floor(train_scores, events, settings.false_alarms_per_10k, kept)
        floor = {
            "false_alarms_per_10k": settings.false_alarms_per_10k,
            "event_unit": detector.event_unit,
            "training_events": events,
            "training_rows": int(n.sum()),
            "rule_flagged_rows": int((n - kept).sum()),
            "training_alerts": alerts,
            "expected_per_10k": 10_000.0 * alerts / events if events else 0.0,
            # Fewer alerts allowed than TAIL_ROWS: the floor extends the held-out tail.
            "allowed_alerts": settings.false_alarms_per_10k * events / 10_000.0,
            "tail_fitted": settings.false_alarms_per_10k * events / 10_000.0 < TAIL_ROWS
            and int(kept.sum()) > TAIL_ROWS,
            "scored": "held out: each half of the window by a model fitted on the other",
        }
    elif detector.percentile_threshold and settings.threshold_percentile is not None:
        pct = settings.threshold_percentile
        every = train_scores if counts is None else np.repeat(train_scores, n.astype(np.int64))
        threshold = float(np.percentile(every, pct))
    else:
        threshold = float(-model[-1].offset_)
    if settings.min_score is not None:
        if floor is not None and settings.min_score > threshold:
            floor["rate_threshold"] = threshold
            floor["min_score"] = settings.min_score
        threshold = max(threshold, settings.min_score)
    return threshold, pct, floor


def held_out_scores(detector: MLDetector, frame: pl.DataFrame) -> NDArray[np.float64]:
    """Every training row scored by a model fitted on the other half of the window (split
    in time, both ways), so the alert floor's false-alarm rate is what the detector does on
    days it has not seen: new flows, rare weekend runs and growth included. Falls back to
    the in-sample scores when a half is too small to fit."""
    column = "day" if "day" in frame.columns else "occurred_at"
    when = frame[column]
    if when.null_count() == frame.height:
        return detector.anomaly_scores(detector.fit(frame), frame)
    middle = when.sort().gather(frame.height // 2).item()
    first = (when < middle).fill_null(True).to_numpy()
    if first.sum() < 20 or (~first).sum() < 20:
        return detector.anomaly_scores(detector.fit(frame), frame)
    scores = np.empty(frame.height)
    for part in (first, ~first):
        model = _fold_fit(detector, frame.filter(pl.Series(~part)))
        scores[part] = detector.anomaly_scores(model, frame.filter(pl.Series(part)))
    return scores


def _fold_fit(detector: MLDetector, frame: pl.DataFrame) -> Pipeline:
    """A model fitted only to score the other fold: without the pass over its own training
    rows that sets ``offset_`` (the estimators that take ``offset=False``), which a fold's
    model never uses. Same fitted baselines, so the same held-out scores."""
    model = detector.build_pipeline()
    name, estimator = model.steps[-1]
    if "offset" not in inspect.signature(estimator.fit).parameters:
        return detector.fit(frame)
    return model.fit(frame.select(detector.feature_columns), **{f"{name}__offset": False})


@dataclass(frozen=True)
class _Fitted:
    """A detector's model and its training scores, before the floor is set and it is saved."""

    window: bounds.TrainingWindow
    model: Pipeline
    # Training scores (held out when the floor is a false-alarm rate), one per frame row.
    scores: NDArray[np.float64]
    events_per_row: NDArray[np.float64]
    rule_flagged: NDArray[np.bool_] | NDArray[np.float64] | None
    # A summary fit: how many training rows each frame row stands for (None: one).
    counts: NDArray[np.float64] | None
    rows: int
    data_sha256: str
    metadata: dict[str, Any]
    note: str = ""
    # A fit on sums: the window's events (its scores are only the highest ones).
    events: float | None = None

    def alert_rate(self, threshold: float) -> float:
        if self.counts is None:
            return float(np.mean(self.scores >= threshold))
        return float(self.counts[self.scores >= threshold].sum() / self.counts.sum())


def _rate_floor_set(det: MLDetector) -> bool:
    return bool(det.percentile_threshold and det.settings.false_alarms_per_10k is not None)


def _fit_rows(
    con: duckdb.DuckDBPyConnection,
    det: MLDetector,
    window_from: datetime | None,
    window_to: datetime | None,
    max_rows: int | None,
    min_rows: int,
    keep_for_scoring: bool = False,
) -> _Fitted | int:
    """Fit on the window's rows (narrowed to what the budget holds); too few: their count.
    ``keep_for_scoring``: see :func:`bounds.window_and_frame`."""
    window, frame = bounds.window_and_frame(
        con, det, window_from, window_to, max_rows, keep_for_scoring
    )
    if frame.height < min_rows:
        return frame.height
    model = det.fit(frame)
    scores = (
        held_out_scores(det, frame) if _rate_floor_set(det) else det.anomaly_scores(model, frame)
    )
    return _Fitted(
        window,
        model,
        scores,
        det.events_per_row(frame),
        det.rule_flagged(con, frame),
        None,
        frame.height,
        frame_sha256(frame.select(det.feature_columns)),
        det.training_metadata(model, frame),
    )


def _fit_summarized(
    con: duckdb.DuckDBPyConnection,
    det: MLDetector,
    window_from: datetime | None,
    window_to: datetime | None,
    max_rows: int | None,
    min_rows: int,
    keep_for_scoring: bool = False,
) -> _Fitted | int | None:
    """Fit on the window's distinct feature rows with their counts, summed in DuckDB
    (:mod:`detectors.ml.summary`), or a count-rate model on its sums per user and agency
    (:mod:`detectors.ml.count_summary`); None: fit on rows instead (the summary is over
    the budget, the detector's training_rows bounds its rows, or the model cannot be
    fitted on a summary)."""
    if det.settings.training_rows is not None:
        return None  # a bound on the rows fitted was asked for: fit on them
    if isinstance(det.build_pipeline().steps[-1][1], CountRateSurprise):
        return _fit_count_sums(con, det, window_from, window_to, min_rows, keep_for_scoring)
    held = summary.summarize(con, det, window_from, window_to, max_rows, keep_for_scoring)
    if held is None:
        return None
    if held.rows < min_rows:
        return held.rows
    model = summary.fit(det, held)
    scores = (
        summary.held_out_scores(det, held, model)
        if _rate_floor_set(det)
        else det.anomaly_scores(model, held.frame)
    )
    return _Fitted(
        held.window,
        model,
        scores,
        det.events_per_row(held.frame),
        held.flagged,
        held.counts,
        held.rows,
        frame_sha256(held.frame.select(*det.feature_columns, summary.ROWS)),
        held.metadata,
        f"summed in DuckDB to {held.frame.height:,} distinct feature rows",
    )


def _fit_count_sums(
    con: duckdb.DuckDBPyConnection,
    det: MLDetector,
    window_from: datetime | None,
    window_to: datetime | None,
    min_rows: int,
    keep_for_scoring: bool = False,
) -> _Fitted | int | None:
    """A count-rate model fitted on its window's sums; its floor from the highest held-out
    scores (the rest of the rows stand as one entry below them all)."""
    if not _rate_floor_set(det):
        return None  # its floor would be the in-sample offset_, which sums do not give
    rows = memory_budget().rows_for(SCORE_ROW_BYTES)
    fit = count_summary.fit_on_sums(con, det, window_from, window_to, rows, keep_for_scoring)
    if fit is None:
        return None
    if fit.rows < min_rows:
        return fit.rows
    rest = fit.rows - fit.top.size
    scores = np.concatenate([fit.top, [-np.inf] if rest else []])
    counts = np.concatenate([np.ones(fit.top.size), [float(rest)] if rest else []])
    return _Fitted(
        fit.window,
        fit.model,
        scores,
        np.ones(scores.size),
        None,
        counts,
        fit.rows,
        fit.sums_sha256,
        {},
        f"summed in DuckDB to {fit.entities:,} entity and {fit.units:,} unit sums",
        fit.events,
    )


def _train_one(
    con: duckdb.DuckDBPyConnection,
    det: MLDetector,
    window_from: datetime | None,
    window_to: datetime | None,
    *,
    models_dir: Path,
    min_rows: int,
    max_rows: int | None,
    keep_for_scoring: bool = False,
) -> TrainResult:
    fitted = (
        _fit_summarized(con, det, window_from, window_to, max_rows, min_rows, keep_for_scoring)
        if det.fits_summary
        else None
    )
    if fitted is None:
        fitted = _fit_rows(con, det, window_from, window_to, max_rows, min_rows, keep_for_scoring)
    if isinstance(fitted, int):
        return TrainResult(
            det.detector_id,
            "skipped",
            f"{fitted} training rows of event types {det.event_types} in the window"
            f" (need at least {min_rows}); widen --from/--to or load more logs",
        )
    threshold, pct, floor = threshold_for(
        det,
        fitted.model,
        fitted.scores,
        fitted.events_per_row,
        fitted.rule_flagged,
        fitted.counts,
        fitted.events,
    )
    window = fitted.window
    record = save_model(
        con,
        detector_id=det.detector_id,
        model=fitted.model,
        models_dir=models_dir,
        train_from=window.window_from,
        train_to=window.window_to,
        training_rows=fitted.rows,
        features=list(det.feature_columns),
        training_data_sha256=fitted.data_sha256,
        threshold=threshold,
        threshold_percentile=pct,
        metadata={
            **fitted.metadata,
            **({"alert_floor": floor} if floor else {}),
            **({"training_window": window.note} if window.note else {}),
            **({"training_summary": fitted.note} if fitted.note else {}),
            "event_types": det.event_types,
            "training_alert_rate": fitted.alert_rate(threshold),
        },
    )
    return TrainResult(
        det.detector_id,
        "trained",
        f"{fitted.rows:,} rows"
        + (f" ({fitted.note})" if fitted.note else "")
        + f", threshold {threshold:.3f}"
        + (f" (p{pct:g} of training scores)" if pct is not None else "")
        + (
            f" (at most {floor['false_alarms_per_10k']:g} per 10,000 {det.event_unit}:"
            f" {floor['training_alerts']} training alert(s))"
            if floor
            else ""
        )
        + (f"; window: {window.note}" if window.note else ""),
        record,
    )


def train_models(
    con: duckdb.DuckDBPyConnection,
    *,
    window_from: datetime | None,
    window_to: datetime | None,
    models_dir: Path | None = None,
    config: MLConfig | None = None,
    detectors: list[str] | None = None,
    min_rows: int = 20,
    max_rows: int | None = None,
    keep_for_scoring: bool = False,
) -> list[TrainResult]:
    """Fit each enabled detector on [window_from, window_to) and save it; never raises for one
    detector lacking data (it is reported as skipped).

    Without ``window_from`` a detector trains on its ``training_days``. A detector that
    ``fits_summary`` fits on the window's distinct feature rows with their counts, summed
    in DuckDB (:mod:`detectors.ml.summary`), so its window is never narrowed; for the
    others a window holding more than ``max_rows`` rows (default: what ``DWATCH_MEMORY``
    holds) is narrowed to its most recent days (:mod:`detectors.ml.bounds`). The model
    records the window used.

    ``keep_for_scoring``: rows a fit built that are also all history's scoring rows stay
    in DuckDB for the :func:`score_models` that follows on ``con``, which reads them
    instead of building them again and then drops them (:mod:`detectors.ml.reuse`)."""
    config = config or load_config()
    models_dir = Path(models_dir) if models_dir else default_models_dir()
    reuse.release(con)
    features.prepare_zones(con, config.time_zones)
    return [
        _train_one(
            con,
            det,
            window_from,
            window_to,
            models_dir=models_dir,
            min_rows=min_rows,
            max_rows=max_rows,
            keep_for_scoring=keep_for_scoring,
        )
        for det in enabled_detectors(config, detectors)
    ]
