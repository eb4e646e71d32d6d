"""Train and score the ML detectors: the plain functions behind `dwatch train`, the train
flow, and the ML step of `dwatch detect` (:func:`score_models`)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import polars as pl
from numpy.typing import NDArray
from scipy.stats import poisson
from sklearn.pipeline import Pipeline

from detectors.alerts import MergeResult, merge_alerts
from detectors.ml import bounds, days, features, scope
from detectors.ml.detectors import DETECTORS, MLDetector, ModelContext
from detectors.ml.registry import (
    MLConfig,
    ModelRecord,
    default_models_dir,
    frame_sha256,
    latest_models,
    load_config,
    load_model,
    save_model,
)
from dwatch.errors import ConfigError
from dwatch.memory import memory_budget
from dwatch.store import transaction

# What one scoring row costs in Python while its chunk is scored: the feature row (event
# id lists included) and the arrays the estimators build from it, with room to spare.
SCORE_ROW_BYTES = 4096


@dataclass(frozen=True)
class TrainResult:
    detector_id: str
    status: str  # trained | skipped
    message: str
    record: ModelRecord | None = None


def _detectors(config: MLConfig, only: list[str] | None) -> list[MLDetector]:
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
        model = detector.fit(frame.filter(pl.Series(~part)))
        scores[part] = detector.anomaly_scores(model, frame.filter(pl.Series(part)))
    return scores


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
    for det in _detectors(config, detectors):
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


def _context(record: ModelRecord) -> ModelContext:
    return ModelContext(
        version=record.version,
        threshold=record.threshold,
        threshold_percentile=record.threshold_percentile,
        train_from=record.train_from,
        train_to=record.train_to,
        metadata=record.metadata,
    )


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
    same; a detector whose scoring frame is not one feature query is read whole."""
    with features.planned() as queries:
        detector.scoring_frame(con, window_from, window_to)
    if len(queries) != 1:
        yield detector.scoring_frame(con, window_from, window_to)
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
    return detector.alert_rows(frame.filter(pl.Series(hit)), scores[hit], model, _context(record))


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
    records = latest_models(con)
    summary = ScoreSummary()
    for det in _detectors(config, None):
        record = records.get(det.detector_id)
        why_not = _stale(det, record)
        if why_not is not None or record is None:
            summary.detectors.append(DetectorScore(det.detector_id, None, message=why_not or ""))
            continue
        where = scope.detector_scope(con, det, window_from, window_to, windows, batches)
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
