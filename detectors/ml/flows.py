"""``ml.recipient_volume``: a flow's day against its own rhythm (:mod:`detectors.ml.rhythm`)."""

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
from detectors.ml.rhythm import FlowRhythmSurprise, cadence_label, class_name, day_kind


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
    # Measured at 1M events (20k pair-days): frame 227 B, fit peak 772 B a row.
    train_row_bytes = 1536
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
        return recipient_window_columns(flagged)
