"""Scoring reads every row's feature columns and only the flagged rows whole (by their
``MLDetector.row_locator``, or rebuilt from their ``scope_by`` partition's days): the
alerts are those of scoring whole rows, chunk by chunk, and on the days of an increment
too."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest
from ml_synthetic import END, SPLIT, START, Injected

from detectors.ml import features
from detectors.ml.days import on_days
from detectors.ml.detectors import DETECTORS, MLDetector
from detectors.ml.registry import MLConfig, ModelRecord, latest_models, load_config, load_model
from detectors.ml.run import score_chunks, train_models

LOCATED = sorted(d for d, cls in DETECTORS.items() if cls.row_locator is not None)
# Flagged rows rebuilt from their partition's days (score_rows.score_partitioned).
PARTITIONED = sorted(
    d for d, cls in DETECTORS.items() if cls.row_locator is None and cls.scope_by is not None
)
LEAN = LOCATED + PARTITIONED


def _whole_rows(monkeypatch: pytest.MonkeyPatch, det: MLDetector) -> None:
    """The detector reading whole rows, as scoring did before locators and partitions."""
    monkeypatch.setattr(type(det), "row_locator", None)
    monkeypatch.setattr(type(det), "scope_by", None)


def _config() -> MLConfig:
    config = load_config()
    on = {d: dataclasses.replace(s, enabled=d in LEAN) for d, s in config.detectors.items()}
    return dataclasses.replace(config, time_zones={"IRS": "America/New_York"}, detectors=on)


def _candidates(
    con: duckdb.DuckDBPyConnection,
    det: MLDetector,
    record: ModelRecord,
    models: Path,
    *,
    rows: int,
    rescored: list[pl.DataFrame] | None = None,
) -> tuple[pl.DataFrame, int]:
    found, scored = score_chunks(
        con,
        det,
        load_model(record, models),
        record,
        window_from=SPLIT,
        window_to=END,
        rows=rows,
        rescored=rescored,
    )
    return found.sort("alert_id"), scored


@pytest.fixture
def trained(
    ml_store: tuple[duckdb.DuckDBPyConnection, Injected, Path],
) -> tuple[duckdb.DuckDBPyConnection, Path, dict[str, ModelRecord]]:
    con, _, models = ml_store
    config = _config()
    train_models(con, window_from=START, window_to=SPLIT, models_dir=models, config=config)
    features.prepare_zones(con, config.time_zones)
    records = latest_models(con)
    # A floor that flags about 5% of the rows: many located rows, in every chunk.
    lowered = {}
    for detector_id in LEAN:
        det = DETECTORS[detector_id](config.detectors[detector_id])
        model = load_model(records[detector_id], models)
        scores = det.anomaly_scores(model, det.scoring_frame(con, SPLIT, END))
        floor = float(np.quantile(scores, 0.95))
        lowered[detector_id] = dataclasses.replace(records[detector_id], threshold=floor)
    return con, models, lowered


def test_the_transfer_detectors_read_flagged_rows_by_their_locator() -> None:
    assert {"ml.transfer_surprise", "ml.transfer_isolation"} <= set(LOCATED)
    assert PARTITIONED == ["ml.actor_peers"]


@pytest.mark.parametrize("detector_id", LEAN)
def test_located_scoring_writes_the_alerts_whole_rows_write(
    trained: tuple[duckdb.DuckDBPyConnection, Path, dict[str, ModelRecord]],
    detector_id: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    con, models, records = trained
    det = DETECTORS[detector_id](_config().detectors[detector_id])
    located, scored = _candidates(con, det, records[detector_id], models, rows=100)
    _whole_rows(monkeypatch, det)
    whole, whole_scored = _candidates(con, det, records[detector_id], models, rows=100)

    assert scored == whole_scored > 5 * 100  # several chunks
    assert located.height > 20, located.height
    assert located.columns == whole.columns
    assert located.equals(whole), detector_id
    # Each flagged row's explanation is its own (built from the row read by its locator).
    for alert_id, explanation in located.select("alert_id", "explanation").head(5).iter_rows():
        assert explanation == whole.filter(pl.col("alert_id") == alert_id)["explanation"].item()


@pytest.mark.parametrize("detector_id", LEAN)
def test_located_scoring_on_the_days_of_an_increment(
    trained: tuple[duckdb.DuckDBPyConnection, Path, dict[str, ModelRecord]],
    detector_id: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    con, models, records = trained
    det = DETECTORS[detector_id](_config().detectors[detector_id])
    days = [SPLIT.date() + timedelta(days=k) for k in (0, 3, 4, 20)]
    got: dict[bool, tuple[pl.DataFrame, int, pl.DataFrame]] = {}
    for locating in (True, False):
        if not locating:
            _whole_rows(monkeypatch, det)
        rescored: list[pl.DataFrame] = []
        with on_days(days):
            found, scored = _candidates(
                con, det, records[detector_id], models, rows=50, rescored=rescored
            )
        keys = pl.concat(rescored).sort(list(det.key_columns))
        got[locating] = (found, scored, keys)
    (located, scored, keys), (whole, whole_scored, whole_keys) = got[True], got[False]
    assert 0 < scored == whole_scored
    assert keys.equals(whole_keys)
    assert located.height > 0
    assert located.equals(whole)


def test_flagged_users_are_rebuilt_from_their_own_events_alone(
    trained: tuple[duckdb.DuckDBPyConnection, Path, dict[str, ModelRecord]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The rows over the floor are rebuilt for their explanations from the flagged users'
    events only (the agency's other users' were most of the rebuild's cost); the alerts
    are those of whole rows (test above), the users read exactly the flagged ones."""
    con, models, records = trained
    det = DETECTORS[PARTITIONED[0]](_config().detectors[PARTITIONED[0]])
    assert det.rebuild_by is not None and det.rebuild_by in det.key_columns
    rebuilt: list[features.FeatureQuery] = []
    original = features.run_query

    def spy(con: duckdb.DuckDBPyConnection, query: features.FeatureQuery) -> pl.DataFrame:
        rebuilt.append(query)
        return original(con, query)

    monkeypatch.setattr(features, "run_query", spy)
    found, _ = _candidates(con, det, records[det.detector_id], models, rows=100)
    users = set(found[det.rebuild_by].to_list())
    assert found.height > 20 and len(users) > 1
    assert [set(q.params["member_values"]) for q in rebuilt] == [users]
    everyone = con.execute(
        "SELECT count(DISTINCT actor_id) FROM disclosure_events WHERE event_type = 'access'"
    ).fetchone()
    assert everyone is not None and len(users) < everyone[0]


