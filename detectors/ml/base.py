"""What every ML detector shares: its settings, the model context its explanations cite,
the base class (features, pipeline, alert rows) and the registry of detectors.

A detector subclasses :class:`MLDetector` and is registered by being defined (no central
list to edit; :mod:`detectors.ml.detectors` imports every module that declares one).

Score convention: :meth:`MLDetector.anomaly_scores` returns ``-score_samples`` of the
pipeline, so *higher = more anomalous* everywhere outside the estimators.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

import duckdb
import numpy as np
import polars as pl
from numpy.typing import NDArray
from sklearn.pipeline import Pipeline

from detectors.alerts import ALERT_COLUMNS, make_alert_id

DETECTORS: dict[str, type[MLDetector]] = {}

# Evidence keeps at most this many event ids per alert; event_count has the full number.
MAX_EVENT_IDS = 200
SCORE_CHUNK_ROWS = 250_000


@dataclass(frozen=True)
class DetectorSettings:
    """One detector's block of the ML config file."""

    enabled: bool = True
    event_types: tuple[str, ...] = ("disclosure",)
    threshold_percentile: float | None = 99.9
    min_score: float | None = None
    # The alert floor as a false-alarm rate on the training window: at most this many
    # training rows at or above it per 10,000 of the detector's events (its event_unit).
    # Set, it replaces threshold_percentile.
    false_alarms_per_10k: float | None = None
    severity: str = "medium"
    params: dict[str, Any] = field(default_factory=dict)
    # History trained on when no window start is given: this many days before the latest
    # event (None: all of it). See detectors/ml/bounds.py.
    training_days: int | None = None
    # At most this many training rows: a window holding more is narrowed to its most recent
    # whole days that hold them (None: only the DWATCH_MEMORY budget bounds it).
    training_rows: int | None = None


@dataclass(frozen=True)
class ModelContext:
    """What an explanation may cite about the model that scored the row."""

    version: str
    threshold: float
    threshold_percentile: float | None
    train_from: datetime | None
    train_to: datetime | None
    metadata: dict[str, Any]

    def floor_words(self, score: float) -> str:
        """'Score 41.3; alert floor 18.2 nats, set so that at most 1 alert per 10,000
        lawful transfers would have fired on the training window (2 of 20,114 ...).'"""
        floor = self.metadata.get("alert_floor") or {}
        if floor.get("false_alarms_per_10k") is None:
            return f"Score {score:.1f}, alert threshold {self.threshold:.1f}."
        unit = floor.get("event_unit", "events")
        window = (
            f"{_day(self.train_from) if self.train_from else 'the start'} to "
            f"{_day(self.train_to) if self.train_to else 'the end'}"
        )
        rate = (
            f"at most {floor['false_alarms_per_10k']:g} alert(s) per 10,000 lawful {unit} would "
            f"have fired on the training window ({window}, each half scored by a model fitted on "
            f"the other: {floor['training_alerts']:,} alert(s) over "
            f"{_fmt_int(floor['training_events'])} {unit}, about "
            f"{floor['expected_per_10k']:.2f} per 10,000{_set_aside(floor, unit)}"
            f"{_tail_words(floor)})"
        )
        if "min_score" in floor:
            # The detector's own minimum is higher than what the rate alone would set.
            return (
                f"Score {score:.1f}; alert floor {self.threshold:.1f}, the detector's own "
                f"minimum (the rate floor, {floor['rate_threshold']:.1f}, is where {rate})."
            )
        return f"Score {score:.1f}; alert floor {self.threshold:.1f}, set so that {rate}."


def _tail_words(floor: dict[str, Any]) -> str:
    """'; the window allows 0.55 such alerts, too few to read the floor off its scores:
    it extends the tail of the 20 highest' (a rate finer than the window resolves)."""
    if not floor.get("tail_fitted"):
        return ""
    return (
        f"; the window allows {floor['allowed_alerts']:.2f} such alert(s), too few to read "
        "the floor off its scores: it extends the tail of the highest held-out scores, and "
        "no lower than chance allows so many of them to reach it"
    )


def _set_aside(floor: dict[str, Any], unit: str) -> str:
    """'; 1,203 transfers a rule alert names left out' (training rows not lawful)."""
    flagged = floor.get("rule_flagged_rows")
    return f"; {flagged:,} {unit} a rule alert names left out" if flagged else ""


def _fmt_int(value: float | int | None) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "n/a"
    return f"{round(float(value)):,}"


def _day(value: Any) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def log_to_count(value: float) -> float:
    """Inverse of the ln(1 + x) the count features are compared on."""
    return float(np.expm1(value))


