"""Scoring an increment (only the rows its windows touch, detectors/ml/scope.py) writes the
alerts that scoring all history at once writes, per detector, while scoring fewer rows."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest
from ml_synthetic import END, SPLIT, START, STATES, Injected, load_events

from detectors.ml import features, scope
from detectors.ml.days import on_days
from detectors.ml.detectors import DETECTORS
from detectors.ml.registry import MLConfig, load_config
from detectors.ml.run import score_models, train_models
from dwatch.store import connect

# The increment: the days from here on, and a few events of earlier days (late rows).
CUT = START + timedelta(days=104)
LATE_EVENTS = 6


def _config() -> MLConfig:
    """Every detector on, and agencies in zones either side of UTC. The synthetic working
    day is 14:00-22:00 UTC: in Tokyo it crosses local midnight, so a local day holds
    events of two UTC days (windows are cut in UTC days)."""
    config = load_config()
    zones = {"IRS": "Asia/Tokyo"}
    zones |= {s: ("Asia/Tokyo" if i % 2 else "America/Los_Angeles") for i, s in enumerate(STATES)}
    detectors = {d: dataclasses.replace(s, enabled=True) for d, s in config.detectors.items()}
    return dataclasses.replace(config, time_zones=zones, detectors=detectors)


def _windows(events: pl.DataFrame) -> list[scope.SourceWindow]:
    """Whole UTC days per log, as dwatch.watermark opens them for a batch."""
    days = events.select(
        "source_system", pl.col("occurred_at").dt.convert_time_zone("UTC").dt.date().alias("d")
    ).unique()
    out = []
    for source, day in days.iter_rows():
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        out.append((source, start, start + timedelta(days=1)))
    return out


def _open_alerts(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    return con.sql(
        "SELECT detector_id, alert_id, score, window_start, window_end, event_count, evidence,"
        " explanation FROM alerts WHERE status = 'open' ORDER BY detector_id, alert_id"
    ).pl()


def _row_level(detector_id: str) -> bool:
    """Rows are single events or days: an alert's evidence is the row's, whenever scored.
    (A first-seen combination's evidence is the window it was scored in.)"""
    keys = DETECTORS[detector_id].key_columns
    return "day" in keys or "event_id" in keys


@pytest.fixture
def split_store(
    tmp_path: Path, synthetic: tuple[pl.DataFrame, Injected]
) -> tuple[duckdb.DuckDBPyConnection, pl.DataFrame, Path]:
    """A store holding the history (scored whole by models trained on it), and the increment."""
    events, _ = synthetic
    rng = np.random.default_rng(1)
    earlier = np.flatnonzero((events["occurred_at"] < CUT).to_numpy())
    late = np.zeros(events.height, dtype=bool)
    late[rng.choice(earlier, LATE_EVENTS, replace=False)] = True
    new = (events["occurred_at"] >= CUT) | pl.Series(late)
    con = connect(tmp_path / "ml.duckdb")
    load_events(con, events.filter(~new))
    models = tmp_path / "models"
    config = _config()
    train_models(con, window_from=START, window_to=SPLIT, models_dir=models, config=config)
    score_models(con, run_id="history", models_dir=models, config=config)
    yield con, events.filter(new), models
    con.close()


def test_scoring_an_increment_writes_the_alerts_scoring_all_history_writes(
    split_store: tuple[duckdb.DuckDBPyConnection, pl.DataFrame, Path],
) -> None:
    con, increment, models = split_store
    config = _config()
    load_events(con, increment)
    windows = _windows(increment)
    incremental = score_models(
        con, run_id="increment", models_dir=models, config=config, windows=windows
    )
    after_increment = _open_alerts(con)
    con.execute("DELETE FROM alert_events; DELETE FROM alert_subjects; DELETE FROM alerts")
    whole = score_models(con, run_id="all", models_dir=models, config=config)
    after_whole = _open_alerts(con)

    assert after_whole["detector_id"].n_unique() >= 3  # not vacuous: most detectors alert
    in_increment = after_whole.filter(pl.col("window_end") >= CUT)
    assert in_increment.height > 0
    for detector_id in sorted(config.detectors):
        got = after_increment.filter(pl.col("detector_id") == detector_id)
        want = after_whole.filter(pl.col("detector_id") == detector_id)
        assert got["alert_id"].to_list() == want["alert_id"].to_list(), detector_id
        np.testing.assert_array_equal(got["score"], want["score"], err_msg=detector_id)
        if _row_level(detector_id):
            assert got.drop("score").equals(want.drop("score")), detector_id
    scored = {d.detector_id: d.rows_scored for d in incremental.detectors}
    everything = {d.detector_id: d.rows_scored for d in whole.detectors}
    assert sum(scored.values()) < sum(everything.values()) / 2, (scored, everything)


def test_a_detector_scores_only_days_holding_new_events_of_its_types(
    split_store: tuple[duckdb.DuckDBPyConnection, pl.DataFrame, Path],
) -> None:
    con, increment, models = split_store
    config = _config()
    # One day of new transfers and nothing else: the access detector has nothing to score.
    day = increment.filter(pl.col("event_type") == "disclosure")["occurred_at"].max().date()
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    new = increment.filter(
        (pl.col("event_type") == "disclosure")
        & (pl.col("occurred_at") >= start)
        & (pl.col("occurred_at") < start + timedelta(days=1))
    )
    load_events(con, new)
    summary = score_models(
        con, run_id="one-day", models_dir=models, config=config, windows=_windows(new)
    )
    by_id = {d.detector_id: d for d in summary.detectors}
    assert by_id["ml.actor_peers"].rows_scored == 0
    assert "no new events of its types" in by_id["ml.actor_peers"].message
    transfers = by_id["ml.transfer_surprise"]
    assert (
        transfers.days == 1
        and transfers.rows_scored
        == con.execute(
            "SELECT count(*) FROM disclosure_events WHERE event_type IN ('disclosure', 'redisclosure')"
            " AND occurred_at >= ? AND occurred_at < ?",
            [start, start + timedelta(days=1)],
        ).fetchone()[0]
    )
    # A backfill window ('*') stands for every log.
    summary = score_models(
        con,
        run_id="backfill",
        models_dir=models,
        config=config,
        windows=[(scope.ALL_SOURCES, start, start + timedelta(days=1))],
    )
    assert {d.detector_id: d.rows_scored for d in summary.detectors}["ml.transfer_surprise"] == (
        transfers.rows_scored
    )


def test_alert_ids_made_in_duckdb_are_the_detectors_own(
    ml_store: tuple[duckdb.DuckDBPyConnection, Injected, Path],
) -> None:
    con = ml_store[0]
    config = load_config()
    features.prepare_zones(con, config.time_zones)
    for detector_id, cls in sorted(DETECTORS.items()):
        det = cls(config.detectors[detector_id])
        frame = det.scoring_frame(con, SPLIT, END)
        assert frame.height > 0, detector_id
        keys = frame.select(det.alert_key_columns or det.key_columns)
        # A missing key part, as make_alert_id writes it.
        missing = pl.lit(None, dtype=keys.dtypes[0]).alias(keys.columns[0])
        keys = pl.concat([keys, keys.head(1).with_columns(missing)])
        scope.rescored_alerts(con, det, [keys], "_ids")
        made = {r[0] for r in con.execute("SELECT alert_id FROM _ids").fetchall()}
        assert made == set(det.alert_ids(keys)), detector_id


@pytest.mark.parametrize(
    ("frame", "event_types", "keys"),
    [
        (features.transfer_frame, ["disclosure"], ["source_system", "event_id"]),
        (features.pair_day_frame, ["disclosure"], ["disclosing_agency", "pair", "day"]),
        (features.actor_day_frame, ["access"], ["recipient_agency", "actor_id", "day"]),
    ],
)
def test_on_days_builds_every_row_touching_the_days_whole(
    ml_store: tuple[duckdb.DuckDBPyConnection, Injected, Path],
    frame: Callable[..., pl.DataFrame],
    event_types: list[str],
    keys: list[str],
) -> None:
    con = ml_store[0]
    features.prepare_zones(con, _config().time_zones)
    whole = frame(con, event_types=event_types)
    first = START.date()
    last = END.date() - timedelta(days=1)
    days = [first, first + timedelta(days=40), first + timedelta(days=41), last]
    with on_days(days):
        part = frame(con, event_types=event_types)
    assert 0 < part.height < whole.height
    assert part.sort(keys).equals(whole.filter(_touching(whole, days)).sort(keys))


def test_on_days_by_agency_builds_only_the_agencies_rows_whole(
    ml_store: tuple[duckdb.DuckDBPyConnection, Injected, Path],
) -> None:
    con = ml_store[0]
    features.prepare_zones(con, _config().time_zones)
    whole = features.actor_day_frame(con, event_types=["access"])
    first = START.date()
    days = [first + timedelta(days=40), first + timedelta(days=41), END.date() - timedelta(days=1)]
    keys = [(STATES[1], days[0]), (STATES[1], days[1]), (STATES[2], days[2])]
    with on_days(days, by=features.ACTOR_DAY_PARTITION, keys=keys):
        part = features.actor_day_frame(con, event_types=["access"])
    assert part.height > 0 and set(part["recipient_agency"]) == {STATES[1], STATES[2]}
    want = whole.filter(_touching(whole, days, features.ACTOR_DAY_PARTITION, keys))
    order = ["recipient_agency", "actor_id", "day"]
    assert part.sort(order).equals(want.sort(order))


def test_every_row_a_late_event_changes_is_in_its_detectors_scope(
    ml_store: tuple[duckdb.DuckDBPyConnection, Injected, Path],
    synthetic: tuple[pl.DataFrame, Injected],
) -> None:
    con = ml_store[0]
    events, _ = synthetic
    config = _config()
    features.prepare_zones(con, config.time_zones)
    dets = [cls(config.detectors[d]) for d, cls in sorted(DETECTORS.items()) if _row_level(d)]
    before = {det.detector_id: det.scoring_frame(con, None, None) for det in dets}
    # A late copy of one event of each type, in the middle of the history; the access
    # event in a log of its own (its windows then hold one agency's events only).
    middle = START + timedelta(days=60, hours=20)
    late = (
        events.filter(pl.col("occurred_at") >= middle)
        .group_by("event_type", maintain_order=True)
        .first()
        .with_columns(
            (pl.col("event_id") + "-late").alias("event_id"),
            pl.when(pl.col("event_type") == "access")
            .then(pl.lit("late-access-log"))
            .otherwise(pl.col("source_system"))
            .alias("source_system"),
        )
    )
    load_events(con, late)
    windows = _windows(late)
    for det in dets:
        after = det.scoring_frame(con, None, None).drop("event_ids", strict=False)
        keys = list(det.key_columns)
        changed = after.join(
            before[det.detector_id].drop("event_ids", strict=False),
            on=after.columns,
            how="anti",
            nulls_equal=True,
        )
        assert changed.height > 0, det.detector_id  # the late events change something
        where = scope.detector_scope(con, det, None, None, windows)
        assert where is not None and where.days is not None, det.detector_id
        outside = changed.filter(~_touching(changed, where.days, where.by, where.keys))
        assert outside.is_empty(), (det.detector_id, outside.select(keys).head())
        if where.by:  # partitioned: the log's own agency only, not every agency that day
            access = late.filter(pl.col("source_system") == "late-access-log")
            alone = scope.detector_scope(con, det, None, None, _windows(access))
            assert alone is not None and {v for v, _ in alone.keys} == set(access[where.by])


def _touching(
    frame: pl.DataFrame, days: list[date], by: str | None = None, keys: list[tuple[str, date]] = ()
) -> pl.Series:
    """Rows whose first or last event falls on one of ``days`` (or, with ``by``, one of the
    (value of ``by``, day) ``keys``)."""
    first = "first_at" if "first_at" in frame.columns else "occurred_at"
    last = "last_at" if "last_at" in frame.columns else "occurred_at"
    if by is None:
        return frame.select(
            pl.col(first).dt.date().is_in(days) | pl.col(last).dt.date().is_in(days)
        ).to_series()
    wanted = [f"{v}|{d}" for v, d in keys]
    return frame.select(
        (pl.col(by) + "|" + pl.col(first).dt.date().cast(pl.String)).is_in(wanted)
        | (pl.col(by) + "|" + pl.col(last).dt.date().cast(pl.String)).is_in(wanted)
    ).to_series()


def test_only_events_of_the_batches_that_opened_a_window_count_in_it(
    split_store: tuple[duckdb.DuckDBPyConnection, pl.DataFrame, Path],
) -> None:
    """A window opened by request items alone (items arriving after their events) holds
    no new event: no ML feature changed, so nothing is scored for it."""
    con, increment, models = split_store
    config = _config()
    day = increment.filter(pl.col("event_type") == "disclosure")["occurred_at"].max().date()
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    new = increment.filter(
        (pl.col("occurred_at") >= start) & (pl.col("occurred_at") < start + timedelta(days=1))
    )
    load_events(con, new.with_columns(pl.lit("batch-of-events").alias("ingest_run_id")))
    windows = _windows(new)
    arrived = score_models(
        con, run_id="events", models_dir=models, config=config, windows=windows,
        batches=["batch-of-events"],
    )  # fmt: skip
    items_only = score_models(
        con, run_id="items", models_dir=models, config=config, windows=windows,
        batches=["batch-of-items"],
    )  # fmt: skip
    assert all(d.rows_scored > 0 for d in arrived.detectors), arrived.detectors
    assert all(d.rows_scored == 0 for d in items_only.detectors), items_only.detectors
    assert all("no new events" in d.message for d in items_only.detectors)
