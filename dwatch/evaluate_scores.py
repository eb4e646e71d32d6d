"""The metrics of ``dwatch evaluate`` on labelled rows: which rows touch a scenario, average
precision per detector and scenario, and the event-level rules + ML ranking.

A row "touches" a scenario when any of its event keys (``source_system`` + chr(31) +
``event_id``) is listed for that scenario in the generator's ``ground_truth.json``.
"""

from __future__ import annotations

from typing import Any

import polars as pl
from sklearn.metrics import average_precision_score


def _labels(truth: dict[str, Any]) -> pl.DataFrame:
    rows = [
        (inst["scenario"], inst["instance_id"], src, eid)
        for inst in truth["instances"]
        for src, eid in inst["events"]
    ]
    return pl.DataFrame(
        rows, schema=["scenario", "instance_id", "source_system", "event_id"], orient="row"
    )


def _row_touches(rows: pl.DataFrame, labels: pl.DataFrame) -> pl.DataFrame:
    """rows(row_id, event_keys: list[str]) -> (row_id, scenario, instance_id) for every touch."""
    keyed = labels.with_columns(
        (pl.col("source_system") + "\x1f" + pl.col("event_id")).alias("key")
    )
    return (
        rows.select("row_id", pl.col("event_keys").alias("key"))
        .explode("key")
        .join(keyed.select("key", "scenario", "instance_id"), on="key", how="inner")
        .select("row_id", "scenario", "instance_id")
        .unique()
    )


def _average_precision(ml: pl.DataFrame, touch: pl.DataFrame, det_id: str, scenario: str) -> float:
    """AP of one detector's scores for one scenario; other scenarios' rows left out."""
    if ml.height == 0:
        return float("nan")
    rows = ml.filter(pl.col("detector_id") == det_id).select("row_id", "score")
    pos = touch.filter(pl.col("scenario") == scenario)["row_id"].unique()
    other = touch.filter(pl.col("scenario") != scenario)["row_id"].unique()
    rows = rows.filter(
        ~pl.col("row_id").is_in(other.to_list()) | pl.col("row_id").is_in(pos.to_list())
    )
    y = rows["row_id"].is_in(pos.to_list()).to_numpy()
    if y.sum() == 0 or y.all():
        return float("nan")
    return float(average_precision_score(y, rows["score"].to_numpy()))


def _combined_event_scores(ml: pl.DataFrame, rules: pl.DataFrame) -> pl.DataFrame:
    """Per event key: 3 if a rule alert is about it (its finding events), else the best ML score: the row's
    percentile rank within its detector (0..1), plus 1 when the row is over its threshold
    (an alert), so alerts of a detector with few rows are not drowned by the top ranks of a
    detector with many."""
    parts = []
    if ml.height:
        ranked = ml.with_columns(
            (
                pl.col("score").rank("average").over("detector_id") / pl.len().over("detector_id")
                + pl.col("alerted").cast(pl.Float64)
            ).alias("s")
        )
        parts.append(ranked.select(pl.col("event_keys").alias("key"), "s").explode("key"))
    if rules.height:
        parts.append(
            rules.select(pl.col("finding_keys").alias("key"))
            .explode("key")
            .with_columns(pl.lit(3.0).alias("s"))
        )
    if not parts:
        return pl.DataFrame(schema={"key": pl.String, "s": pl.Float64})
    return pl.concat(parts, how="vertical_relaxed").group_by("key").agg(pl.col("s").max())


def _event_ap(scores: pl.DataFrame, positives: set[str], others: set[str]) -> float:
    frame = scores.filter(~pl.col("key").is_in(list(others)))
    y = frame["key"].is_in(list(positives)).to_numpy()
    if y.sum() == 0 or y.all():
        return float("nan")
    return float(average_precision_score(y, frame["s"].to_numpy()))
