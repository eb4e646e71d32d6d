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

from detectors.ml import bounds, features
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


def rate_floor(scores: NDArray[np.float64], events: float, per_10k: float) -> tuple[float, int]:
    """The lowest score at which at most ``per_10k`` rows per 10,000 ``events`` of the
    training window would alert, and how many training rows reach it.

    With at least :data:`TAIL_ROWS` alerts allowed, it is the training scores' own cut.
    With fewer (a short window, a strict rate) the highest scores are too few to place it,
    so an exponential tail is fitted to the ``TAIL_ROWS`` highest (peaks over the next
    one, ``u``; their mean excess ``beta``) and the floor is where that tail leaves the
    allowed number: ``u + beta ln(TAIL_ROWS / allowed)`` (surprise in nats of a
    well-calibrated model has such a tail, with ``beta`` near 1), raised above the
    held-out rows that reach it when more do than chance allows at that rate."""
    ranked = np.sort(np.asarray(scores, dtype=np.float64))[::-1]
    if ranked.size == 0:
        return float("inf"), 0
    allowed = per_10k * events / 10_000.0
    if allowed >= TAIL_ROWS or ranked.size <= TAIL_ROWS:
        cut = min(int(np.floor(allowed)), ranked.size - 1)
        threshold = float(np.nextafter(ranked[cut], np.inf))
    else:
        u = float(ranked[TAIL_ROWS])
        beta = float(np.mean(ranked[:TAIL_ROWS] - u))
        threshold = float(np.nextafter(u, np.inf))
        if beta > 0:
            threshold = max(threshold, u + beta * float(np.log(TAIL_ROWS / max(allowed, 1e-9))))
        # The fitted tail must agree with the held-out rows it extends: if more of them
        # reach it than chance allows at the stated rate (a Poisson count of mean
        # ``allowed`` reaching that many in under 5% of windows), the tail is heavier than
        # fitted, and the floor rises above all but the plausible number of them.
        plausible = int(poisson.isf(TAIL_PLAUSIBLE, allowed))  # P(N > plausible) < 5%
        if int(np.sum(ranked >= threshold)) > plausible:
            threshold = float(np.nextafter(ranked[plausible], np.inf))
    return threshold, int(np.sum(ranked >= threshold))


def threshold_for(
    detector: MLDetector,
    model: Pipeline,
    train_scores: NDArray[np.float64],
    events_per_row: NDArray[np.float64] | None = None,
    rule_flagged: NDArray[np.bool_] | None = None,
) -> tuple[float, float | None, dict[str, Any] | None]:
    """Alert threshold in anomaly-score units, the training percentile it came from (if
    one), and the false-alarm floor it was set by (if ``false_alarms_per_10k`` is set).
    Rows ``rule_flagged`` (named by an open rule alert) are not lawful events, so the
    false-alarm rate leaves them out, unless fewer than :data:`TAIL_ROWS` rows remain."""
    settings = detector.settings
    floor = None
    pct = None
    if detector.percentile_threshold and settings.false_alarms_per_10k is not None:
        weights = np.ones(train_scores.size) if events_per_row is None else events_per_row
        lawful = np.ones(train_scores.size, dtype=bool)
        if rule_flagged is not None and (~rule_flagged).sum() >= TAIL_ROWS:
            lawful = ~rule_flagged
        events = float(np.sum(weights[lawful]))
        threshold, alerts = rate_floor(train_scores[lawful], events, settings.false_alarms_per_10k)
        floor = {
            "false_alarms_per_10k": settings.false_alarms_per_10k,
            "event_unit": detector.event_unit,
            "training_events": events,
            "training_rows": int(train_scores.size),
            "rule_flagged_rows": int((~lawful).sum()),
            "training_alerts": alerts,
            "expected_per_10k": 10_000.0 * alerts / events if events else 0.0,
            # Fewer alerts allowed than TAIL_ROWS: the floor extends the held-out tail.
            "allowed_alerts": settings.false_alarms_per_10k * events / 10_000.0,
            "tail_fitted": settings.false_alarms_per_10k * events / 10_000.0 < TAIL_ROWS
            and int(lawful.sum()) > TAIL_ROWS,
            "scored": "held out: each half of the window by a model fitted on the other",
        }
    elif detector.percentile_threshold and settings.threshold_percentile is not None:
        pct = settings.threshold_percentile
        threshold = float(np.percentile(train_scores, pct))
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
) -> list[TrainResult]:
    """Fit each enabled detector on [window_from, window_to) and save it; never raises for one
    detector lacking data (it is reported as skipped).

    Without ``window_from`` a detector trains on its ``training_days``; a window holding
    more than ``max_rows`` rows (default: what ``DWATCH_MEMORY`` holds) is narrowed to its
    most recent days (:mod:`detectors.ml.bounds`); the model records the window used."""
    config = config or load_config()
    models_dir = Path(models_dir) if models_dir else default_models_dir()
    features.prepare_zones(con, config.time_zones)
    results = []
    for det in enabled_detectors(config, detectors):
        window, frame = bounds.window_and_frame(con, det, window_from, window_to, max_rows)
        if frame.height < min_rows:
            results.append(
                TrainResult(
                    det.detector_id,
                    "skipped",
                    f"{frame.height} training rows of event types {det.event_types} in the window"
                    f" (need at least {min_rows}); widen --from/--to or load more logs",
                )
            )
            continue
        model = det.fit(frame)
        rate_floor_set = det.percentile_threshold and det.settings.false_alarms_per_10k is not None
        train_scores = (
            held_out_scores(det, frame) if rate_floor_set else det.anomaly_scores(model, frame)
        )
        threshold, pct, floor = threshold_for(
            det, model, train_scores, det.events_per_row(frame), det.rule_flagged(con, frame)
        )
        record = save_model(
            con,
            detector_id=det.detector_id,
            model=model,
            models_dir=models_dir,
            train_from=window.window_from,
            train_to=window.window_to,
            training_rows=frame.height,
            features=list(det.feature_columns),
            training_data_sha256=frame_sha256(frame.select(det.feature_columns)),
            threshold=threshold,
            threshold_percentile=pct,
            metadata={
                **det.training_metadata(model, frame),
                **({"alert_floor": floor} if floor else {}),
                **({"training_window": window.note} if window.note else {}),
                "event_types": det.event_types,
                "training_alert_rate": float(np.mean(train_scores >= threshold)),
            },
        )
        results.append(
            TrainResult(
                det.detector_id,
                "trained",
                f"{frame.height:,} rows, threshold {threshold:.3f}"
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
        )
    return results
