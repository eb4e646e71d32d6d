"""``ml.log_coverage``: a log silent for a flow that other logs go on recording (issue 14:
cadence per source log, not only per flow)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import duckdb
import numpy as np
import pytest
from ml_synthetic import END, SPLIT, START, Injected

from detectors.ml.coverage import LogCoverageSurprise
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
    patchy = _rows("patchy", [1, 0] * 100)
    model = LogCoverageSurprise(min_history=20).fit(np.vstack([steady, patchy]))
    five_missed = _rows("steady", [0] * 5)
    per_day = -np.log1p(-(200 + 0.5) / 201)
    surprise = -model.score_samples(five_missed)
    assert surprise == pytest.approx(per_day * np.arange(1, 6))
    # A log that misses half the flow's days: five in a row is about 1 in 32.
    patchy_five = -model.score_samples(_rows("patchy", [0] * 5))
    assert patchy_five[-1] == pytest.approx(5 * np.log(2), rel=0.05)
    assert patchy_five[-1] < surprise[0]
    # Logged days, unknown logs and logs with too little history are not judged.
    assert not model.score_samples(_rows("steady", [1, 2])).any()
    assert not model.score_samples(_rows("never seen", [0] * 5)).any()
    short = LogCoverageSurprise(min_history=20).fit(_rows("short", [1] * 10))
    assert not short.score_samples(_rows("short", [0] * 5)).any()


def test_a_bad_layout_is_named() -> None:
    with pytest.raises(ValueError, match="expected 3 columns"):
        LogCoverageSurprise().fit(np.zeros((30, 2)))


def test_a_receipt_log_that_stops_recording_a_flow_is_found(ml_store: Store) -> None:
    con, injected, models = ml_store
    log, recipient, first_day = injected.silent_log
    config = load_config()  # off by default: enabled here
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
