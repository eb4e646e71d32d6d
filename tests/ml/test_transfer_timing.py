"""The transfer model judges a transfer's hour and weekday against its own flow, and its
alert floor counts only lawful training transfers (issue 14: an off-hours transfer of a
weekday-evening flow went unflagged because the sender's other flows ran at that hour and
the floor was set by violations the rules had already named)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
from ml_synthetic import Injected

from detectors.ml import features
from detectors.ml.detectors import (
    DETECTORS,
    DetectorSettings,
    ModelContext,
    rule_flagged_events,
)
from detectors.ml.run import threshold_for
from dwatch.store import connect

SURPRISE = DETECTORS["ml.transfer_surprise"]


def _transfer(sender: str, recipient: str, weekday: int, hour: int) -> dict[str, object]:
    """A row of the transfer model's feature columns (codes are any hashable values)."""
    return {
        "channel_enc_code": 1,
        "elements_code": 1,
        "local_hour_of_day": hour,
        "local_weekday": weekday,
        "size_class": 4,
        "authority_purpose_code": 1,
        "recipient_code": hash(recipient) % 10_000,
        "sender_code": hash(sender) % 10_000,
        "recipient_size_code": hash(recipient + " ~1e4") % 10_000,
        "sender_size_code": hash(sender + " ~1e4") % 10_000,
    }


def _context() -> ModelContext:
    return ModelContext("v1", 30.0, None, None, None, {})


def _two_flows() -> pl.DataFrame:
    """One sender, two flows of the same size: weekday evenings to R1, 03:00 every night to R2."""
    rows = []
    for _week in range(40):
        for weekday in range(1, 8):
            if weekday <= 5:
                rows.append(_transfer("S", "R1", weekday, 20))
            rows.append(_transfer("S", "R2", weekday, 3))
    return pl.DataFrame(rows)


def test_an_hour_its_flow_never_runs_at_is_surprising_even_if_the_sender_uses_it() -> None:
    det = SURPRISE(DetectorSettings(params={"alpha": 2.0}))
    training = _two_flows()
    model = det.fit(training)
    lawful = det.anomaly_scores(model, training)
    odd = pl.DataFrame([_transfer("S", "R1", 2, 3)])  # R1 at 03:00 on a Tuesday
    usual_r2 = pl.DataFrame([_transfer("S", "R2", 2, 3)])  # R2 does run then
    odd_score = float(det.anomaly_scores(model, odd)[0])
    assert odd_score > lawful.max() + 4.0, (odd_score, lawful.max())
    assert float(det.anomaly_scores(model, usual_r2)[0]) <= lawful.max() + 1e-9
    hour = model[-1].term_surprise(odd.select(det.feature_columns))[0, 2]
    assert hour > 4.0, hour
    reasons, _ = det.explain(
        odd.with_columns(
            pl.lit("2026-01-06 03:00").str.to_datetime().alias("local_ts"),
            pl.lit("America/New_York").alias("zone"),
            pl.lit("S").alias("disclosing_agency"),
            pl.lit("R1").alias("recipient_agency"),
            pl.lit(25_000).alias("record_count"),
            pl.lit("sftp, encrypted").alias("channel_enc"),
            pl.lit("name,tin").alias("elements"),
            pl.lit("26 USC 6103(d)").alias("authority"),
            pl.lit("state tax").alias("purpose"),
            pl.lit("sftp").alias("channel"),
            pl.lit("E1").alias("event_id"),
        ),
        np.array([odd_score]),
        model,
        _context(),
    )
    assert "03:00 local time: 0 of 200 comparable training transfers" in reasons[0], reasons[0]
    assert "transfers from S to R1" in reasons[0]


def test_the_alert_floor_leaves_out_training_rows_a_rule_named() -> None:
    det = SURPRISE(DetectorSettings(false_alarms_per_10k=1.0))
    rng = np.random.default_rng(0)
    lawful = rng.exponential(1.0, 5_000) + 2.0
    violations = rng.uniform(30.0, 50.0, 60)
    scores = np.concatenate([lawful, violations])
    flagged = np.r_[np.zeros(lawful.size, bool), np.ones(violations.size, bool)]
    all_rows, _, floor_all = threshold_for(det, det.build_pipeline(), scores)
    lawful_only, _, floor = threshold_for(det, det.build_pipeline(), scores, None, flagged)
    assert floor is not None and floor_all is not None
    assert lawful_only < 30.0 < all_rows
    assert floor["rule_flagged_rows"] == 60 and floor_all["rule_flagged_rows"] == 0
    assert floor["training_events"] == lawful.size
    # Too few rows left to place a floor: every row counts, as before.
    few = np.r_[np.zeros(5, bool), np.ones(scores.size - 5, bool)]
    assert threshold_for(det, det.build_pipeline(), scores, None, few)[0] == all_rows


def test_rule_flagged_transfers_are_read_from_the_alert_events_of_open_rule_alerts(
    ml_store: tuple[duckdb.DuckDBPyConnection, Injected, Path],
) -> None:
    con = ml_store[0]
    det = SURPRISE(DetectorSettings())
    features.prepare_zones(con)
    frame = det.training_frame(con, None, None)
    first, second = frame.row(0, named=True), frame.row(1, named=True)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    for alert_id, kind, status, row in (
        ("al-rule-open", "rule", "open", first),
        ("al-rule-retracted", "rule", "retracted", second),
        ("al-model", "model", "open", second),
    ):
        con.execute(
            "INSERT INTO alerts (alert_id, detector_id, detector_kind, detector_version, severity,"
            " entity_type, entity_id, explanation, status, first_detected_at)"
            " VALUES (?, 'some_rule', ?, '1', 'low', 'event', ?, 'test', ?, ?)",
            [alert_id, kind, row["event_id"], status, now - timedelta(days=1)],
        )
        con.execute(
            "INSERT INTO alert_events VALUES (?, ?, ?, 'disclosure', NULL, 'finding')",
            [alert_id, row["source_system"], row["event_id"]],
        )
    flagged = rule_flagged_events(con, frame, det.event_types)
    assert flagged is not None and flagged.dtype == bool
    assert flagged[0] and not flagged[1] and flagged.sum() == 1


def test_a_store_without_alert_events_flags_nothing(tmp_path: Path) -> None:
    con = duckdb.connect()
    frame = pl.DataFrame({"source_system": ["s"], "event_id": ["e"]})
    assert rule_flagged_events(con, frame, ["disclosure"]) is None
    store = connect(tmp_path / "fresh.duckdb")
    try:
        flagged = rule_flagged_events(store, frame, ["disclosure"])
        assert flagged is not None and not flagged.any()
    finally:
        store.close()
