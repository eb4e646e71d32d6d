"""Shared generated data sets (built once per test session) and readers for them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from dwatch.generate import GenerateResult, generate

SMALL = 4_000
SMALL_SCALE = 0.002


def read_events(out_dir: Path) -> pl.DataFrame:
    """Every event file in ``out_dir`` (any format) as one frame; occurred_at kept as text
    for CSV/JSONL and parsed into ``ts`` (UTC) for all."""
    frames = []
    for path in sorted(out_dir.glob("events-*")):
        if path.suffix == ".csv":
            f = pl.read_csv(path, infer_schema=False)
            f = f.with_columns(
                pl.col("sequence_no").cast(pl.Int64),
                pl.col("record_count").cast(pl.Int64),
                pl.col("data_elements").str.json_decode(pl.List(pl.String)),
            )
        elif path.suffix == ".jsonl":
            f = pl.read_ndjson(path, infer_schema_length=None)
        else:
            f = pl.read_parquet(path).with_columns(
                pl.col("occurred_at").dt.strftime("%Y-%m-%dT%H:%M:%SZ")
            )
        f = f.select(
            "event_id", "source_system", "sequence_no", "occurred_at", "event_type",
            "disclosing_agency", "recipient_agency", "actor_id", "actor_role", "request_id",
            pl.col("legal_authority").cast(pl.String), pl.col("purpose").cast(pl.String),
            "data_elements", "record_count", pl.col("taxpayer_tin").cast(pl.String),
            pl.col("channel").cast(pl.String), pl.col("description").cast(pl.String),
            pl.col("agreement_id").cast(pl.String),
        )  # fmt: skip
        frames.append(f.with_columns(pl.lit(path.name).alias("_file")))
    events = pl.concat(frames, how="vertical_relaxed")
    return events.with_columns(
        pl.col("occurred_at").str.to_datetime("%Y-%m-%dT%H:%M:%S%#z", time_zone="UTC").alias("ts")
    )


def read_items(out_dir: Path) -> pl.DataFrame:
    path = next(out_dir.glob("request_items.*"))
    if path.suffix == ".csv":
        return pl.read_csv(path, infer_schema=False).with_columns(pl.col("item_no").cast(pl.Int64))
    if path.suffix == ".jsonl":
        return pl.read_ndjson(path)
    return pl.read_parquet(path)


def truth(result: GenerateResult) -> dict[str, Any]:
    return json.loads(result.ground_truth.read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def small_csv(tmp_path_factory: pytest.TempPathFactory) -> GenerateResult:
    return generate(tmp_path_factory.mktemp("gen-csv"), events=SMALL, seed=11, scale=SMALL_SCALE)


@pytest.fixture(scope="session")
def small_events(small_csv: GenerateResult) -> pl.DataFrame:
    return read_events(small_csv.out_dir)


@pytest.fixture(scope="session")
def medium_parquet(tmp_path_factory: pytest.TempPathFactory) -> GenerateResult:
    # Large enough for per-user and per-day baselines to mean something.
    return generate(
        tmp_path_factory.mktemp("gen-parquet"), events=60_000, seed=3, fmt="parquet", scale=0.003
    )
