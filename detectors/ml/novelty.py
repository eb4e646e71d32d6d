"""``ml.first_seen_combination``: a recipient, authority, purpose and channel never seen
together in the training window."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import duckdb
import numpy as np
import polars as pl
from numpy.typing import NDArray
from sklearn.pipeline import Pipeline

from detectors.ml import features
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
        return recipient_window_columns(flagged)
