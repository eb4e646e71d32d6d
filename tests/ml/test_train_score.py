"""Training, saving, scoring and alerting end to end on the labelled synthetic store."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
from ml_synthetic import END, SPLIT, START, Injected

from detectors.alerts import ALERT_COLUMNS
from detectors.ml.registry import latest_models, load_config, load_model
from detectors.ml.run import score_models, train_models
from dwatch.errors import ConfigError, StoreError

Store = tuple[duckdb.DuckDBPyConnection, Injected, Path]
# The detectors the default ML config enables (the isolation forest is off by default).
ENABLED = {d for d, settings in load_config().detectors.items() if settings.enabled}


def _train(con: duckdb.DuckDBPyConnection, models: Path) -> None:
    results = train_models(con, window_from=START, window_to=SPLIT, models_dir=models)
    assert {r.detector_id for r in results if r.status == "trained"} == ENABLED


def _alerts(con: duckdb.DuckDBPyConnection, detector_id: str) -> list[dict[str, object]]:
    cur = con.execute(
        "SELECT * FROM alerts WHERE detector_id = ? AND status = 'open' ORDER BY score DESC",
        [detector_id],
    )
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def test_models_table_records_what_each_model_was_fitted_on(ml_store: Store) -> None:
    con, _, models = ml_store
    _train(con, models)
    records = latest_models(con)
    assert set(records) == ENABLED
    for record in records.values():
        assert Path(record.path).is_file() and Path(record.path).suffix == ".skops"
        assert Path(record.path).is_relative_to(models)
        assert record.train_from == START and record.train_to == SPLIT
        assert record.training_rows > 0 and record.features
        assert len(record.training_data_sha256) == 64
        assert record.parameters
        assert record.threshold == record.threshold  # not NaN


def test_training_twice_on_the_same_window_gives_the_same_data_hash(ml_store: Store) -> None:
    con, _, models = ml_store
    first = train_models(con, window_from=START, window_to=SPLIT, models_dir=models)
    second = train_models(con, window_from=START, window_to=SPLIT, models_dir=models)
    assert [r.record.training_data_sha256 for r in first if r.record] == [
        r.record.training_data_sha256 for r in second if r.record
    ]
    assert con.execute("SELECT count(*) FROM models").fetchone() == (2 * len(ENABLED),)


def test_each_injected_misuse_is_alerted_by_its_detector_with_a_baseline(ml_store: Store) -> None:
    con, injected, models = ml_store
    _train(con, models)
    summary = score_models(con, run_id="run-1", window_from=SPLIT, window_to=END)
    assert summary.untrained == []

    insider = _alerts(con, "ml.actor_peers")
    assert insider and insider[0]["actor_id"] == injected.insider[1]
    assert str(insider[0]["window_start"].date()) == injected.insider[2]
    assert "peers in the same agency and role (" in insider[0]["explanation"]
    assert "median" in insider[0]["explanation"]
    assert "99th percentile" in insider[0]["explanation"]
    assert "distinct taxpayers" in insider[0]["explanation"]
    assert "expected" in insider[0]["explanation"]

    spike = _alerts(con, "ml.recipient_volume")
    assert spike[0]["recipient_agency"] == injected.spike[0]
    assert str(spike[0]["window_start"].date()) == injected.spike[2]
    # Other volume alerts allowed: the injected off-hours bulk (also a volume outlier) and
    # the noise's weekend runs of a working-day flow (a cadence finding, said as such).
    for other in spike[1:]:
        assert (
            other["recipient_agency"] == "ST02-REV"
            or "Sundays" in other["explanation"]
            or ("Saturdays" in other["explanation"])
        ), other["explanation"]
    assert "This flow runs on working days" in spike[0]["explanation"]
    assert "expected" in spike[0]["explanation"]
    assert "at most 1 alert(s) per 10,000 lawful transfers" in spike[0]["explanation"]

    novel = {a["recipient_agency"] for a in _alerts(con, "ml.first_seen_combination")}
    assert injected.novel_recipient in novel

    transfers = _alerts(con, "ml.transfer_surprise")
    hit = [a for a in transfers if injected.off_hours_event in a["event_ids"]]
    assert hit, [a["explanation"] for a in transfers]
    assert "Unusual:" in hit[0]["explanation"] and "removable_media" in hit[0]["explanation"]
    evidence = json.loads(hit[0]["evidence"])
    assert evidence["unusual_features"] and evidence["model_version"]


def test_legitimate_month_end_bulk_is_not_a_volume_spike(ml_store: Store) -> None:
    con, injected, models = ml_store
    _train(con, models)
    score_models(con, run_id="run-1", window_from=START, window_to=END)
    days = {str(a["window_start"].date()) for a in _alerts(con, "ml.recipient_volume")}
    assert not days & set(injected.month_end_days)


def test_rescoring_keeps_alert_ids_and_adds_nothing(ml_store: Store) -> None:
    con, _, models = ml_store
    _train(con, models)
    first = score_models(con, run_id="run-1", window_from=SPLIT, window_to=END)
    ids = {r[0] for r in con.execute("SELECT alert_id FROM alerts").fetchall()}
    second = score_models(con, run_id="run-2", window_from=SPLIT, window_to=END)
    assert first.new == len(ids) > 0
    assert (second.new, second.retracted) == (0, 0)
    assert second.updated == len(ids)
    assert {r[0] for r in con.execute("SELECT alert_id FROM alerts").fetchall()} == ids


def test_scoring_uses_the_saved_model_without_retraining(ml_store: Store) -> None:
    con, _, models = ml_store
    _train(con, models)
    before = con.execute("SELECT count(*) FROM models").fetchone()
    score_models(con, run_id="run-1", window_from=SPLIT, window_to=END)
    assert con.execute("SELECT count(*) FROM models").fetchone() == before
    versions = {
        r[0] for r in con.execute("SELECT DISTINCT detector_version FROM alerts").fetchall()
    }
    assert versions <= {r.version for r in latest_models(con).values()}


def test_alert_rows_have_every_alert_column_and_no_raw_taxpayer_refs(ml_store: Store) -> None:
    con, _, models = ml_store
    _train(con, models)
    score_models(con, run_id="run-1", window_from=SPLIT, window_to=END)
    rows = con.execute(f"SELECT {', '.join(ALERT_COLUMNS)} FROM alerts").fetchall()
    assert rows
    for row in rows:
        alert = dict(zip(ALERT_COLUMNS, row, strict=True))
        assert alert["detector_kind"] == "model" and alert["explanation"]
        assert "tp_" not in alert["explanation"] and "tp_" not in alert["evidence"]


def test_a_tampered_model_file_is_refused(ml_store: Store) -> None:
    con, _, models = ml_store
    _train(con, models)
    record = latest_models(con)["ml.actor_peers"]
    Path(record.path).write_bytes(Path(record.path).read_bytes() + b"x")
    with pytest.raises(StoreError, match="does not match the hash"):
        load_model(record)


def test_untrained_detectors_are_reported_not_fatal(ml_store: Store) -> None:
    con, _, _ = ml_store
    summary = score_models(con, run_id="run-1")
    assert set(summary.untrained) == ENABLED
    assert con.execute("SELECT count(*) FROM alerts").fetchone() == (0,)


def test_a_detector_without_training_data_is_skipped_with_a_reason(ml_store: Store) -> None:
    con, _, models = ml_store
    results = train_models(con, window_from=END, window_to=None, models_dir=models)
    assert {r.status for r in results} == {"skipped"}
    assert all("widen --from/--to" in r.message for r in results)


def test_config_errors_name_the_file_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "ml.yaml"
    bad.write_text("detectors:\n  ml.actor_peers:\n    threshold_percentile: 140\n")
    with pytest.raises(ConfigError, match="threshold_percentile") as err:
        load_config(bad)
    assert str(bad) in str(err.value)
    bad.write_text("detectors:\n  ml.nope: {}\n")
    with pytest.raises(ConfigError, match="unknown ML detector"):
        load_config(bad)


def test_thresholds_are_configurable_per_detector(ml_store: Store, tmp_path: Path) -> None:
    con, _, models = ml_store
    cfg = tmp_path / "ml.yaml"
    cfg.write_text(
        "detectors:\n  ml.actor_peers:\n    threshold_percentile: 90\n    event_types: [access]\n"
    )
    config = load_config(cfg)
    loose = train_models(
        con,
        window_from=START,
        window_to=SPLIT,
        models_dir=models,
        config=config,
        detectors=["ml.actor_peers"],
    )[0].record
    strict = train_models(
        con, window_from=START, window_to=SPLIT, models_dir=models, detectors=["ml.actor_peers"]
    )[0].record
    assert loose and strict and loose.threshold_percentile == 90
    assert loose.threshold < strict.threshold


def test_a_model_from_another_duckdb_version_is_refused(ml_store: Store) -> None:
    import dataclasses

    con, _, models = ml_store
    _train(con, models)
    record = latest_models(con)["ml.transfer_surprise"]
    older = dataclasses.replace(record, metadata={**record.metadata, "duckdb_version": "0.0.1"})
    with pytest.raises(StoreError, match="retrain"):
        load_model(older)


def test_the_isolation_forest_still_trains_and_finds_the_off_hours_transfer_when_enabled(
    ml_store: Store, tmp_path: Path
) -> None:
    con, injected, models = ml_store
    cfg = tmp_path / "ml.yaml"
    cfg.write_text(
        "detectors:\n  ml.transfer_isolation:\n    enabled: true\n"
        "    event_types: [disclosure, redisclosure]\n    threshold_percentile: 99.5\n"
    )
    config = load_config(cfg)
    result = train_models(
        con, window_from=START, window_to=SPLIT, models_dir=models, config=config,
        detectors=["ml.transfer_isolation"],
    )[0]  # fmt: skip
    assert result.status == "trained", result.message
    score_models(con, run_id="run-1", window_from=SPLIT, window_to=END, config=config)
    hits = [
        a
        for a in _alerts(con, "ml.transfer_isolation")
        if injected.off_hours_event in a["event_ids"]
    ]
    assert hits and "Unusual:" in hits[0]["explanation"]


def test_scoring_a_window_rescores_the_look_ahead_detectors_days_before_it(
    ml_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import timedelta

    from detectors.ml import features
    from detectors.ml.detectors import ActorPeers, TransferSurprise

    con, _, models = ml_store
    _train(con, models)
    seen: dict[str, object] = {}
    for cls in (ActorPeers, TransferSurprise):
        original = cls.scoring_frame

        def spy(self, con, window_from, window_to, original=original):  # type: ignore[no-untyped-def]
            seen[self.detector_id] = window_from
            return original(self, con, window_from, window_to)

        monkeypatch.setattr(cls, "scoring_frame", spy)
    score_models(con, run_id="run-1", window_from=SPLIT, window_to=END)
    assert seen["ml.transfer_surprise"] == SPLIT
    assert seen["ml.actor_peers"] == SPLIT - timedelta(days=features.WINDOW_LOOKBACK_DAYS)


def test_a_model_fitted_on_other_features_is_reported_for_retraining(ml_store: Store) -> None:
    con, _, models = ml_store
    _train(con, models)
    # As a store trained by a release whose volume detector read transfers only.
    con.execute(
        "UPDATE models SET features = ['sender_code', 'pair_code', 'day_number',"
        " 'transfers_n', 'sender_transfers'] WHERE detector_id = 'ml.recipient_volume'"
    )
    summary = score_models(con, run_id="run-1", window_from=SPLIT, window_to=END)
    assert summary.untrained == ["ml.recipient_volume"]
    stale = next(d for d in summary.detectors if d.detector_id == "ml.recipient_volume")
    assert "run `dwatch train`" in stale.message and "transfers_n" in stale.message
    assert {d.detector_id for d in summary.detectors if d.model_version} == ENABLED - {
        "ml.recipient_volume"
    }