def score_in_chunks(
    score: Callable[[pl.DataFrame], NDArray[np.float64]], frame: pl.DataFrame, threads: int = 2
) -> NDArray[np.float64]:
    """Score row chunks on ``threads`` threads (the tree and numpy kernels release the GIL)."""
    n = frame.height
    if n == 0:
        return np.empty(0)
    if threads <= 1 or n <= SCORE_CHUNK_ROWS:
        return score(frame)
    size = max(SCORE_CHUNK_ROWS, -(-n // (threads * 4)))
    chunks = [frame.slice(start, size) for start in range(0, n, size)]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return np.concatenate(list(pool.map(score, chunks)))


class MLDetector:
    """Base: subclasses set the class attributes and implement the four hooks."""

    detector_id: ClassVar[str]
    title: ClassVar[str]
    entity_type: ClassVar[str]
    feature_columns: ClassVar[tuple[str, ...]]
    # Columns that identify one scored row (an alert's dedup key).
    key_columns: ClassVar[tuple[str, ...]]
    # Columns an alert id is made of, when not key_columns (several rows, one alert).
    alert_key_columns: ClassVar[tuple[str, ...] | None] = None
    # False: the model's own offset_ is the threshold (novelty is not a percentile).
    percentile_threshold: ClassVar[bool] = True
    # Scoring a window in operation also rescores this many days before it: rows whose
    # features look ahead (a week starting on the day) change once later days arrive.
    rescore_days: ClassVar[int] = 0
    # The event column whose value partitions the rows' features (a row reads only events
    # sharing its value), if any: an increment then rescores only the values it touched.
    scope_by: ClassVar[str | None] = None
    # With scope_by: an event column whose events alone make a row's columns other than its
    # features (ml.actor_peers: the user; its features also read the agency's workload).
    # The flagged rows are then rebuilt for their explanations from the events of their
    # own values only, and take their features from the rows scored (score_rows.py).
    rebuild_by: ClassVar[str | None] = None
    # What the false-alarm rate of the alert floor counts (events_per_row sums them).
    event_unit: ClassVar[str] = "transfers"
    # A column naming each scoring row uniquely by a number (an event's store row): scoring
    # then reads only the feature columns of every row, and the whole rows (text for the
    # explanations) of those over the floor alone (scoring.score_chunks). None: whole rows.
    row_locator: ClassVar[str | None] = None
    # Python memory one training row costs at the peak of training (the frame row, the fit's
    # arrays, the held-out folds), with room to spare: the DWATCH_MEMORY budget's Python
    # share divided by it is how many rows a fit may read (detectors/ml/bounds.py).
    train_row_bytes: ClassVar[int] = 3072
    # True: the model only counts its rows, so it fits on the window's distinct feature
    # rows with their counts, summed in DuckDB over the whole window (detectors/ml/
    # summary.py): the window is not narrowed as the store grows.
    fits_summary: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if getattr(cls, "detector_id", None):
            DETECTORS[cls.detector_id] = cls

    def __init__(self, settings: DetectorSettings) -> None:
        self.settings = settings

    # -- hooks ---------------------------------------------------------------------------
    def training_frame(
        self,
        con: duckdb.DuckDBPyConnection,
        window_from: datetime | None,
        window_to: datetime | None,
    ) -> pl.DataFrame:
        return self.scoring_frame(con, window_from, window_to)

    def scoring_frame(
        self,
        con: duckdb.DuckDBPyConnection,
        window_from: datetime | None,
        window_to: datetime | None,
    ) -> pl.DataFrame:
        """One feature query's frame, returned as the query gives it: scoring streams that
        same query in chunks (run.scoring_chunks) and training reads it without its
        evidence lists (bounds.training_frame), so reshaping rows here would be lost."""
        raise NotImplementedError

    def build_pipeline(self) -> Pipeline:
        raise NotImplementedError

    def explain(
        self, flagged: pl.DataFrame, scores: NDArray[np.float64], model: Pipeline, ctx: ModelContext
    ) -> tuple[list[str], list[dict[str, Any]]]:
        """Plain-language explanation and evidence for each flagged row."""
        raise NotImplementedError

    # -- shared --------------------------------------------------------------------------
    @property
    def event_types(self) -> list[str]:
        return list(self.settings.event_types)

    def fit(self, frame: pl.DataFrame) -> Pipeline:
        return self.build_pipeline().fit(frame.select(self.feature_columns))

    def anomaly_scores(
        self, model: Pipeline, frame: pl.DataFrame, threads: int = 2
    ) -> NDArray[np.float64]:
        """Higher = more anomalous (the negated ``score_samples`` of the pipeline)."""
        cols = list(self.feature_columns)
        return score_in_chunks(
            lambda chunk: -model.score_samples(chunk.select(cols)), frame, threads
        )

    def events_per_row(self, frame: pl.DataFrame) -> NDArray[np.float64]:
        """How many of ``event_unit`` each row stands for (one transfer per row here)."""
        return np.ones(frame.height)

    def training_metadata(self, model: Pipeline, frame: pl.DataFrame) -> dict[str, Any]:
        """Baselines of the training window that explanations quote later."""
        return {}

    def summary_metadata(self, con: duckdb.DuckDBPyConnection, query: Any) -> dict[str, Any]:
        """:meth:`training_metadata` of a summary fit (``fits_summary``), read with SQL off
        the training rows' feature query (``query``: a ``features.FeatureQuery``)."""
        return {}

    def rule_flagged(
        self, con: duckdb.DuckDBPyConnection, frame: pl.DataFrame
    ) -> NDArray[np.bool_] | None:
        """Training rows an open rule alert names: not lawful by the rules' own judgment,
        so the alert floor's false-alarm rate (per 10,000 *lawful* events) leaves them out.
        None: this detector's rows cannot be told apart (all count)."""
        return None

    def alert_rows(
        self, flagged: pl.DataFrame, scores: NDArray[np.float64], model: Pipeline, ctx: ModelContext
    ) -> pl.DataFrame:
        """Alert candidates (``ALERT_COLUMNS``) for the rows at or above the threshold."""
        explanations, evidence = self.explain(flagged, scores, model, ctx)
        for ev, s in zip(evidence, scores, strict=True):
            ev.setdefault("anomaly_score", round(float(s), 4))
            ev.setdefault("threshold", round(ctx.threshold, 4))
            ev.setdefault("threshold_percentile", ctx.threshold_percentile)
            if ctx.metadata.get("alert_floor"):
                ev.setdefault("alert_floor", ctx.metadata["alert_floor"])
            ev.setdefault("model_version", ctx.version)
        ids = self.alert_ids(flagged)
        base = self.alert_columns(flagged)
        out = base.with_columns(
            pl.Series("alert_id", ids, dtype=pl.String),
            pl.lit(self.detector_id).alias("detector_id"),
            pl.lit("model").alias("detector_kind"),
            pl.lit(ctx.version).alias("detector_version"),
            pl.lit(self.settings.severity).alias("severity"),
            pl.Series("score", scores, dtype=pl.Float64),
            pl.lit(self.entity_type).alias("entity_type"),
            pl.Series("evidence", [json.dumps(e, default=str) for e in evidence], dtype=pl.String),
            pl.Series("explanation", explanations, dtype=pl.String),
            pl.lit(False).alias("coverage_incomplete"),
            pl.lit(None, dtype=pl.String).alias("registry_version"),
        )
        return out.select(ALERT_COLUMNS)

    def alert_ids(self, rows: pl.DataFrame) -> list[str]:
        """The id of the alert each row raises, or would raise at or above the threshold
        (an incremental run retracts only the alerts of rows it scored again)."""
        keys = rows.select(self.alert_key_columns or self.key_columns).rows()
        return [make_alert_id(self.detector_id, *(_day(k) for k in key)) for key in keys]

    def alert_columns(self, flagged: pl.DataFrame) -> pl.DataFrame:
        """entity_id, agencies, actor, request, source, window, events and counts."""
        raise NotImplementedError


def rule_flagged_events(
    con: duckdb.DuckDBPyConnection, frame: pl.DataFrame, event_types: list[str]
) -> NDArray[np.bool_] | None:
    """Per row of a one-event-per-row frame: does an open rule alert name its event
    (``alert_events``)? None when the store keeps no such table."""
    try:
        named = con.execute(
            """
            SELECT DISTINCT ae.source_system || chr(31) || ae.event_id
            FROM alert_events ae JOIN alerts a USING (alert_id)
            WHERE a.detector_kind = 'rule' AND a.status = 'open'
              AND ae.event_type IN (SELECT unnest($types::VARCHAR[]))
            """,
            {"types": event_types},
        ).fetchall()
    except duckdb.CatalogException:
        return None
    keys = frame["source_system"] + chr(31) + frame["event_id"]
    return keys.is_in([k for (k,) in named]).fill_null(False).to_numpy()


def _event_list(col: str = "event_ids") -> list[pl.Expr]:
    return [
        pl.col(col).list.head(MAX_EVENT_IDS).alias("event_ids"),
        pl.col(col).list.len().cast(pl.Int64).alias("event_count"),
    ]


def recipient_window_columns(flagged: pl.DataFrame) -> pl.DataFrame:
    """Alert columns of a finding about one recipient over a window of transfers (the flow
    and first-seen detectors): who, when, which events, how many taxpayers and records."""
    return flagged.select(
        pl.col("recipient_agency").alias("entity_id"),
        "disclosing_agency",
        "recipient_agency",
        pl.lit(None, dtype=pl.String).alias("request_id"),
        pl.lit(None, dtype=pl.String).alias("actor_id"),
        "source_system",
        pl.col("first_at").alias("window_start"),
        pl.col("last_at").alias("window_end"),
        *_event_list(),
        pl.col("subjects").cast(pl.Int64).alias("subjects_affected"),
        pl.col("records").cast(pl.Int64).alias("records_affected"),
        pl.col("citations"),
    )
