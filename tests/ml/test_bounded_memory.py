"""Bounded ML memory: scoring streams in chunks with the same scores and alerts as scoring
whole; training reads lean frames over a window bounded by need and by DWATCH_MEMORY."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest
from ml_synthetic import END, SPLIT, START, Injected

from detectors.ml import bounds, features, run, scoring
from detectors.ml.detectors import DETECTORS
from detectors.ml.registry import frame_sha256, latest_models, load_config, load_model
from detectors.ml.run import score_detector, score_models, scoring_chunks, train_models
from dwatch.errors import ConfigError

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
    # Every detector, enabled or not: a scoring_frame that reshaped its query's rows in
    # Python would stream differently from what it returns, and fail here.
    for detector_id, cls in sorted(DETECTORS.items()):
        det = cls(config.detectors[detector_id])
        whole = det.scoring_frame(con, START, END)
        chunks = list(scoring_chunks(con, det, START, END, rows=50))
        assert all(c.height <= 50 for c in chunks), detector_id
        if whole.height > 50:
            assert len(chunks) > 1, detector_id
        streamed = pl.concat(chunks)
        keys = list(det.key_columns)
        assert streamed.columns == whole.columns, detector_id
        assert streamed.sort(keys).equals(whole.sort(keys)), detector_id


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
    real = scoring.scoring_chunks

    def spy(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        asked.append(int(args[-1]))  # rows
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(scoring, "scoring_chunks", spy)
    monkeypatch.setenv("DWATCH_MEMORY", "1GiB")
    score_models(con, run_id="small", models_dir=models, window_from=SPLIT, window_to=END)
    monkeypatch.setenv("DWATCH_MEMORY", "2GiB")
    score_models(con, run_id="large", models_dir=models, window_from=SPLIT, window_to=END)
    small, large = asked[0], asked[-1]
    assert large == pytest.approx(2 * small, rel=0.01)
    assert small == (2**30 // 2) // run.SCORE_ROW_BYTES


# ---------------------------------------------------------------------- bounded training


def test_training_reads_the_frame_without_evidence_lists_and_fits_the_same_rows(
    ml_store: Store,
) -> None:
    con = ml_store[0]
    config = load_config()
    features.prepare_zones(con, config.time_zones)
    for detector_id, cls in sorted(DETECTORS.items()):
        det = cls(config.detectors[detector_id])
        full = det.training_frame(con, START, SPLIT)
        lean = bounds.training_frame(con, det, bounds.TrainingWindow(START, SPLIT))
        evidence = ["event_ids", *det.evidence_columns]
        assert not set(evidence) & set(lean.columns), detector_id
        assert lean.equals(full.drop(evidence, strict=False)), detector_id
        cols = list(det.feature_columns)
        assert frame_sha256(lean.select(cols)) == frame_sha256(full.select(cols)), detector_id


def test_without_a_start_each_detector_trains_on_the_history_it_needs(
    ml_store: Store, tmp_path: Path
) -> None:
    con, _, models = ml_store
    cfg = tmp_path / "ml.yaml"
    cfg.write_text(
        "detectors:\n  ml.actor_peers:\n    training_days: 30\n    event_types: [access]\n"
        "  ml.first_seen_combination:\n    event_types: [disclosure]\n"
    )
    config = load_config(cfg)
    results = train_models(
        con,
        window_from=None,
        window_to=None,
        models_dir=models,
        config=config,
        detectors=["ml.actor_peers", "ml.first_seen_combination"],
    )
    records = {r.detector_id: r.record for r in results}
    latest = con.execute(
        "SELECT max(occurred_at) FROM disclosure_events WHERE event_type = 'access'"
    ).fetchone()[0]
    peers = records["ml.actor_peers"]
    assert peers is not None and peers.train_from == latest - timedelta(days=30)
    assert "training_days" in next(r.message for r in results if r.detector_id == "ml.actor_peers")
    first_seen = records["ml.first_seen_combination"]
    assert first_seen is not None and first_seen.train_from is None  # all history


def test_a_window_larger_than_the_budget_is_narrowed_to_its_latest_days(
    ml_store: Store,
) -> None:
    con, _, models = ml_store
    config = load_config()
    features.prepare_zones(con, config.time_zones)
    det = DETECTORS["ml.transfer_surprise"](config.detectors["ml.transfer_surprise"])
    rows = det.training_frame(con, START, SPLIT).height
    cap = rows // 3
    result = train_models(
        con,
        window_from=START,
        window_to=SPLIT,
        models_dir=models,
        detectors=["ml.transfer_surprise"],
        max_rows=cap,
    )[0]
    record = result.record
    assert record is not None and 0 < record.training_rows <= cap
    assert record.train_from is not None and START < record.train_from < SPLIT
    assert record.train_from.time() == datetime.min.time()  # whole days
    # Not narrower than needed: one day more would not fit.
    day_before = record.train_from - timedelta(days=1)
    assert det.training_frame(con, day_before, SPLIT).height > cap
    assert "narrowed" in result.message and "DWATCH_MEMORY" in result.message
    assert "narrowed" in record.metadata["training_window"]


def test_training_days_must_be_a_positive_whole_number(tmp_path: Path) -> None:
    bad = tmp_path / "ml.yaml"
    for value in ("0", "-5", "1.5", "a year"):
        bad.write_text(f"detectors:\n  ml.actor_peers:\n    training_days: {value}\n")
        with pytest.raises(ConfigError, match="training_days") as err:
            load_config(bad)
        assert str(bad) in str(err.value) and "fix:" in str(err.value)


def test_one_query_gives_the_window_and_frame_the_two_step_path_gives(ml_store: Store) -> None:
    """Training streams the lean frame once; over the budget it narrows as before."""
    con = ml_store[0]
    config = load_config()
    features.prepare_zones(con, config.time_zones)
    for detector_id, cls in sorted(DETECTORS.items()):
        det = cls(config.detectors[detector_id])
        rows = bounds.training_frame(con, det, bounds.TrainingWindow(START, SPLIT)).height
        for cap in (rows, max(rows // 3, 1)):
            window, frame = bounds.window_and_frame(con, det, START, SPLIT, max_rows=cap)
            expected = bounds.training_window(con, det, START, SPLIT, max_rows=cap)
            assert window == expected, (detector_id, cap)
            assert frame.equals(bounds.training_frame(con, det, expected)), (detector_id, cap)
            narrowed = window.window_from is not None and window.window_from > START
            assert narrowed == (cap < rows), (detector_id, cap)


def test_held_out_folds_score_as_fully_fitted_folds_would(ml_store: Store) -> None:
    """The folds' models skip the pass that sets offset_; their held-out scores are those of
    models fitted the whole way, on every detector."""
    con = ml_store[0]
    config = load_config()
    features.prepare_zones(con, config.time_zones)
    for detector_id, cls in sorted(DETECTORS.items()):
        det = cls(config.detectors[detector_id])
        _, frame = bounds.window_and_frame(con, det, START, SPLIT)
        when = frame["day" if "day" in frame.columns else "occurred_at"]
        first = (when < when.sort().gather(frame.height // 2).item()).fill_null(True).to_numpy()
        expected = np.empty(frame.height)
        for part in (first, ~first):
            model = det.fit(frame.filter(pl.Series(~part)))
            expected[part] = det.anomaly_scores(model, frame.filter(pl.Series(part)))
        assert np.array_equal(run.held_out_scores(det, frame), expected), detector_id


def test_training_rows_bounds_a_detectors_window_whatever_the_budget(
    ml_store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    con, _, models = ml_store
    monkeypatch.setenv("DWATCH_MEMORY", "8GB")  # the budget alone would fit every row
    config = load_config()
    features.prepare_zones(con, config.time_zones)
    det = DETECTORS["ml.actor_peers"](config.detectors["ml.actor_peers"])
    rows = det.training_frame(con, START, SPLIT).height
    cap = max(rows // 3, 1000)
    assert bounds.max_training_rows(det) >= rows > cap
    cfg = tmp_path / "ml.yaml"
    cfg.write_text(
        f"detectors:\n  ml.actor_peers:\n    event_types: [access]\n    training_rows: {cap}\n"
    )
    result = train_models(
        con,
        window_from=START,
        window_to=SPLIT,
        models_dir=models,
        config=load_config(cfg),
        detectors=["ml.actor_peers"],
    )[0]
    assert result.record is not None and 0 < result.record.training_rows <= cap
    assert result.record.train_from is not None and result.record.train_from > START
    assert f"training_rows setting is {cap:,}" in result.message


def test_training_rows_must_be_a_whole_number_of_rows(tmp_path: Path) -> None:
    bad = tmp_path / "ml.yaml"
    for value in ("0", "999", "1.5e6", "many", "true"):
        bad.write_text(f"detectors:\n  ml.actor_peers:\n    training_rows: {value}\n")
        with pytest.raises(ConfigError, match="training_rows") as err:
            load_config(bad)
        assert str(bad) in str(err.value) and "fix:" in str(err.value)