def test_the_scoring_query_codes_each_row_as_the_training_query_does(
    ml_store: tuple[duckdb.DuckDBPyConnection, Injected, Path],
) -> None:
    """Scoring codes element lists once per distinct list (features.transfer_frame with
    ordered=False); the codes must be training's, row by row, empty and unsorted lists
    included, or every saved model would read the rows wrongly."""
    con = ml_store[0]
    features.prepare_zones(con, _config().time_zones)
    first, last = con.execute(
        "SELECT min(event_id), max(event_id) FROM disclosure_events WHERE event_type = 'disclosure'"
    ).fetchone()
    con.execute(
        "UPDATE disclosure_events SET data_elements = []::VARCHAR[] WHERE event_id = ?", [first]
    )
    con.execute(
        "UPDATE disclosure_events SET data_elements = ['tin', 'name', 'address', 'name']"
        " WHERE event_id = ?",
        [last],
    )
    types = ["disclosure", "redisclosure"]
    columns = sorted(
        {c for d in LOCATED for c in DETECTORS[d].feature_columns if c.endswith("_code")}
    )
    keys = ["source_system", "event_id"]
    training = features.transfer_frame(con, event_types=types).select(*keys, *columns)
    scoring = features.transfer_frame(con, event_types=types, ordered=False)
    assert "elements_code" in columns
    assert scoring["elements_code"].n_unique() > 3
    assert scoring.select(*keys, *columns).sort(keys).equals(training.sort(keys))
    with on_days([SPLIT.date(), (SPLIT + timedelta(days=9)).date()]):
        part = features.transfer_frame(con, event_types=types, ordered=False)
    assert part.height > 0
    assert (
        part.select(*keys, *columns)
        .sort(keys)
        .equals(training.join(part.select(keys), on=keys).sort(keys))
    )
