"""The ML detectors: for each, its features, its pipeline and how its alerts read.

A detector subclasses :class:`MLDetector` and is registered by being defined (no central
list to edit); tests loop over :data:`DETECTORS`. The pipelines are plain scikit-learn;
everything about the store and alerts stays on this side of the adapter.

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
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import IsolationForest
from sklearn.pipeline import Pipeline

from detectors.alerts import ALERT_COLUMNS, make_alert_id
from detectors.ml import features
from detectors.ml.estimators import (
    ConditionalRarityEncoder,
    CyclicalEncoder,
    FirstSeenDetector,
    GroupDeviationEncoder,
)
from detectors.ml.rhythm import FlowRhythmSurprise, cadence_label, class_name, day_kind
from detectors.ml.surprise import ConditionalSurprise, CountRateSurprise

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
        return (
            f"Score {score:.1f}; alert floor {self.threshold:.1f}, set so that at most "
            f"{floor['false_alarms_per_10k']:g} alert(s) per 10,000 lawful {unit} would have "
            f"fired on the training window ({window}, each half scored by a model fitted on the "
            f"other: {floor['training_alerts']:,} alert(s) over "
            f"{_fmt_int(floor['training_events'])} {unit}, about "
            f"{floor['expected_per_10k']:.2f} per 10,000{_set_aside(floor, unit)})."
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
    # False: the model's own offset_ is the threshold (novelty is not a percentile).
    percentile_threshold: ClassVar[bool] = True
    # Scoring a window in operation also rescores this many days before it: rows whose
    # features look ahead (a week starting on the day) change once later days arrive.
    rescore_days: ClassVar[int] = 0
    # What the false-alarm rate of the alert floor counts (events_per_row sums them).
    event_unit: ClassVar[str] = "transfers"

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
        keys = flagged.select(self.key_columns).rows()
        ids = [make_alert_id(self.detector_id, *(_day(k) for k in key)) for key in keys]
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


# ------------------------------------------------------------------------------ 1. transfers

# What each model feature means, for explanations.
_FEATURE_LABELS: dict[str, str] = {
    "given_recipient__authority_code_given_recipient_code_rarity": "authority for this recipient",
    "given_recipient__purpose_code_given_recipient_code_rarity": "purpose for this recipient",
    "given_recipient_size__channel_enc_code_given_recipient_size_code_rarity": (
        "channel for this recipient and transfer size"
    ),
    "given_recipient_size__elements_code_given_recipient_size_code_rarity": (
        "data elements for this recipient and transfer size"
    ),
    "given_sender__utc_hour_given_sender_code_rarity": "hour of day for the sending agency",
    "given_sender__local_weekday_given_sender_code_rarity": "day of week for the sending agency",
    "clock__local_hour_sin": "local time of day",
    "clock__local_hour_cos": "local time of day",
    "volume__log_records_vs_group": "record volume for this recipient",
}

_WEEKDAYS = ("", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def _when(local: Any, zone: str) -> str:
    """'at 03:12 local time (America/New_York) on Sunday 2025-02-09'."""
    if local is None:
        return "at an unknown time"
    return (
        f"at {local:%H:%M} local time ({zone}) on {_WEEKDAYS[local.isoweekday()]} {local:%Y-%m-%d}"
    )


def _transfer_evidence(
    row: dict[str, Any], unusual: list[dict[str, Any]], median_records: Any
) -> dict[str, Any]:
    return {
        "local_time": str(row["local_ts"]),
        "zone": row["zone"],
        "records": row["record_count"],
        "channel": row["channel"],
        "authority": row["authority"],
        "purpose": row["purpose"],
        "data_elements": row["elements"],
        "channel_detail": row["channel_enc"],
        "unusual_features": unusual,
        "training_median_records": median_records,
    }


class TransferIsolation(MLDetector):
    """Isolation forest over single transfers: volume, local clock, channel, elements, rarity."""

    detector_id = "ml.transfer_isolation"
    title = "Unusual transfer"
    entity_type = "event"
    feature_columns = (
        "recipient", "recipient_code", "recipient_size_code", "authority_code", "purpose_code",
        "channel_enc_code", "elements_code", "sender_code", "utc_hour", "local_weekday",
        "local_hour", "log_records",
    )  # fmt: skip
    # Every rarity is *conditional* (on the recipient, or on the sending agency): a rare but
    # regular recipient is not an anomaly, its never-used channel is. Recipients never seen
    # at all fall back to overall rarity (and are the first-seen detector's job too).
    key_columns = ("source_system", "event_id")

    def scoring_frame(
        self,
        con: duckdb.DuckDBPyConnection,
        window_from: datetime | None,
        window_to: datetime | None,
    ) -> pl.DataFrame:
        return features.transfer_frame(
            con,
            event_types=self.event_types,
            window_from=window_from,
            window_to=window_to,
            ordered=False,
        )

    def training_frame(
        self,
        con: duckdb.DuckDBPyConnection,
        window_from: datetime | None,
        window_to: datetime | None,
    ) -> pl.DataFrame:
        return features.transfer_frame(
            con, event_types=self.event_types, window_from=window_from, window_to=window_to
        )

    def build_pipeline(self) -> Pipeline:
        columns = ColumnTransformer(
            [
                (
                    "given_recipient",
                    ConditionalRarityEncoder(),
                    ["recipient_code", "authority_code", "purpose_code"],
                ),
                (
                    "given_recipient_size",
                    ConditionalRarityEncoder(),
                    ["recipient_size_code", "channel_enc_code", "elements_code"],
                ),
                (
                    "given_sender",
                    ConditionalRarityEncoder(),
                    ["sender_code", "utc_hour", "local_weekday"],
                ),
                ("clock", CyclicalEncoder(period=24.0), ["local_hour"]),
                # Against the recipient's own 99th percentile, in units of at least a factor e:
                # its regular bulk runs, heavy-tailed as they are, stay normal.
                (
                    "volume",
                    GroupDeviationEncoder(n_key_columns=1, baseline_quantile=0.99, min_scale=1.0),
                    ["recipient", "log_records"],
                ),
            ]
        )
        params = {"n_estimators": 100, "random_state": 0, **self.settings.params}
        return Pipeline([("features", columns), ("model", IsolationForest(**params))])

    def events_per_row(self, frame: pl.DataFrame) -> NDArray[np.float64]:
        """How many of ``event_unit`` each row stands for (one transfer per row here)."""
        return np.ones(frame.height)

    def rule_flagged(
        self, con: duckdb.DuckDBPyConnection, frame: pl.DataFrame
    ) -> NDArray[np.bool_] | None:
        """Transfers an open rule alert names (as its finding or as part of its chain)."""
        return rule_flagged_events(con, frame, self.event_types)

    def training_metadata(self, model: Pipeline, frame: pl.DataFrame) -> dict[str, Any]:
        sample = frame.select(self.feature_columns)
        if sample.height > 200_000:
            sample = sample.sample(200_000, seed=0)
        xt = model[:-1].transform(sample)
        median = np.median(xt, axis=0)
        spread = np.quantile(xt, 0.75, axis=0) - np.quantile(xt, 0.25, axis=0)
        return {
            "feature_names": [str(n) for n in model[:-1].get_feature_names_out()],
            "feature_median": median.tolist(),
            "feature_spread": np.maximum(spread, 0.1).tolist(),
            "median_records": float(frame["record_count"].median() or 0),
            "training_transfers": frame.height,
        }

    def explain(
        self, flagged: pl.DataFrame, scores: NDArray[np.float64], model: Pipeline, ctx: ModelContext
    ) -> tuple[list[str], list[dict[str, Any]]]:
        meta = ctx.metadata
        names = meta.get("feature_names") or [str(n) for n in model[:-1].get_feature_names_out()]
        if flagged.height == 0:
            return [], []
        xt = model[:-1].transform(flagged.select(self.feature_columns))
        median = np.asarray(meta.get("feature_median", np.median(xt, axis=0)))
        spread = np.asarray(meta.get("feature_spread", np.ones(xt.shape[1])))
        deviation = np.abs(xt - median) / spread
        texts: list[str] = []
        evidence: list[dict[str, Any]] = []
        for i, row in enumerate(flagged.iter_rows(named=True)):
            order = np.argsort(-deviation[i])
            reasons: list[str] = []
            unusual: list[dict[str, Any]] = []
            seen_labels: set[str] = set()
            for j in order[:6]:
                label = _FEATURE_LABELS.get(names[j], names[j])
                if label in seen_labels or deviation[i, j] < 1.0:
                    continue
                seen_labels.add(label)
                reasons.append(self._reason(names[j], label, row, xt[i, j]))
                unusual.append(
                    {
                        "feature": names[j],
                        "value": round(float(xt[i, j]), 4),
                        "training_median": round(float(median[j]), 4),
                    }
                )
                if len(reasons) == 3:
                    break
            when = _when(row["local_ts"], row["zone"])
            texts.append(
                f"{row['disclosing_agency']} sent {_fmt_int(row['record_count'])} records to "
                f"{row['recipient_agency']} under {row['authority']} over {row['channel']} {when} "
                f"(event {row['event_id']}). Unusual: {'; '.join(reasons) or 'the combination as a whole'}. "
                f"Compared with {_fmt_int(meta.get('training_transfers'))} training transfers "
                f"(median {_fmt_int(meta.get('median_records'))} records). "
                f"{ctx.floor_words(scores[i])}"
            )
            evidence.append(_transfer_evidence(row, unusual, meta.get("median_records")))
        return texts, evidence

    @staticmethod
    def _reason(name: str, label: str, row: dict[str, Any], value: float) -> str:
        if name.endswith("_rarity"):
            column = name.split("__", 1)[-1].removesuffix("_rarity").split("_given_")[0]
            shown = row.get(column.removesuffix("_code"), "")
            if column == "utc_hour":
                shown = f"{shown}:00 UTC"
            elif column == "local_weekday":
                shown = _WEEKDAYS[int(shown)] if str(shown).isdigit() else shown
            share = float(np.exp(-value))
            return f"{label} '{shown}' (about {share:.2%} of comparable training transfers)"
        if name.startswith("clock__"):
            return f"{label} {row['local_ts']:%H:%M}"
        if name == "volume__log_records_vs_group":
            return (
                f"{label}: {_fmt_int(row['record_count'])} records,"
                f" {value:+.1f} robust SD from its 99th percentile"
            )
        return label

    def alert_columns(self, flagged: pl.DataFrame) -> pl.DataFrame:
        return flagged.select(
            (pl.col("source_system") + ":" + pl.col("event_id")).alias("entity_id"),
            "disclosing_agency",
            "recipient_agency",
            "request_id",
            "actor_id",
            "source_system",
            pl.col("occurred_at").alias("window_start"),
            pl.col("occurred_at").alias("window_end"),
            pl.concat_list(pl.col("event_id")).alias("event_ids"),
            pl.lit(1, dtype=pl.Int64).alias("event_count"),
            pl.lit(None, dtype=pl.Int64).alias("subjects_affected"),
            pl.col("record_count").cast(pl.Int64).alias("records_affected"),
            pl.when(pl.col("authority_id").is_not_null())
            .then(pl.concat_list(pl.col("authority_id")))
            .otherwise(pl.lit([], dtype=pl.List(pl.String)))
            .alias("citations"),
        )


class TransferSurprise(TransferIsolation):
    """How unlikely a single transfer is, term by term, under the history of comparable ones.

    A naive-Bayes density over the transfer's channel (with encryption) and data elements
    given the recipient and the size of the transfer, its local hour given the flow
    (sender and recipient) and the size, its weekday given the sending agency and the size,
    its size given the recipient, and its authority and purpose given the recipient; each
    term backs off to coarser history when the finer one is thin (the hour: the flow with
    that size, then the sending agency with that size, then the sending agency). The score
    is the transfer's negative log-likelihood: three moderately rare facts about one
    transfer add up, which a forest's path length does not. The hour is judged per flow
    because a bulk flow runs at its own scheduled hour: a sender whose other flows run at
    03:00 does not make 03:00 usual for a flow that has only ever run in the evening. (The
    weekday stays per sender: which days a flow runs on is ``ml.recipient_volume``'s
    cadence, and a per-flow weekday term made ad-hoc weekend work of daily flows as
    surprising as misuse, lifting the alert floor over it.)
    """

    detector_id = "ml.transfer_surprise"
    title = "Unlikely transfer"
    feature_columns = (
        "channel_enc_code", "elements_code", "local_hour_of_day", "local_weekday", "size_class",
        "authority_purpose_code", "recipient_code", "sender_code", "recipient_size_code",
        "sender_size_code",
    )  # fmt: skip
    # (value column, key chain coarse -> fine), by position in feature_columns.
    terms = (
        (0, ((4,), (8,))),  # channel given size; given recipient and size
        (1, ((4,), (8,))),  # data elements likewise
        (2, ((7,), (9,), (9, 8))),  # local hour given sender; with size; the flow with size
        (3, ((7,), (9,))),  # weekday given sender; given sender and size
        (4, ((6,),)),  # size given recipient
        (5, ((6,),)),  # authority and purpose given recipient
    )

    def build_pipeline(self) -> Pipeline:
        terms = [(v, tuple(tuple(level) for level in chain)) for v, chain in self.terms]
        return Pipeline([("model", ConditionalSurprise(terms=terms, **self.settings.params))])

    def events_per_row(self, frame: pl.DataFrame) -> NDArray[np.float64]:
        """How many of ``event_unit`` each row stands for (one transfer per row here)."""
        return np.ones(frame.height)

    def training_metadata(self, model: Pipeline, frame: pl.DataFrame) -> dict[str, Any]:
        return {
            "median_records": float(frame["record_count"].median() or 0),
            "training_transfers": frame.height,
        }

    def explain(
        self, flagged: pl.DataFrame, scores: NDArray[np.float64], model: Pipeline, ctx: ModelContext
    ) -> tuple[list[str], list[dict[str, Any]]]:
        if flagged.height == 0:
            return [], []
        x = flagged.select(self.feature_columns)
        est: ConditionalSurprise = model[-1]
        surprise = est.term_surprise(x)
        key_n, pair_n = est.term_counts(x)
        texts, evidence = [], []
        for i, row in enumerate(flagged.iter_rows(named=True)):
            local = row["local_ts"]
            size = f"~{10 ** int(row['size_class']):,}-record"
            shown = (
                f"channel {row['channel_enc']}",
                f"data elements {row['elements']}",
                f"{local:%H}:00 local time" if local is not None else "the hour",
                _WEEKDAYS[local.isoweekday()] if local is not None else "the weekday",
                f"a {size} transfer",
                f"{row['authority']} for {row['purpose']}",
            )
            compared = (
                f"{size} transfers to {row['recipient_agency']}",
                f"{size} transfers to {row['recipient_agency']}",
                f"{size} transfers from {row['disclosing_agency']} to {row['recipient_agency']}",
                f"{size} transfers by {row['disclosing_agency']}",
                f"transfers to {row['recipient_agency']}",
                f"transfers to {row['recipient_agency']}",
            )
            order = np.argsort(-surprise[i])
            reasons, unusual = [], []
            for t in order:
                if surprise[i, t] < 2.0 or len(reasons) == 4:
                    continue
                reasons.append(
                    f"{shown[t]}: {_fmt_int(pair_n[i, t])} of {_fmt_int(key_n[i, t])} comparable "
                    f"training transfers ({compared[t]} or, where those are few, wider)"
                )
                unusual.append(
                    {
                        "feature": ("channel", "data_elements", "local_hour", "weekday",
                                    "size", "authority_purpose")[t],
                        "surprise_nats": round(float(surprise[i, t]), 2),
                        "seen": int(pair_n[i, t]),
                        "of": int(key_n[i, t]),
                    }
                )  # fmt: skip
            when = _when(local, row["zone"])
            texts.append(
                f"{row['disclosing_agency']} sent {_fmt_int(row['record_count'])} records to "
                f"{row['recipient_agency']} under {row['authority']} over {row['channel_enc']} {when} "
                f"(event {row['event_id']}). Unusual: {'; '.join(reasons) or 'the combination as a whole'}. "
                f"Surprise {scores[i]:.1f} nats (its negative log-likelihood under "
                f"{_fmt_int(ctx.metadata.get('training_transfers'))} training transfers). "
                f"{ctx.floor_words(scores[i])}"
            )
            evidence.append(_transfer_evidence(row, unusual, ctx.metadata.get("median_records")))
        return texts, evidence


# ----------------------------------------------------------------------- 2. recipient volume


class RecipientVolume(MLDetector):
    """A flow (sender, recipient, authority) on one local day of the sender, against that
    flow's own rhythm: the days it runs on (nightly, working days, weekly, monthly, in the
    sender's zone) and, on those days, its usual transfers *and* records (median and MAD
    of the log counts over comparable days, raised on busier days of the same kind and
    when the rest of the sender's traffic is heavier; never lowered), with a minimum
    absolute excess per measure (``min_excess``: transfers, records). One 30x extract at
    the usual number of transfers is a records anomaly; a nightly flow on a Sunday is not
    one; a working-day flow on a Sunday is. A flow with too little history is not judged
    (new pairs are the first-seen detector's business). See :mod:`detectors.ml.rhythm`."""

    detector_id = "ml.recipient_volume"
    title = "Volume or cadence unusual for a flow"
    entity_type = "recipient"
    event_unit = "transfers"
    feature_columns = (
        "sender_code", "pair_code", "day_number", "transfers_n", "records_n",
        "sender_transfers", "sender_records",
    )  # fmt: skip
    key_columns = ("disclosing_agency", "recipient_agency", "authority", "day")

    def scoring_frame(
        self,
        con: duckdb.DuckDBPyConnection,
        window_from: datetime | None,
        window_to: datetime | None,
    ) -> pl.DataFrame:
        return features.pair_day_frame(
            con, event_types=self.event_types, window_from=window_from, window_to=window_to
        )

    def events_per_row(self, frame: pl.DataFrame) -> NDArray[np.float64]:
        return frame["transfers"].cast(pl.Float64).to_numpy()

    def build_pipeline(self) -> Pipeline:
        params = {"min_history": 8, "min_excess": [3.0, 100.0], **self.settings.params}
        params["count_measures"] = 1  # transfers are counts; records are heavy-tailed
        model = FlowRhythmSurprise(n_key_columns=2, with_load=True, **params)
        return Pipeline([("model", model)])

    def explain(
        self, flagged: pl.DataFrame, scores: NDArray[np.float64], model: Pipeline, ctx: ModelContext
    ) -> tuple[list[str], list[dict[str, Any]]]:
        if flagged.height == 0:
            return [], []
        est: FlowRhythmSurprise = model[-1]
        ex = est.explain(flagged.select(self.feature_columns))
        texts, evidence = [], []
        for i, row in enumerate(flagged.iter_rows(named=True)):
            f = int(ex["flow_index"][i])
            runs = cadence_label(
                float(ex["active_days"][i]), float(ex["span_days"][i]), est.class_active_[max(f, 0)]
            )
            kind, measures = class_name(int(ex["cadence_class"][i])), ("transfers", "records")
            unusual = [
                f"{name} ({ex['volume'][i, m]:.1f} nats of surprise: {_fmt_int(row[name])} against "
                f"about {_fmt_int(ex['expected'][i, m])} expected)"
                for m, name in enumerate(measures)
                if ex["volume"][i, m] > 0
            ]
            if ex["cadence"][i] > 0.5:
                unusual.append(
                    f"the day: it ran on {int(ex['class_active'][i])} of the "
                    f"{int(ex['class_days'][i])} {kind} in its history "
                    f"({ex['cadence'][i]:.1f} nats of surprise)"
                )
            texts.append(
                f"{row['recipient_agency']} received {_fmt_int(row['transfers'])} transfer(s) with "
                f"{_fmt_int(row['records'])} records from {row['disclosing_agency']} under "
                f"{row['authority']} on {_day(row['day'])} ({day_kind(int(row['day_number']))}, "
                f"{row['zone']}). This flow runs {runs} ({int(ex['active_days'][i])} of "
                f"{int(ex['span_days'][i])} days in its training history); on days of this kind "
                f"it sends on average {ex['usual'][i, 0]:.1f} transfers (dispersion "
                f"{ex['spread'][i, 0]:.1f}x Poisson) and up to {_fmt_int(ex['usual'][i, 1])} "
                f"records on {100 * est.upper_quantile:g}% of days; the rest of the sender's "
                "traffic that day "
                f"{ex['load'][i, 0]:.1f}x its usual, so about {ex['expected'][i, 0]:.1f} transfers"
                f" and {_fmt_int(ex['expected'][i, 1])} records expected. Unusual: "
                f"{'; '.join(unusual) or 'the day as a whole'}; as rare as 1 in "
                f"{_fmt_int(min(np.exp(scores[i]), 1e15))} training flow-days. "
                f"{ctx.floor_words(scores[i])}"
            )
            evidence.append(
                {
                    "records": row["records"],
                    "transfers": row["transfers"],
                    "baseline": {
                        "compared_with": "this sender-recipient-authority's own days",
                        "cadence": runs,
                        "active_days": int(ex["active_days"][i]),
                        "span_days": int(ex["span_days"][i]),
                        "mean_transfers": round(float(ex["usual"][i, 0]), 2),
                        "transfers_dispersion": round(float(ex["spread"][i, 0]), 2),
                        "records_upper_quantile": est.upper_quantile,
                        "records_at_upper_quantile": round(float(ex["usual"][i, 1]), 1),
                        "records_spread_ln": round(float(ex["spread"][i, 1]), 3),
                        "sender_load": [round(float(v), 2) for v in ex["load"][i]],
                        "expected_transfers": round(float(ex["expected"][i, 0]), 2),
                        "expected_records": round(float(ex["expected"][i, 1]), 1),
                    },
                    "unusual_features": [
                        *(
                            {
                                "feature": name,
                                "surprise_nats": round(float(ex["volume"][i, m]), 2),
                                "rarity_nats": round(float(ex["rarity"][i, 1 + m]), 2),
                            }
                            for m, name in enumerate(measures)
                        ),
                        {
                            "feature": "cadence",
                            "surprise_nats": round(float(ex["cadence"][i]), 2),
                            "rarity_nats": round(float(ex["rarity"][i, 0]), 2),
                            "day_kind": kind,
                            "ran_on": int(ex["class_active"][i]),
                            "of": int(ex["class_days"][i]),
                        },
                    ],
                }
            )
        return texts, evidence

    def alert_columns(self, flagged: pl.DataFrame) -> pl.DataFrame:
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


# ---------------------------------------------------------------------------- 3. actor peers

_LEVEL_WORDS_ACTOR = ("all users", "users of the same agency", "peers in the same agency and role")
_WINDOW_WORDS = ("the 7 days to then", "the 7 days from then")
# The row's column for each (measure, window): taxpayers then records.
_WINDOW_COLUMNS = (("subjects_7d", "subjects_next_7d"), ("records_7d", "records_next_7d"))


class ActorPeers(MLDetector):
    """A recipient user's daily reads (distinct taxpayers and records) against the larger of
    their own usual rate and the median of peers in the same agency and role, at the pace
    of the agency's workload that day, or, on days that are themselves elevated, sustained
    excess over the 7 days ending or starting on the day (a retrospective scan: a day scored
    again once later days are in the logs sees the week after it), whichever is the
    strongest evidence."""

    detector_id = "ml.actor_peers"
    title = "User reading far more than peers"
    entity_type = "actor"
    feature_columns = (
        "agency_code", "peer_group_code", "actor_code", "day_number",
        "subjects_n", "subjects_7d_n", "subjects_next_7d_n",
        "agency_subjects", "agency_subjects_7d", "agency_subjects_next_7d",
        "records_n", "records_7d_n", "records_next_7d_n",
        "agency_records", "agency_records_7d", "agency_records_next_7d",
    )  # fmt: skip
    key_columns = ("recipient_agency", "actor_id", "day")
    rescore_days = features.WINDOW_LOOKBACK_DAYS
    event_unit = "access events"

    def events_per_row(self, frame: pl.DataFrame) -> NDArray[np.float64]:
        return frame["events"].cast(pl.Float64).to_numpy()

    def scoring_frame(
        self,
        con: duckdb.DuckDBPyConnection,
        window_from: datetime | None,
        window_to: datetime | None,
    ) -> pl.DataFrame:
        return features.actor_day_frame(
            con, event_types=self.event_types, window_from=window_from, window_to=window_to
        )

    def build_pipeline(self) -> Pipeline:
        params = {"min_history": 5, **self.settings.params}
        model = CountRateSurprise(n_key_columns=3, with_load=True, windows=2, **params)
        return Pipeline([("model", model)])

    def explain(
        self, flagged: pl.DataFrame, scores: NDArray[np.float64], model: Pipeline, ctx: ModelContext
    ) -> tuple[list[str], list[dict[str, Any]]]:
        if flagged.height == 0:
            return [], []
        ex = model[-1].explain(flagged.select(self.feature_columns))
        texts, evidence = [], []
        for i, row in enumerate(flagged.iter_rows(named=True)):
            m = int(np.argmax(np.maximum(ex["day_surprise"][i], ex["window_surprise"][i])))
            what = ("distinct taxpayers", "records")[m]
            wi = int(np.argmax(ex["window_surprises"][i, m]))
            own = ex["own"][i, m]
            own_text = (
                f"their own usual {own:.2f} a day"
                if np.isfinite(own)
                else "no history of their own"
            )
            compared = _LEVEL_WORDS_ACTOR[min(int(ex["level"][i]), 2)]
            unusual = []
            if ex["day_surprise"][i, m] > 0:
                unusual.append(f"that day ({ex['day_surprise'][i, m]:.1f} nats of surprise)")
            if ex["window_surprise"][i, m] > 0:
                unusual.append(
                    f"{_WINDOW_WORDS[wi]} ({ex['window_surprise'][i, m]:.1f} nats: "
                    f"{_fmt_int(row[_WINDOW_COLUMNS[m][wi]])} {what}, about "
                    f"{ex['mu_window'][i, m, wi]:.1f} expected)"
                )
            texts.append(
                f"{row['recipient_agency']} user {row['actor_id']} ({row['role']}) accessed "
                f"{_fmt_int(row['records'])} records of {_fmt_int(row['subjects'])} distinct taxpayers "
                f"on {_day(row['day'])} ({_fmt_int(row['records_7d'])} records, "
                f"{_fmt_int(row['subjects_7d'])} taxpayers in the 7 days to then); {compared} "
                f"({int(ex['peer_n'][i])} users): median {ex['peer'][i, m]:.2f}, 99th percentile "
                f"{ex['peer_p99'][i, m]:.2f} {what} a day; {own_text}; the agency's workload that "
                f"day {ex['load'][i, m]:.1f}x usual, so about {ex['mu'][i, m]:.1f} {what} expected "
                f"that day. Unusual: {what}, {' and '.join(unusual) or 'volume'}. "
                f"{ctx.floor_words(scores[i])}"
            )
            evidence.append(
                {
                    "records": row["records"],
                    "subjects": row["subjects"],
                    "records_7d": row["records_7d"],
                    "subjects_7d": row["subjects_7d"],
                    "events": row["events"],
                    "role": row["role"],
                    "baseline": {
                        "compared_with": compared,
                        "peer_users": int(ex["peer_n"][i]),
                        "peer_median_per_day": [round(float(v), 3) for v in ex["peer"][i]],
                        "peer_p99_per_day": [round(float(v), 3) for v in ex["peer_p99"][i]],
                        "own_per_day": [
                            round(float(v), 3) if np.isfinite(v) else None for v in ex["own"][i]
                        ],
                        "agency_load": round(float(ex["load"][i, m]), 2),
                        "expected_day": [round(float(v), 2) for v in ex["mu"][i]],
                        "expected_7d_to_then": [
                            round(float(v), 2) for v in ex["mu_window"][i, :, 0]
                        ],
                        "expected_7d_from_then": [
                            round(float(v), 2) for v in ex["mu_window"][i, :, 1]
                        ],
                        "measures": ["distinct_taxpayers", "records"],
                    },
                    "unusual_features": [
                        {
                            "feature": name,
                            "day_surprise_nats": round(float(ex["day_surprise"][i, j]), 2),
                            "week_to_then_surprise_nats": round(
                                float(ex["window_surprises"][i, j, 0]), 2
                            ),
                            "week_from_then_surprise_nats": round(
                                float(ex["window_surprises"][i, j, 1]), 2
                            ),
                        }
                        for j, name in enumerate(("distinct_taxpayers", "records"))
                    ],
                }
            )
        return texts, evidence

    def alert_columns(self, flagged: pl.DataFrame) -> pl.DataFrame:
        return flagged.select(
            (pl.col("recipient_agency") + ":" + pl.col("actor_id")).alias("entity_id"),
            "disclosing_agency",
            "recipient_agency",
            pl.lit(None, dtype=pl.String).alias("request_id"),
            "actor_id",
            "source_system",
            pl.col("first_at").alias("window_start"),
            pl.col("last_at").alias("window_end"),
            *_event_list(),
            pl.col("subjects").cast(pl.Int64).alias("subjects_affected"),
            pl.col("records").cast(pl.Int64).alias("records_affected"),
            pl.lit([], dtype=pl.List(pl.String)).alias("citations"),
        )


# ---------------------------------------------------------------------------- 4. novelty

_COMBINATION = ("recipient_agency", "authority", "purpose", "channel")


class FirstSeenCombination(MLDetector):
    """A (recipient, authority, purpose, channel) combination never seen in the training window."""

    detector_id = "ml.first_seen_combination"
    title = "Recipient, authority, purpose and channel never seen together"
    entity_type = "recipient"
    feature_columns = _COMBINATION
    key_columns = _COMBINATION
    percentile_threshold = False

    def training_frame(
        self,
        con: duckdb.DuckDBPyConnection,
        window_from: datetime | None,
        window_to: datetime | None,
    ) -> pl.DataFrame:
        # One row per combination and day: the model counts on how many days it was seen.
        return features.combination_frame(
            con,
            event_types=self.event_types,
            window_from=window_from,
            window_to=window_to,
            per_day=True,
        )

    def scoring_frame(
        self,
        con: duckdb.DuckDBPyConnection,
        window_from: datetime | None,
        window_to: datetime | None,
    ) -> pl.DataFrame:
        return features.combination_frame(
            con, event_types=self.event_types, window_from=window_from, window_to=window_to
        )

    def build_pipeline(self) -> Pipeline:
        return Pipeline([("model", FirstSeenDetector(**self.settings.params))])

    def explain(
        self, flagged: pl.DataFrame, scores: NDArray[np.float64], model: Pipeline, ctx: ModelContext
    ) -> tuple[list[str], list[dict[str, Any]]]:
        if flagged.height == 0:
            return [], []
        detector: FirstSeenDetector = model[-1]
        known = detector.combinations_
        seen = detector.seen_counts(flagged.select(self.feature_columns))
        window = f"{_day(ctx.train_from) if ctx.train_from else 'the start'} to {_day(ctx.train_to) if ctx.train_to else 'the end'}"
        texts, evidence = [], []
        for i, row in enumerate(flagged.iter_rows(named=True)):
            prefix = row["recipient_agency"] + "\x1f"
            n_known = int(np.char.startswith(known, prefix).sum()) if known.size else 0
            history = (
                f"{row['recipient_agency']} had {n_known} other known combination(s)"
                if n_known
                else f"{row['recipient_agency']} never appeared at all"
            )
            texts.append(
                f"New combination: {row['recipient_agency']} received data under {row['authority']} "
                f"for purpose {row['purpose']} over {row['channel']} ({row['transfers']} transfer(s), "
                f"{_fmt_int(row['records'])} records, {_day(row['first_at'])} to {_day(row['last_at'])}). "
                f"Seen {int(seen[i])} time(s) in the training window ({window}); {history}."
            )
            evidence.append(
                {
                    "combination": {c: row[c] for c in _COMBINATION},
                    "records": row["records"],
                    "transfers": row["transfers"],
                    "seen_in_training": int(seen[i]),
                    "recipient_known_combinations": n_known,
                    "training_window": window,
                    "unusual_features": [
                        {"feature": "combination", "seen_in_training": int(seen[i])}
                    ],
                }
            )
        return texts, evidence

    def alert_columns(self, flagged: pl.DataFrame) -> pl.DataFrame:
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


# Detectors declared in their own modules register on import (after the base class above).
from detectors.ml import log_coverage as _log_coverage  # noqa: E402, F401
