"""A training that holds all history keeps the user-days it built for the scoring of all
history that follows (detectors/ml/reuse.py): the alerts are those of scoring from the
events, and rows that are no longer all history's are never read."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest
from ml_synthetic import START, Injected, load_events

from detectors.ml import reuse
from detectors.ml.detectors import DETECTORS, ActorPeers, MLDetector
from detectors.ml.registry import MLConfig, load_config
from detectors.ml.run import score_models, train_models
from dwatch.store import connect

Store = tuple[duckdb.DuckDBPyConnection, Injected, Path]
ACTOR = ActorPeers.detector_id


# Detectors fitted on the rows they are scored from whole: training keeps them whole.
WHOLE = sorted(
    d
    for d, cls in DETECTORS.items()
    if cls.row_locator is None
    and cls.scope_by is None
    and not cls.fits_summary
    and cls.training_frame is MLDetector.training_frame
)


# Detectors fitted on a summary of distinct feature rows and scored by a row locator: the
# summary, with each row's store rows, is kept and scored instead of every transfer.
SUMMED = sorted(
    d for d, cls in DETECTORS.items() if cls.row_locator is not None and cls.fits_summary
)


def _only_actor(detector_id: str = ACTOR) -> MLConfig:
    """The actor detector (or ``detector_id``) alone, at a loose floor: alerts to compare."""
    config = load_config()
    on = {
        d: dataclasses.replace(
            s, enabled=d == detector_id, false_alarms_per_10k=200.0, min_score=None
        )
        for d, s in config.detectors.items()
    }
    return dataclasses.replace(config, detectors=on)


def _train(
    con: duckdb.DuckDBPyConnection,
    models: Path,
    keep: bool,
    detector_id: str = ACTOR,
    **window: object,
) -> None:
    window = {"window_from": None, "window_to": None, **window}
    results = train_models(
        con, models_dir=models, config=_only_actor(detector_id), keep_for_scoring=keep, **window
    )
    assert [r.status for r in results] == ["trained"], results


def _alerts(con: duckdb.DuckDBPyConnection, detector_id: str = ACTOR) -> pl.DataFrame:
    """The actor alerts as a run shows them, without what names the model version."""
    return pl.from_arrow(
        con.sql(
            "SELECT alert_id, score, status, entity_id, window_start, window_end, event_ids,"
            " explanation, regexp_replace(evidence, '\"model_version\": \"[^\"]*\"', '', 'g')"
            " AS evidence FROM alerts WHERE detector_id = $d ORDER BY alert_id",
            params={"d": detector_id},
        ).to_arrow_table()
    )


def _spy_take(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    taken: list[str | None] = []
    original = reuse.take

    def spy(*args: object) -> str | None:
        taken.append(original(*args))  # type: ignore[arg-type]
        return taken[-1]

    monkeypatch.setattr(reuse, "take", spy)
    return taken


def _tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [
        r[0]
        for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE temporary AND table_name LIKE '_ml_kept%'"
        ).fetchall()
    ]


def test_scoring_all_history_reads_the_kept_rows_and_raises_the_same_alerts(
    ml_store: Store,
    tmp_path: Path,
    synthetic: tuple[pl.DataFrame, Injected],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    con, _, models = ml_store
    other = connect(tmp_path / "built.duckdb")
    load_events(other, synthetic[0])
    taken = _spy_take(monkeypatch)
    try:
        _train(other, models / "built", keep=False)
        score_models(other, run_id="r1", models_dir=models / "built", config=_only_actor())
        assert taken == [None]

        _train(con, models / "kept", keep=True)
        assert _tables(con) == [reuse.table_name(ActorPeers(load_config().detectors[ACTOR]))]
        score_models(con, run_id="r1", models_dir=models / "kept", config=_only_actor())
        assert taken[1:] == [reuse.table_name(ActorPeers(load_config().detectors[ACTOR]))]
        assert _tables(con) == []  # dropped once scoring is done

        kept, built = _alerts(con), _alerts(other)
        assert kept.height > 10
        assert kept.equals(built)
    finally:
        other.close()


@pytest.mark.parametrize("detector_id", [*WHOLE, *SUMMED])
def test_a_detector_scored_from_whole_rows_reads_the_rows_its_training_built(
    ml_store: Store,
    tmp_path: Path,
    synthetic: tuple[pl.DataFrame, Injected],
    monkeypatch: pytest.MonkeyPatch,
    detector_id: str,
) -> None:
    """Its training builds all history's rows once, evidence included (a summary fit: its
    distinct feature rows with the store rows of each), fits on them as on the rows it
    read before (same training data hash) and leaves them for the scoring, whose alerts
    are those of scoring every row."""
    con, _, models = ml_store
    other = connect(tmp_path / "built.duckdb")
    load_events(other, synthetic[0])
    config = _only_actor(detector_id)
    det = DETECTORS[detector_id](config.detectors[detector_id])
    taken = _spy_take(monkeypatch)
    try:
        _train(other, models / "built", False, detector_id)
        score_models(other, run_id="r1", models_dir=models / "built", config=config)
        assert taken == [None]

        _train(con, models / "kept", True, detector_id)
        assert _tables(con) == [reuse.table_name(det)]
        score_models(con, run_id="r1", models_dir=models / "kept", config=config)
        assert taken[1:] == [reuse.table_name(det)]
        assert _tables(con) == []

        trained = "SELECT training_data_sha256, threshold, training_rows FROM models"
        assert con.execute(trained).fetchall() == other.execute(trained).fetchall()
        kept, built = _alerts(con, detector_id), _alerts(other, detector_id)
        assert kept.height > 0
        assert kept.equals(built)
    finally:
        other.close()


def test_whole_rows_are_kept_for_the_detectors_fitted_on_their_scoring_rows() -> None:
    assert WHOLE == ["ml.log_coverage", "ml.recipient_volume"]
    assert SUMMED == ["ml.transfer_surprise"]


@pytest.mark.parametrize("detector_id", [ACTOR, *WHOLE, *SUMMED])
def test_rows_are_not_kept_when_the_window_starts_after_the_first_event(
    ml_store: Store, detector_id: str
) -> None:
    con, _, models = ml_store
    _train(con, models, True, detector_id, window_from=START + timedelta(days=10))
    assert _tables(con) == []
    _train(con, models, True, detector_id)
    assert len(_tables(con)) == 1
    _train(con, models, False, detector_id)  # a training after drops what one before kept
    assert _tables(con) == []


@pytest.mark.parametrize("change", ["new event", "zone"])
def test_kept_rows_are_not_read_once_what_they_were_built_from_changed(
    ml_store: Store, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    con, _, models = ml_store
    _train(con, models, keep=True)
    assert len(_tables(con)) == 1
    if change == "new event":
        con.execute(
            "INSERT INTO disclosure_events BY NAME SELECT * REPLACE ('late-1' AS event_id)"
            " FROM disclosure_events WHERE event_type = 'access' LIMIT 1"
        )
    config = _only_actor()
    if change == "zone":  # the scoring's zones are not those the rows were built with
        config = dataclasses.replace(config, time_zones={"ST00-REV": "America/Chicago"})
    taken = _spy_take(monkeypatch)
    score_models(con, run_id="r1", models_dir=models, config=config)
    assert taken == [None]
    assert _tables(con) == []
