"""A flow judged against its own rhythm (detectors/ml/rhythm.py), on small synthetic flows.

One sender, four flows over a year of training and two months of scoring: a nightly flow
that runs 7 days a week, a working-day flow, a flow with a large bulk on the last business
day of every month (its month-end peaks are its habit) and a weekly flow. The alert floor
is the detectors' own: at most 1 alert per 10,000 lawful transfers of the training window
(:func:`detectors.ml.run.rate_floor`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from detectors.ml.rhythm import FlowRhythmSurprise, calendar_classes, class_name
from detectors.ml.run import rate_floor

SENDER = 7
NIGHTLY, WORKING_DAY, MONTH_END, WEEKLY = 1, 2, 3, 4
START = int(np.datetime64("2025-01-01").astype(np.int64))
TRAIN_DAYS, SCORE_DAYS = 365, 61


def _weekday(day: int) -> int:
    return (day + 3) % 7  # 0 = Monday


def _last_business_day(day: int) -> bool:
    return bool(calendar_classes(np.array([day]))[0, 1] == 7 + 4)


def _flow_days(first: int, days: int, rng: np.random.Generator) -> list[list[float]]:
    """Rows [sender, flow, day, transfers, records] of the lawful flows."""
    rows: list[list[float]] = []
    for day in range(first, first + days):
        rows.append([SENDER, NIGHTLY, day, 1, rng.normal(2_000, 150)])
        if _weekday(day) < 5:
            transfers = rng.poisson(6) + 1
            rows.append([SENDER, WORKING_DAY, day, transfers, transfers * rng.integers(20, 60)])
            month_end = _last_business_day(day)
            records = rng.normal(200_000, 20_000) if month_end else rng.normal(300, 40)
            rows.append([SENDER, MONTH_END, day, 3 if month_end else 2, records])
        if _weekday(day) == 2:
            rows.append([SENDER, WEEKLY, day, 1, rng.normal(5_000, 500)])
    return rows


def _with_sender_totals(rows: list[list[float]]) -> NDArray[np.float64]:
    """Append the sender's transfers and records that day (the flow's own included)."""
    table = np.array(rows, dtype=np.float64)
    table[:, 4] = np.maximum(np.round(table[:, 4]), 1)
    days, inverse = np.unique(table[:, 2], return_inverse=True)
    totals = np.zeros((days.size, 2))
    np.add.at(totals, inverse, table[:, 3:5])
    return np.column_stack([table, totals[inverse]])


@pytest.fixture(scope="module")
def fitted() -> tuple[FlowRhythmSurprise, float]:
    rng = np.random.default_rng(3)
    train = _with_sender_totals(_flow_days(START, TRAIN_DAYS, rng))
    model = FlowRhythmSurprise(
        n_key_columns=2, with_load=True, min_excess=[3, 100], count_measures=1
    ).fit(train)
    floor, _ = rate_floor(-model.score_samples(train), float(train[:, 3].sum()), 1.0)
    return model, floor


def _score(model: FlowRhythmSurprise, rows: list[list[float]]) -> dict[str, Any]:
    table = _with_sender_totals(rows)
    return {"rows": table, "score": -model.score_samples(table), **model.explain(table)}


def _later(rng_seed: int = 5) -> list[list[float]]:
    return _flow_days(START + TRAIN_DAYS, SCORE_DAYS, np.random.default_rng(rng_seed))


def test_fit_returns_self_with_learned_attributes() -> None:
    train = _with_sender_totals(_flow_days(START, 60, np.random.default_rng(0)))
    model = FlowRhythmSurprise(n_key_columns=2, with_load=True)
    assert model.fit(train) is model
    assert model.flows_.size == 4 and model.class_active_.shape == (4, 24)


def test_a_nightly_flow_is_not_alerted_on_weekends(
    fitted: tuple[FlowRhythmSurprise, float],
) -> None:
    model, floor = fitted
    scored = _score(model, _later())
    nightly = scored["rows"][:, 1] == NIGHTLY
    weekend = np.array([_weekday(int(d)) >= 5 for d in scored["rows"][:, 2]])
    assert (nightly & weekend).sum() >= 16
    assert scored["score"][nightly].max() < floor
    # Its weekend nights are as usual as its weekdays: no cadence surprise at all.
    assert scored["cadence"][nightly & weekend].max() < 0.5


def test_a_working_day_flow_running_on_a_sunday_is_alerted(
    fitted: tuple[FlowRhythmSurprise, float],
) -> None:
    model, floor = fitted
    sunday = next(d for d in range(START + TRAIN_DAYS, START + TRAIN_DAYS + 7) if _weekday(d) == 6)
    rows = [*_later(), [SENDER, WORKING_DAY, sunday, 7, 280]]
    scored = _score(model, rows)
    hit = (scored["rows"][:, 1] == WORKING_DAY) & (scored["rows"][:, 2] == sunday)
    assert scored["score"][hit][0] >= floor
    assert class_name(int(scored["cadence_class"][hit][0])) == "Sundays"
    assert scored["class_active"][hit][0] == 0 and scored["class_days"][hit][0] >= 50
    # Its usual working days, and everything else lawful, stay under the floor.
    assert scored["score"][~hit].max() < floor


def test_a_30x_record_extract_at_the_usual_transfer_count_is_found(
    fitted: tuple[FlowRhythmSurprise, float],
) -> None:
    model, floor = fitted
    rows = _later()
    day = START + TRAIN_DAYS + 20
    extract = next(r for r in rows if r[1] == NIGHTLY and r[2] == day)
    extract[4] *= 30  # one transfer, as every night, thirty times the records
    scored = _score(model, rows)
    hit = (scored["rows"][:, 1] == NIGHTLY) & (scored["rows"][:, 2] == day)
    assert scored["rows"][hit][0, 3] == 1
    assert scored["score"][hit][0] >= floor
    assert scored["volume"][hit][0, 1] > 0 and scored["volume"][hit][0, 0] == 0
    assert scored["expected"][hit][0, 1] < 2_500
    assert scored["score"][~hit].max() < floor


def test_month_end_peaks_are_not_alerted(fitted: tuple[FlowRhythmSurprise, float]) -> None:
    model, floor = fitted
    scored = _score(model, _later())
    month_end = (scored["rows"][:, 1] == MONTH_END) & (scored["rows"][:, 4] > 100_000)
    assert month_end.sum() == 2
    assert scored["score"][month_end].max() < floor
    # A month-end thirty times its usual month-end is not the flow's habit.
    end = next(r for r in _later() if r[1] == MONTH_END and _last_business_day(int(r[2])))
    odd = _score(model, [[*end[:4], 30 * end[4]]])
    assert odd["score"][0] >= floor and odd["volume"][0, 1] > 0


def test_a_small_excess_does_not_count(fitted: tuple[FlowRhythmSurprise, float]) -> None:
    model, _ = fitted
    day = next(d for d in range(START + TRAIN_DAYS, START + TRAIN_DAYS + 7) if _weekday(d) == 2)
    # Weekly flow: 5,000 records usually; 5,090 is above its median but under min_excess.
    scored = _score(model, [[SENDER, WEEKLY, day, 1, 5_090]])
    assert scored["volume"][0].max() == 0


def test_a_flow_without_history_is_not_judged(fitted: tuple[FlowRhythmSurprise, float]) -> None:
    model, _ = fitted
    scored = _score(model, [[SENDER, 99, START + TRAIN_DAYS, 500, 5_000_000]])
    assert scored["score"][0] == 0 and not scored["judged"][0]


def test_the_rate_floor_allows_at_most_the_stated_rate() -> None:
    rng = np.random.default_rng(1)
    scores = rng.exponential(1.0, 200_000)
    floor, alerts = rate_floor(scores, events=200_000, per_10k=1.0)
    assert alerts <= 20 and floor <= scores.max()
    # Fewer rows than the rate can resolve: the fitted tail puts the floor past the maximum
    # of an exponential sample about where its true 1-in-10,000 point lies (ln 10,000).
    small = scores[:2_000]
    floor_small, alerts_small = rate_floor(small, events=2_000, per_10k=1.0)
    assert alerts_small == 0 and floor_small > small.max()
    assert abs(floor_small - np.log(10_000)) < 2.5


def test_a_fitted_tail_that_held_out_rows_contradict_is_raised() -> None:
    """A short window (0.5 alerts allowed) whose three highest rows stand well clear of an
    exponential bulk: the tail fitted to the 20 highest puts the floor below all three,
    more than a Poisson count of mean 0.5 reaches in 95% of windows (2), so the floor rises
    until only that many reach it."""
    rng = np.random.default_rng(3)
    scores = np.concatenate([rng.exponential(1.0, 5_000), [14.0, 14.2, 14.4]])
    floor, alerts = rate_floor(scores, events=5_000, per_10k=1.0)
    assert alerts == 2 and 14.0 < floor <= 14.2
