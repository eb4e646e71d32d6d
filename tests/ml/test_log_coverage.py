"""``ml.log_coverage``: a log silent for a flow that other logs go on recording (issue 14:
cadence per source log, not only per flow)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import polars as pl
import pytest
from ml_synthetic import END, SPLIT, START, Injected, load_events

from detectors.ml import features
from detectors.ml.coverage import LogCoverageSurprise
from detectors.ml.detectors import DETECTORS
from detectors.ml.registry import load_config
from detectors.ml.run import score_models, train_models

Store = tuple[duckdb.DuckDBPyConnection, Injected, Path]


def _rows(key: str, logged: list[int]) -> np.ndarray:
    """Rows of one (log, flow) key: logged counts per day and the run of misses so far."""
    run, out = 0, []
    for n in logged:
        run = 0 if n else run + 1
        out.append((key, n, run))
    return np.array(out, dtype=object)


def test_a_run_of_missed_days_is_judged_against_how_often_the_log_records_the_flow() -> None:
    steady = _rows("steady", [1] * 200)
    # A log that records about half the flow's days, at random.
    patchy = _rows("patchy", np.random.default_rng(0).integers(0, 2, 200).tolist())
    model = LogCoverageSurprise(min_history=20).fit(np.vstack([steady, patchy]))
    five_missed = _rows("steady", [0] * 5)
    # Never missed: a = 0.5 / 201 per day after a recorded one, and with no cluster seen a
    # missed day after a missed one is as rare; a run of k is expected 200 a^k times.
    a = 0.5 / 201
    surprise = -model.score_samples(five_missed)
    expected = np.maximum(-(np.log(200) + np.arange(1, 6) * np.log(a)), 0)
    assert surprise == pytest.approx(expected)
    assert surprise[0] < 1.0 and surprise[2] > 10.0  # one missed day is nothing, three is
    # Five in a row from the patchy log: about 1 in 32 a day, several in its 200 days.
    patchy_five = -model.score_samples(_rows("patchy", [0] * 5))
    assert patchy_five[-1] == 0.0
    # Logged days, unknown logs and logs with too little history are not judged.
    assert not model.score_samples(_rows("steady", [1, 2])).any()
    assert not model.score_samples(_rows("never seen", [0] * 5)).any()
    short = LogCoverageSurprise(min_history=20).fit(_rows("short", [1] * 10))
    assert not short.score_samples(_rows("short", [0] * 5)).any()


def test_a_log_whose_misses_come_in_clusters_is_not_surprised_by_one() -> None:
    """Misses in twos and threes (an appliance down for a couple of days) teach a high
    chance of missing a day after a missed one: a run of three is its habit, not news; the
    same three in a log whose rare misses were single days are."""
    clustered = _rows("clustered", ([1] * 30 + [0, 0, 0]) * 6)
    single = _rows("single", ([1] * 30 + [0]) * 6)
    model = LogCoverageSurprise(min_history=20).fit(np.vstack([clustered, single]))
    assert model.miss_after_missed_[0] > 0.5 > model.miss_after_missed_[1]
    three = -model.score_samples(_rows("clustered", [0, 0, 0]))[-1]
    three_single = -model.score_samples(_rows("single", [0, 0, 0]))[-1]
    assert three == 0.0 < 7.0 < three_single


def test_a_bad_layout_is_named() -> None:
    with pytest.raises(ValueError, match="expected 3 columns"):
        LogCoverageSurprise().fit(np.zeros((30, 2)))


def test_a_receipt_log_that_stops_recording_a_flow_is_found(ml_store: Store) -> None:
    con, injected, models = ml_store
    log, recipient, first_day = injected.silent_log
    config = load_config()
    settings = replace(config.detectors["ml.log_coverage"], enabled=True)
    config = replace(config, detectors={**config.detectors, "ml.log_coverage": settings})
    results = train_models(
        con,
        window_from=START,
        window_to=SPLIT,
        models_dir=models,
        config=config,
        detectors=["ml.log_coverage"],
    )
    assert [r.status for r in results] == ["trained"], [r.message for r in results]
    score_models(
        con, run_id="cov-1", window_from=SPLIT, window_to=END, models_dir=models, config=config
    )
    alerts = con.execute(
        "SELECT source_system, recipient_agency, window_start, explanation, evidence"
        " FROM alerts WHERE detector_id = 'ml.log_coverage' AND status = 'open'"
    ).fetchall()
    assert len(alerts) == 1, alerts
    source, to, start, explanation, evidence = alerts[0]
    assert (source, to) == (log, recipient)
    # The run starts on the first missed day (a day counts as recorded with a receipt
    # within a day of the disclosure, so the first day may be covered by the day before).
    assert 0 <= (start.date() - np.datetime64(first_day).astype(object)).days <= 3
    assert "recorded none of IRS's transfers to " + recipient in explanation
    assert "synthetic-ledger" in explanation and "alert floor" in explanation
    ev = json.loads(evidence)
    assert ev["missed_days_in_a_row"] >= 3
    assert (
        ev["baseline"]["days_this_log_recorded_it"]
        == ev["baseline"]["days_flow_recorded_elsewhere"]
    )
    assert ev["events"] and all(e["source_system"] == "synthetic-ledger" for e in ev["events"])


def _two_logs(stop: tuple[int, int] | None = None) -> pl.DataFrame:
    """180 days of one flow in two logs. The ledger lists a nightly file transfer at 21:30
    UTC and, on about half the days, one-record API answers; the recipient's receipt log
    records only the file transfers, 3 hours later (past midnight); ``stop`` = days it
    records nothing."""
    rng = np.random.default_rng(1)
    rows = []
    for day in range(180):
        at = START + timedelta(days=day, hours=21, minutes=30)
        rows.append(("ledger", f"F{day}", "disclosure", at, "secure_file_transfer", 5000))
        if not (stop and stop[0] <= day < stop[1]):
            rows.append(("receipts", f"R{day}", "receipt", at + timedelta(hours=3), "sftp", 5000))
        if rng.random() < 0.5:
            rows.append(("ledger", f"A{day}", "disclosure", at - timedelta(hours=6), "api", 1))
    frame = pl.DataFrame(
        rows,
        schema=[
            "source_system",
            "event_id",
            "event_type",
            "occurred_at",
            "channel",
            "record_count",
        ],
        orient="row",
    )
    return frame.with_columns(
        pl.col("occurred_at").dt.replace_time_zone("UTC"),
        pl.lit("IRS").alias("disclosing_agency"),
        pl.lit("ST-A").alias("recipient_agency"),
        pl.lit("svc").alias("actor_id"),
        pl.lit(["name", "tin"]).alias("data_elements"),
        pl.int_range(1, pl.len() + 1).over("source_system").cast(pl.Int64).alias("sequence_no"),
    )


def _coverage_alerts(con: duckdb.DuckDBPyConnection, models: Path) -> list[tuple[Any, ...]]:
    config = load_config()
    settings = replace(config.detectors["ml.log_coverage"], enabled=True)
    config = replace(config, detectors={**config.detectors, "ml.log_coverage": settings})
    split = START + timedelta(days=120, hours=23)  # between a transfer and its receipt
    results = train_models(
        con, window_from=START, window_to=split, models_dir=models, config=config,
        detectors=["ml.log_coverage"],
    )  # fmt: skip
    assert [r.status for r in results] == ["trained"], [r.message for r in results]
    score_models(
        con, run_id="cov", window_from=split, window_to=START + timedelta(days=181),
        models_dir=models, config=config,
    )  # fmt: skip
    return con.execute(
        "SELECT window_start, explanation, evidence FROM alerts"
        " WHERE detector_id = 'ml.log_coverage' AND status = 'open'"
    ).fetchall()


def test_a_receipt_log_that_records_only_file_transfers_is_lawful(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    """The ledger's API answers are not the receipt log's to record, receipts after
    midnight and after the window's end still cover their day, and the store's last days
    wait for their receipts: nothing to find."""
    load_events(con, _two_logs())
    assert _coverage_alerts(con, tmp_path / "models") == []


def test_a_receipt_log_that_stops_recording_the_file_transfers_is_found(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    load_events(con, _two_logs(stop=(150, 157)))
    [(start, explanation, evidence)] = _coverage_alerts(con, tmp_path / "models")
    # A receipt within a day covers a day, so the days next to the last and the first
    # receipt count as recorded: the run is days 152-156.
    assert start.date() == (START + timedelta(days=152)).date()
    assert "over secure_file_transfer" in explanation and "alert floor 6.9" in explanation
    ev = json.loads(evidence)
    assert ev["missed_days_in_a_row"] == 5 and ev["channel"] == "secure_file_transfer"
    assert (
        ev["baseline"]["days_this_log_recorded_it"]
        == ev["baseline"]["days_flow_recorded_elsewhere"]
    )


def test_a_receipt_just_past_the_window_covers_the_disclosure_before_its_end(
    con: duckdb.DuckDBPyConnection,
) -> None:
    """The window ends between a transfer (21:30) and its receipt (00:30): the receipt is
    read beyond the edge, so the last day counts as recorded, and the API answers the
    receipt log never records are rows of their own channel."""
    load_events(con, _two_logs())
    features.prepare_zones(con, {})
    det = DETECTORS["ml.log_coverage"](load_config().detectors["ml.log_coverage"])
    frame = det.scoring_frame(
        con, START + timedelta(days=100), START + timedelta(days=140, hours=23)
    ).filter(pl.col("source_system") == "receipts")
    last = frame.filter(pl.col("day") == (START + timedelta(days=140)).date())
    assert "secure_file_transfer" in last["channel"].to_list()
    assert (last["logged_here_n"] > 0).all()
    assert set(frame["channel"].to_list()) == {"api", "secure_file_transfer"}
