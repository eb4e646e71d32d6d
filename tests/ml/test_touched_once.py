"""An increment's scoring reads the events its windows touch once for every detector
(detectors/ml/scope.py, Touched), and each detector's share of them is what reading its
own event types alone gives."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest
from ml_synthetic import SPLIT, START, Injected

from detectors.ml import scope
from detectors.ml.detectors import DETECTORS
from detectors.ml.registry import load_config
from detectors.ml.run import score_models, train_models

Store = tuple[duckdb.DuckDBPyConnection, Injected, Path]


def _windows(con: duckdb.DuckDBPyConnection) -> list[scope.SourceWindow]:
    """Every log's window on a few days, one log's on a few more, and a backfill day."""
    sources = [
        r[0]
        for r in con.execute(
            "SELECT DISTINCT source_system FROM disclosure_events ORDER BY 1"
        ).fetchall()
    ]
    day = datetime.combine(SPLIT.date(), datetime.min.time(), tzinfo=UTC)
    out = [
        (s, day + timedelta(days=k), day + timedelta(days=k + 1)) for s in sources for k in (0, 3)
    ]
    out += [(sources[0], day + timedelta(days=k), day + timedelta(days=k + 1)) for k in (5, 6)]
    return [*out, (scope.ALL_SOURCES, day - timedelta(days=9), day - timedelta(days=8))]


def _expected(
    events: pl.DataFrame, windows: list[scope.SourceWindow], types: list[str], by: str | None
) -> list[tuple[str, object]]:
    """The (value of ``by``, UTC day) pairs of the windows' events of ``types``, in Polars."""
    day = pl.col("occurred_at").dt.convert_time_zone("UTC").dt.date()
    picked = []
    for source, start, _ in windows:
        rows = events.filter(pl.col("event_type").is_in(types) & (day == start.date()))
        if source != scope.ALL_SOURCES:
            rows = rows.filter(pl.col("source_system") == source)
        value = pl.col(by).fill_null("") if by else pl.lit("")
        picked += rows.select(value.alias("v"), day.alias("d")).rows()
    return sorted(set(picked), key=lambda pair: (pair[1], pair[0]))


def test_each_detector_s_share_of_the_events_read_once_is_its_own(ml_store: Store) -> None:
    con, _, _ = ml_store
    windows = _windows(con)
    events = con.sql("SELECT * FROM disclosure_events").pl()
    detectors = list(DETECTORS.values())
    every = {
        t for cls in detectors for t in cls(load_config().detectors[cls.detector_id]).event_types
    }
    read = scope.Touched.read(con, every, windows, ["recipient_agency"])
    for cls in detectors:
        det = cls(load_config().detectors[cls.detector_id])
        expected = _expected(events, windows, det.event_types, det.scope_by)
        assert expected, det.detector_id
        assert read.of(det.event_types, det.scope_by) == expected, det.detector_id
        assert scope.touched(con, det.event_types, windows, det.scope_by) == expected


def test_scoring_an_increment_reads_its_windows_once(
    ml_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    con, _, models = ml_store
    train_models(con, window_from=START, window_to=SPLIT, models_dir=models)
    reads: list[scope.Touched] = []
    original = scope.Touched.read.__func__  # type: ignore[attr-defined]

    def counted(cls: type[scope.Touched], *args: object, **kwargs: object) -> scope.Touched:
        reads.append(original(cls, *args, **kwargs))
        return reads[-1]

    monkeypatch.setattr(scope.Touched, "read", classmethod(counted))
    summary = score_models(con, run_id="r1", models_dir=models, windows=_windows(con))
    assert len(reads) == 1
    assert sum(1 for d in summary.detectors if d.days) >= 4


def test_any_touched_answers_as_listing_the_touched_days(ml_store: Store) -> None:
    """The idle check's early-ending read agrees with the full list, window by window
    (each log's own, a backfill's, a day with no event, a type no event has)."""
    con, _, _ = ml_store
    windows = _windows(con)
    empty_day = (windows[0][0], datetime(1999, 1, 1, tzinfo=UTC), datetime(1999, 1, 2, tzinfo=UTC))
    batches = [r[0] for r in con.execute("SELECT run_id FROM ingest_runs ORDER BY 1").fetchall()]
    cases = [[w] for w in windows] + [[empty_day], [], windows]
    for types in (["disclosure"], ["access", "receipt"], ["no-such-type"]):
        for chosen in cases:
            for by_batch in (None, batches, batches[:1]):
                listed = scope.touched(con, types, chosen, None, by_batch)
                assert scope.any_touched(con, types, chosen, by_batch) == bool(listed)
    assert scope.any_touched(con, ["disclosure"], windows)
    assert not scope.any_touched(con, ["disclosure"], [empty_day])
