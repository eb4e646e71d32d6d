"""The likelihood-based estimators behave as their docstrings say, on hand-made data."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import poisson
from sklearn.base import clone

from detectors.ml.surprise import ConditionalSurprise, CountRateSurprise, poisson_surprise


def test_poisson_surprise_matches_the_poisson_tail_and_keeps_growing_past_underflow() -> None:
    x = np.array([0.0, 1.0, 3.0, 10.0])
    mu = np.array([2.0, 2.0, 2.0, 2.0])
    expected = -poisson.logsf(x - 1, mu)
    assert np.allclose(poisson_surprise(x, mu)[1:], expected[1:])
    assert poisson_surprise(x, mu)[0] == 0.0
    far = poisson_surprise(np.array([400.0, 800.0]), np.array([0.5, 0.5]))
    assert np.all(np.isfinite(far)) and far[1] > far[0] > 690


def _transfers() -> np.ndarray:
    """Columns: channel, recipient. Recipient A always uses sftp; B uses email and sftp."""
    rows = [("sftp", "A")] * 200 + [("email", "B")] * 100 + [("sftp", "B")] * 100
    return np.array(rows, dtype=object)


def test_conditional_surprise_judges_a_value_given_its_key() -> None:
    model = ConditionalSurprise(terms=[(0, ((1,),))]).fit(_transfers())
    probe = np.array([("email", "A"), ("email", "B"), ("sftp", "A")], dtype=object)
    s = -model.score_samples(probe)
    # Email is ordinary for B, never used by A: rare given the recipient.
    assert s[0] > s[1] + 3 and s[2] < 0.1
    key_n, pair_n = model.term_counts(probe)
    assert key_n[0, 0] == 200 and pair_n[0, 0] == 0 and pair_n[1, 0] == 100


def test_conditional_surprise_backs_off_to_the_parent_for_an_unseen_key() -> None:
    model = ConditionalSurprise(terms=[(0, ((1,),))]).fit(_transfers())
    unseen = -model.score_samples(np.array([("sftp", "C"), ("fax", "C")], dtype=object))
    # A new recipient is judged on everyone's channels: sftp common, fax never seen.
    assert unseen[0] < 1.0 and unseen[1] > 5.0


def test_conditional_surprise_adds_independent_rarities() -> None:
    x = np.array(
        [(a, b) for a in "xy" for b in "uv" for _ in range(50)] + [("z", "u")], dtype=object
    )
    model = ConditionalSurprise().fit(x)
    s = -model.score_samples(np.array([("z", "w"), ("z", "u"), ("x", "u")], dtype=object))
    assert s[0] > s[1] > s[2]


def test_conditional_surprise_rejects_a_term_outside_the_columns() -> None:
    with pytest.raises(ValueError, match="outside the 2 input columns"):
        ConditionalSurprise(terms=[(0, ((5,),))]).fit(_transfers())


def _user_days(rng: np.random.Generator) -> np.ndarray:
    """[agency, role group, user, day, reads, reads_7d, agency_reads, agency_reads_7d] rows:
    one agency, 20 users in one role reading ~1 a day; user 0 is a heavy but steady reader."""
    rows = []
    rates = np.full(20, 1.0)
    rates[0] = 6.0
    counts = rng.poisson(rates[:, None], size=(20, 120)).astype(float)
    agency = counts.sum(axis=0)
    for u in range(20):
        for d in range(120):
            if counts[u, d] == 0:
                continue
            lo = max(0, d - 6)
            rows.append([1, 11, 100 + u, d, counts[u, d], counts[u, lo : d + 1].sum(),
                         agency[d], agency[lo : d + 1].sum()])  # fmt: skip
    return np.array(rows, dtype=np.float64)


def test_count_rate_surprise_judges_a_user_by_the_larger_of_own_habit_and_peers() -> None:
    rng = np.random.default_rng(0)
    model = CountRateSurprise(n_key_columns=3, with_load=True, windows=1).fit(_user_days(rng))
    # Eight reads: about the heavy reader's normal day, an ordinary peer's outlier.
    probe = np.array(
        [[1, 11, 100, 200, 8, 45, 30, 150], [1, 11, 105, 200, 8, 10, 30, 150]], dtype=np.float64
    )
    s = -model.score_samples(probe)
    assert s[0] < 3 and s[1] > 8
    ex = model.explain(probe)
    assert ex["own"][0, 0] > 4 and ex["peer"][1, 0] == pytest.approx(1.0, abs=0.3)


def test_count_rate_surprise_scales_expectations_with_the_units_workload() -> None:
    rng = np.random.default_rng(1)
    model = CountRateSurprise(n_key_columns=3, with_load=True).fit(
        _user_days(rng)[:, [0, 1, 2, 3, 4, 6]]
    )
    quiet = np.array([[1, 11, 105, 200, 4, 4 + 25]], dtype=np.float64)  # a usual day
    busy = np.array([[1, 11, 105, 200, 4, 4 + 75]], dtype=np.float64)  # everyone 3x busier
    assert -model.score_samples(busy)[0] < -model.score_samples(quiet)[0]
    assert model.explain(busy)["load"][0, 0] == pytest.approx(3.0, rel=0.2)


def test_count_rate_surprise_counts_the_window_only_on_days_that_build_it() -> None:
    rng = np.random.default_rng(2)
    model = CountRateSurprise(n_key_columns=3, with_load=True, windows=1).fit(_user_days(rng))
    browsing = np.array([[1, 11, 105, 200, 6, 35, 30, 150]], dtype=np.float64)
    after = np.array([[1, 11, 105, 201, 1, 35, 30, 150]], dtype=np.float64)
    ex_b, ex_a = model.explain(browsing), model.explain(after)
    assert ex_b["window_surprise"][0, 0] > 10
    assert ex_a["window_surprise"][0, 0] == 0.0
    assert -model.score_samples(browsing)[0] > -model.score_samples(after)[0] + 10


def test_count_rate_surprise_without_peers_does_not_judge_an_unknown_entity() -> None:
    rng = np.random.default_rng(3)
    model = CountRateSurprise(n_key_columns=3, with_load=True, peers=False).fit(
        _user_days(rng)[:, [0, 1, 2, 3, 4, 6]]
    )
    unknown = np.array([[1, 11, 999, 200, 50, 80]], dtype=np.float64)
    assert model.score_samples(unknown)[0] == 0.0


def test_count_rate_surprise_names_a_bad_layout() -> None:
    with pytest.raises(ValueError, match="blocks of 4 count column"):
        CountRateSurprise(n_key_columns=3, with_load=True, windows=1).fit(np.ones((10, 6)))


def test_count_rate_surprise_takes_the_strongest_window_containing_the_day() -> None:
    rng = np.random.default_rng(4)
    rows = _user_days(rng)
    # Second window = the same trailing sums (a stand-in for "the 7 days from then").
    two = rows[:, [0, 1, 2, 3, 4, 5, 5, 6, 7, 7]]
    model = CountRateSurprise(n_key_columns=3, with_load=True, windows=2).fit(two)
    # The first day of an episode: little behind it, a busy week ahead of it.
    first_day = np.array([[1, 11, 105, 200, 5, 5, 35, 30, 150, 150]], dtype=np.float64)
    ex = model.explain(first_day)
    assert ex["window_surprises"][0, 0, 1] > ex["window_surprises"][0, 0, 0] + 10
    assert ex["window_surprise"][0, 0] == ex["window_surprises"][0, 0, 1]
    assert -model.score_samples(first_day)[0] == pytest.approx(ex["window_surprise"][0, 0])


def test_conditional_surprise_bins_measurements_and_keeps_codes_as_categories() -> None:
    rng = np.random.default_rng(5)
    measurements = rng.normal(0.0, 1.0, size=(500, 1))
    model = ConditionalSurprise(n_bins=10).fit(measurements)
    s = -model.score_samples(np.array([[0.0], [3.2]]))
    assert s[1] > s[0] + 2  # the sparse tail bin is rarer than the crowded middle
    codes = np.array([[7], [7], [9]] * 50, dtype=np.uint64)
    coded = ConditionalSurprise().fit(codes)
    assert coded.bin_edges_ == {}  # integer codes are categories, never binned
    assert -coded.score_samples(np.array([[8]], dtype=np.uint64))[0] > 4


def test_a_fit_without_its_offset_learns_the_same_model() -> None:
    """``offset=False`` (a held-out fold's model) skips only the pass that sets offset_."""
    rng = np.random.default_rng(5)
    rows = _user_days(rng)
    rows = np.vstack([rows, rows[:40] * [2, 1, 1, 1, 1, 1, 1, 1]])  # a second agency
    probe = _user_days(np.random.default_rng(6))
    cases = [
        (CountRateSurprise(n_key_columns=3, with_load=True, windows=1), rows, probe),
        (ConditionalSurprise(terms=[(0, ((1,),))]), _transfers(), _transfers()[::7]),
    ]
    for make, train, scored in cases:
        whole = clone(make).fit(train)
        lean = clone(make).fit(train, offset=False)
        assert np.isfinite(whole.offset_) and np.isnan(lean.offset_)
        assert np.array_equal(whole.score_samples(scored), lean.score_samples(scored))


def test_count_rate_surprise_counts_each_units_active_days_once() -> None:
    """Exposure and the unit's mean daily total, against a count by hand."""
    rng = np.random.default_rng(7)
    rows = _user_days(rng)
    rows = np.vstack([rows, rows[::3] * [3, 1, 1, 1, 1, 1, 1, 1] + [0, 0, 0, 500, 0, 0, 0, 0]])
    model = CountRateSurprise(n_key_columns=3, with_load=True, windows=1).fit(rows)
    for u, unit in enumerate(model.units_):
        mine = rows[rows[:, 0] == unit]
        days = {d: total for d, total in zip(mine[:, 3], mine[:, 6], strict=True)}
        assert model.unit_exposure_[u] == len(days)
        assert model.unit_mean_total_[u, 0] == pytest.approx(np.mean(list(days.values())))
        span = mine[:, 3].max() - mine[:, 3].min() + 1
        assert model.unit_active_share_[u] == pytest.approx(len(days) / span)
