"""Behaviour of the ML estimators on small frames whose answers are known."""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import IsolationForest
from sklearn.pipeline import make_pipeline

from detectors.ml.estimators import (
    CyclicalEncoder,
    FirstSeenDetector,
    GroupedRobustZ,
    RarityEncoder,
)


def test_rarity_encoder_ranks_rare_and_unseen_values_highest() -> None:
    X = np.array([["sftp"]] * 98 + [["email"]] * 2, dtype=object)
    enc = RarityEncoder().fit(X)
    out = enc.transform(np.array([["sftp"], ["email"], ["fax"]], dtype=object))[:, 0]
    assert out[0] < out[1] < out[2]
    assert list(enc.get_feature_names_out(["channel"])) == ["channel_rarity"]


def test_cyclical_encoder_puts_midnight_next_to_eleven_pm() -> None:
    enc = CyclicalEncoder(period=24).fit(np.arange(24.0).reshape(-1, 1))
    out = enc.transform(np.array([[23.0], [0.0], [12.0]]))
    assert np.linalg.norm(out[0] - out[1]) < np.linalg.norm(out[1] - out[2])


def _seasonal_history() -> np.ndarray:
    """One pair: 100 records on ordinary days, 50,000 at month end, 12 months."""
    rows = []
    for _month in range(12):
        rows += [["pair-a", "mid", np.log1p(100 + d)] for d in range(20)]
        rows += [["pair-a", "month_end", np.log1p(50_000 + 10 * d)] for d in range(3)]
    return np.array(rows, dtype=object)


def test_grouped_robust_z_is_robust_to_the_pairs_own_seasonality() -> None:
    model = GroupedRobustZ(n_key_columns=2, min_history=5).fit(_seasonal_history())
    new = np.array(
        [
            ["pair-a", "month_end", np.log1p(50_500)],  # the usual month-end bulk
            ["pair-a", "mid", np.log1p(50_500)],  # the same volume mid-month: a spike
            ["pair-a", "mid", np.log1p(110)],
        ],
        dtype=object,
    )
    pred = model.predict(new)
    assert list(pred) == [1, -1, 1]
    anomaly = -model.score_samples(new)
    assert anomaly[1] > 10 * max(anomaly[0], anomaly[2], 1.0)
    base = model.baseline(new)
    assert list(base["level"]) == [2, 2, 2]
    assert np.expm1(base["median"][1, 0]) < 200


def test_grouped_robust_z_falls_back_to_coarser_peers_when_history_is_short() -> None:
    rows = [["AG1", "analyst", np.log1p(40 + i % 7)] for i in range(200)]
    rows += [["AG1", "auditor", np.log1p(300)]] * 2  # too few for their own baseline
    model = GroupedRobustZ(n_key_columns=2, min_history=5).fit(np.array(rows, dtype=object))
    base = model.baseline(np.array([["AG1", "auditor", np.log1p(300)]], dtype=object))
    assert base["level"][0] == 1  # the agency, not the role
    assert model.predict(np.array([["AG1", "analyst", np.log1p(18_400)]], dtype=object))[0] == -1


def test_first_seen_detector_flags_only_new_combinations() -> None:
    seen = np.array([["SSA", "6103(l)(1)", "api"], ["FTB", "6103(d)(1)", "sftp"]] * 5, dtype=object)
    model = FirstSeenDetector().fit(seen)
    new = np.array([["SSA", "6103(l)(1)", "api"], ["SSA", "6103(l)(1)", "email"]], dtype=object)
    assert list(model.predict(new)) == [1, -1]
    assert list(model.seen_counts(new)) == [5, 0]


def test_transfer_pipeline_isolates_an_off_hours_rare_channel_transfer() -> None:
    rng = np.random.default_rng(0)
    n = 2000
    hours = rng.integers(8, 18, n).astype(float)
    channels = rng.choice(["sftp", "api"], n).astype(object)
    X = np.column_stack([channels, hours])
    from sklearn.compose import ColumnTransformer

    pipe = make_pipeline(
        ColumnTransformer([("rare", RarityEncoder(), [0]), ("hour", CyclicalEncoder(24), [1])]),
        IsolationForest(random_state=0),
    ).fit(X)
    test = np.array([["sftp", 10.0], ["removable_media", 3.0]], dtype=object)
    scores = -pipe.score_samples(test)
    assert scores[1] > scores[0]


def test_conditional_rarity_is_the_same_for_text_and_integer_codes() -> None:
    from detectors.ml.estimators import ConditionalRarityEncoder

    text = np.array(
        [["CA", "api"]] * 30 + [["CA", "sftp"]] * 2 + [["NY", "sftp"]] * 10, dtype=object
    )
    codes = {"CA": 11, "NY": 12, "api": 21, "sftp": 22, "email": 23, "XX": 13}
    as_int = np.vectorize(codes.get)(text).astype(np.uint64)
    probe = np.array(
        [["CA", "api"], ["CA", "sftp"], ["NY", "sftp"], ["CA", "email"], ["XX", "api"]],
        dtype=object,
    )
    by_text = ConditionalRarityEncoder().fit(text).transform(probe)[:, 0]
    by_code = (
        ConditionalRarityEncoder()
        .fit(as_int)
        .transform(np.vectorize(codes.get)(probe).astype(np.uint64))[:, 0]
    )
    np.testing.assert_allclose(by_text, by_code)
    # sftp is common overall but rare for CA; a never-seen channel is rarest for a known key.
    assert by_text[0] < by_text[1] < by_text[3]
    assert by_text[2] < by_text[1]
