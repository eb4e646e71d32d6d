"""Scoring streams in chunks and gives the same scores and alerts as scoring whole."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest
from ml_synthetic import END, SPLIT, START, Injected

from detectors.ml import features, run
from detectors.ml.detectors import DETECTORS
from detectors.ml.registry import latest_models, load_config, load_model
from detectors.ml.run import score_detector, score_models, scoring_chunks, train_models

Store = tuple[duckdb.DuckDBPyConnection, Injected, Path]
ENABLED = sorted(d for d, s in load_config().detectors.items() if s.enabled)


def _trained(ml_store: Store) -> tuple[duckdb.DuckDBPyConnection, Path]:
    con, _, models = ml_store
    train_models(con, window_from=START, window_to=SPLIT, models_dir=models)
    return con, models


def _alerts(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    return con.sql(
        "SELECT alert_id, detector_id, score, entity_id, window_start, window_end, event_count,"
        " evidence, explanation, status FROM alerts ORDER BY alert_id"
    ).pl()


def test_chunks_hold_at_most_the_rows_asked_and_every_row_once(ml_store: Store) -> None:
    con = ml_store[0]
    config = load_config()
    features.prepare_zones(con, config.time_zones)
    for detector_id in ENABLED:
        det = DETECTORS[detector_id](config.detectors[detector_id])
        whole = det.scoring_frame(con, START, END)
        chunks = list(scoring_chunks(con, det, START, END, rows=50))
        assert all(c.height <= 50 for c in chunks), detector_id
        if whole.height > 50:
            assert len(chunks) > 1, detector_id
        streamed = pl.concat(chunks)
        keys = list(det.key_columns)
        assert streamed.height == whole.height, detector_id
        assert streamed.select(keys).sort(keys).equals(whole.select(keys).sort(keys)), detector_id


def test_chunked_scores_are_the_scores_of_the_whole_window(ml_store: Store) -> None:
    con, models = _trained(ml_store)
    config = load_config()
    records = latest_models(con)
    features.prepare_zones(con, config.time_zones)
    for detector_id in ENABLED:
        det = DETECTORS[detector_id](config.detectors[detector_id])
        model = load_model(records[detector_id], models)
        frame, whole = score_detector(con, det, model, window_from=START, window_to=END)
        keys = list(det.key_columns)
        expected = frame.select(keys).with_columns(pl.Series("score", whole))
        parts = [
            chunk.select(keys).with_columns(pl.Series("score", det.anomaly_scores(model, chunk)))
            for chunk in scoring_chunks(con, det, START, END, rows=37)
        ]
        got = pl.concat(parts)
        assert got.height == expected.height > 0, detector_id
        joined = expected.join(got, on=keys, how="left", suffix="_chunked", nulls_equal=True)
        np.testing.assert_array_equal(
            joined["score"].to_numpy(), joined["score_chunked"].to_numpy(), err_msg=detector_id
        )


def test_score_models_in_small_chunks_writes_the_same_alerts(ml_store: Store) -> None:
    con, models = _trained(ml_store)
    whole = score_models(
        con, run_id="whole", models_dir=models, window_from=START, window_to=END, chunk_rows=10**9
    )
    first = _alerts(con)
    con.execute("DELETE FROM alert_events; DELETE FROM alert_subjects; DELETE FROM alerts")
    chunked = score_models(
        con, run_id="chunked", models_dir=models, window_from=START, window_to=END, chunk_rows=25
    )
    assert first.height > 0
    assert _alerts(con).equals(first)
    assert [(d.detector_id, d.rows_scored, d.alerts) for d in chunked.detectors] == [
        (d.detector_id, d.rows_scored, d.alerts) for d in whole.detectors
    ]


def test_default_chunk_follows_the_memory_budget(
    ml_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    con, models = _trained(ml_store)
    asked: list[int] = []
    real = run.scoring_chunks

    def spy(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        asked.append(int(args[-1]))  # rows
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(run, "scoring_chunks", spy)
    monkeypatch.setenv("DWATCH_MEMORY", "1GiB")
    score_models(con, run_id="small", models_dir=models, window_from=SPLIT, window_to=END)
    monkeypatch.setenv("DWATCH_MEMORY", "2GiB")
    score_models(con, run_id="large", models_dir=models, window_from=SPLIT, window_to=END)
    small, large = asked[0], asked[-1]
    assert large == pytest.approx(2 * small, rel=0.01)
    assert small == (2**30 // 2) // run.SCORE_ROW_BYTES
