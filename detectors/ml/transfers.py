"""Single transfers: ``ml.transfer_surprise`` (the likelihood model, on) and
``ml.transfer_isolation`` (the first release's isolation forest, off)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import duckdb
import numpy as np
import polars as pl
from numpy.typing import NDArray
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import IsolationForest
from sklearn.pipeline import Pipeline

from detectors.ml import features
from detectors.ml.base import (
    MLDetector,
    ModelContext,
    _fmt_int,
    rule_flagged_events,
)
from detectors.ml.estimators import (
    ConditionalRarityEncoder,
    CyclicalEncoder,
    GroupDeviationEncoder,
)
from detectors.ml.surprise import ConditionalSurprise

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
    row_locator = "event_row"

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
    # Measured at 1M events (80k transfers): frame 355 B, fit peak 258 B a row. Rows of a
    # summary fit: one per distinct feature row (9,917 at 1M).
    train_row_bytes = 1024
    # The model counts values per key: it fits on the window's distinct feature rows with
    # their counts, summed in DuckDB, so its whole training_days window is always read.
    fits_summary = True

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

    def summary_metadata(
        self, con: duckdb.DuckDBPyConnection, query: features.FeatureQuery
    ) -> dict[str, Any]:
        median, transfers = con.execute(
            f"SELECT median(record_count), count(*) FROM ({query.sql}) AS t", query.params
        ).fetchall()[0]
        return {"median_records": float(median or 0), "training_transfers": int(transfers)}

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
