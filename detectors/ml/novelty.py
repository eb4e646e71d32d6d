"""``ml.first_seen_combination``: a recipient, authority, purpose and channel never seen
together in the training window.

A new combination is ranked by what stood behind it (:mod:`detectors.ml.first_contact`):
a first contact answering the recipient's own request, or falling shortly after an
agreement for the pair and authority took effect, is what lawful novelty looks like; one
with neither cover is the surprising kind. Each kind of cover lowers the score by
``cover_discount`` (config params), less than half the gap between "never seen" and the
alert floor, so a covered new combination still alerts, ranked below uncovered ones.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import duckdb
import numpy as np
import polars as pl
from numpy.typing import NDArray
from sklearn.pipeline import Pipeline

from detectors.ml import features, first_contact
from detectors.ml.base import (
    MLDetector,
    ModelContext,
    _day,
    _fmt_int,
    recipient_window_columns,
)
from detectors.ml.estimators import (
    FirstSeenDetector,
)

_COMBINATION = ("recipient_agency", "authority", "purpose", "channel")
# Params of the detector itself (the rest go to FirstSeenDetector), with their defaults.
_COVER_DEFAULTS: dict[str, Any] = {
    "request_event_types": ["request"],
    "agreement_cover_days": 365,
    "cover_discount": 0.1,
}


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

    @property
    def cover_settings(self) -> dict[str, Any]:
        return {k: self.settings.params.get(k, v) for k, v in _COVER_DEFAULTS.items()}

    def scoring_frame(
        self,
        con: duckdb.DuckDBPyConnection,
        window_from: datetime | None,
        window_to: datetime | None,
    ) -> pl.DataFrame:
        cover = self.cover_settings
        return first_contact.combination_cover_frame(
            con,
            event_types=self.event_types,
            request_event_types=list(cover["request_event_types"]),
            agreement_days=int(cover["agreement_cover_days"]),
            window_from=window_from,
            window_to=window_to,
        )

    def build_pipeline(self) -> Pipeline:
        params = {k: v for k, v in self.settings.params.items() if k not in _COVER_DEFAULTS}
        return Pipeline([("model", FirstSeenDetector(**params))])

    def anomaly_scores(
        self, model: Pipeline, frame: pl.DataFrame, threads: int = 2
    ) -> NDArray[np.float64]:
        """The novelty score, lowered by ``cover_discount`` for each kind of cover the
        first contact had (every transfer answered the recipient's request; a newly
        effective agreement). Frames without cover columns (training) are scored as is."""
        scores = super().anomaly_scores(model, frame, threads)
        if frame.height == 0 or "answered" not in frame.columns:
            return scores
        covers = _covers(frame).to_numpy().astype(np.float64)
        return scores - float(self.cover_settings["cover_discount"]) * covers

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
            cover = self._cover_words(row)
            texts.append(
                f"New combination: {row['recipient_agency']} received data under {row['authority']} "
                f"for purpose {row['purpose']} over {row['channel']} ({row['transfers']} transfer(s), "
                f"{_fmt_int(row['records'])} records, {_day(row['first_at'])} to {_day(row['last_at'])}). "
                f"Seen {int(seen[i])} time(s) in the training window ({window}); {history}. {cover}"
            )
            evidence.append(
                {
                    "combination": {c: row[c] for c in _COMBINATION},
                    "records": row["records"],
                    "transfers": row["transfers"],
                    "seen_in_training": int(seen[i]),
                    "recipient_known_combinations": n_known,
                    "training_window": window,
                    "answered_requests": row.get("answered"),
                    "cover_agreement": row.get("cover_agreement"),
                    "cover_effective_from": _date(row.get("cover_effective_from")),
                    "unusual_features": [
                        {"feature": "combination", "seen_in_training": int(seen[i])}
                    ],
                }
            )
        return texts, evidence

    def _cover_words(self, row: dict[str, Any]) -> str:
        """What covered the first contact, or that nothing did."""
        if "answered" not in row:
            return ""
        days = int(self.cover_settings["agreement_cover_days"])
        who, auth = row["recipient_agency"], row["authority"]
        answered, transfers = int(row["answered"] or 0), int(row["transfers"])
        if row.get("cover_agreement"):
            agreement = (
                f"agreement {row['cover_agreement']} for {auth} took effect "
                f"{_date(row['cover_effective_from'])}, before the first contact"
            )
        else:
            agreement = (
                f"no agreement effective for this pair under {auth} took effect in the "
                f"{days} days before the first contact"
            )
        if answered == transfers:
            request = f"all {transfers} transfer(s) answered a request {who} logged before them"
        elif answered:
            request = f"only {answered} of {transfers} transfer(s) answered a request from {who}"
        else:
            request = f"no transfer answered a request from {who} on record"
        covered = bool(row.get("cover_agreement")) or answered == transfers
        lead = "Covered first contact" if covered else "Uncovered first contact"
        return f"{lead}: {agreement}; {request}."

    def alert_columns(self, flagged: pl.DataFrame) -> pl.DataFrame:
        return recipient_window_columns(flagged)


def _date(value: Any) -> str | None:
    """A timestamp's calendar day (UTC, as stored); None stays None."""
    if value is None:
        return None
    return value.date().isoformat() if isinstance(value, datetime) else str(value)


def _covers(frame: pl.DataFrame) -> pl.Series:
    """Kinds of cover per row (0-2): every transfer answered a request from the recipient;
    a newly effective agreement for the pair and authority."""
    return frame.select(
        (
            (pl.col("answered").fill_null(0) >= pl.col("transfers")).cast(pl.Int8)
            + pl.col("cover_agreement").is_not_null().cast(pl.Int8)
        ).alias("covers")
    )["covers"]
