"""``ml.actor_peers``: a recipient user's reads against their own habit, their peers and
their agency's workload."""

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
    _event_list,
    _fmt_int,
)
from detectors.ml.surprise import CountRateSurprise

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
    scope_by = features.ACTOR_DAY_PARTITION
    rebuild_by = "actor_id"
    event_unit = "access events"
    # Measured at 1M events (655k user-days): frame 265 B, fit peak 733 B a row (a fit on
    # rows: one whose floor is not a false-alarm rate).
    train_row_bytes = 1536
    # The model learns from sums per user and agency: DuckDB sums them over the whole
    # window and the held-out rows stream in chunks (detectors/ml/count_summary.py).
    fits_summary = True

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
