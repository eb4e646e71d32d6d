"""Training on a summary summed in DuckDB (distinct feature rows with their counts,
detectors/ml/summary.py; sums per user and agency, detectors/ml/count_summary.py) fits the
model the rows themselves fit, and reads the same alert floor off it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import duckdb
import numpy as np
import pytest
import skops.io as sio
from ml_synthetic import SPLIT, START, Injected

from detectors.ml import run
from detectors.ml.detectors import DETECTORS, ActorPeers, TransferSurprise
from detectors.ml.registry import MLConfig, ModelRecord, load_config
from detectors.ml.surprise import ConditionalSurprise

SUMMARIZED = sorted(d for d, cls in DETECTORS.items() if cls.fits_summary)


def _rows_and_summary(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows with many repeats, and their distinct rows with how often each occurs."""
    rng = np.random.default_rng(seed)
    rows = np.column_stack(
        [rng.integers(0, 4, 3000), rng.integers(0, 6, 3000), rng.integers(0, 3, 3000)]
    ).astype(np.uint64)
    distinct, counts = np.unique(rows, axis=0, return_counts=True)
    return rows, distinct, counts.astype(np.float64)


def test_a_weighted_fit_on_distinct_rows_is_the_fit_on_the_rows() -> None:
    rows, distinct, counts = _rows_and_summary(3)
    terms = [(0, ((1,), (1, 2))), (2, ((1,),))]
    on_rows = ConditionalSurprise(terms=terms).fit(rows)
    summed = ConditionalSurprise(terms=terms).fit(distinct, sample_weight=counts)
    assert distinct.shape[0] < rows.shape[0] / 10
    assert summed.n_samples_fit_ == on_rows.n_samples_fit_ == 3000
    assert summed.offset_ == on_rows.offset_
    for (cats_a, n_a), (cats_b, n_b) in zip(
        summed.value_counts_, on_rows.value_counts_, strict=True
    ):
        assert np.array_equal(cats_a, cats_b) and np.array_equal(n_a, n_b)
    assert np.array_equal(summed.score_samples(rows), on_rows.score_samples(rows))
    # A row counted zero times is not there.
    dropped = counts.copy()
    dropped[::5] = 0
    keep = dropped > 0
    assert np.array_equal(
        ConditionalSurprise(terms=terms).fit(distinct, sample_weight=dropped).score_samples(rows),
        ConditionalSurprise(terms=terms)
        .fit(distinct[keep], sample_weight=counts[keep])
        .score_samples(rows),
    )


@pytest.mark.parametrize("per_10k", [0.5, 1.0, 50.0, 400.0])
def test_the_rate_floor_of_counted_scores_is_the_floor_of_the_rows(per_10k: float) -> None:
    rng = np.random.default_rng(5)
    distinct = np.round(rng.gamma(2.0, 3.0, 400), 1)  # ties, as distinct rows' scores have
    counts = rng.integers(1, 40, distinct.size).astype(np.float64)
    rows = np.repeat(distinct, counts.astype(np.int64))
    events = float(rows.size)
    assert run.rate_floor(distinct, events, per_10k, counts) == run.rate_floor(
        rows, events, per_10k
    )
    # Rows counted zero times (rule-flagged ones left out) are not there at all.
    kept = np.where(np.arange(distinct.size) % 7 == 0, 0.0, counts)
    assert run.rate_floor(distinct, events, per_10k, kept) == run.rate_floor(
        np.repeat(distinct, kept.astype(np.int64)), events, per_10k
    )


def _config(summarized: bool) -> MLConfig:
    config = load_config()
    on = {d: dataclasses.replace(s, enabled=d in SUMMARIZED) for d, s in config.detectors.items()}
    return dataclasses.replace(config, detectors=on)


def _trained(
    con: duckdb.DuckDBPyConnection, models: Path, monkeypatch: pytest.MonkeyPatch, summed: bool
) -> dict[str, ModelRecord]:
    with monkeypatch.context() as patch:
        for detector_id in SUMMARIZED:
            patch.setattr(DETECTORS[detector_id], "fits_summary", summed)
        results = run.train_models(
            con, window_from=START, window_to=SPLIT, models_dir=models, config=_config(summed)
        )
    assert {r.status for r in results} == {"trained"}
    assert all(("summed in DuckDB" in r.message) == summed for r in results)
    return {r.detector_id: r.record for r in results if r.record is not None}


def test_the_summary_trains_the_model_and_floor_the_rows_train(
    ml_store: tuple[duckdb.DuckDBPyConnection, Injected, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert [ActorPeers.detector_id, TransferSurprise.detector_id] == SUMMARIZED
    con, _, models = ml_store
    # Some transfers named by an open rule alert: the floor leaves them out either way.
    for alert_id, kind, status in (("al-open", "rule", "open"), ("al-gone", "rule", "retracted")):
        con.execute(
            "INSERT INTO alerts (alert_id, detector_id, detector_kind, detector_version, severity,"
            " entity_type, entity_id, explanation, status, first_detected_at)"
            " VALUES (?, 'some_rule', ?, '1', 'low', 'event', 'x', 'test', ?, now())",
            [alert_id, kind, status],
        )
    # 40 transfers of the first days named by the open alert, 40 more by the retracted one.
    con.execute(
        """
        INSERT INTO alert_events
        SELECT CASE WHEN row_number() OVER (ORDER BY occurred_at, event_id) <= 40
                    THEN 'al-open' ELSE 'al-gone' END,
               source_system, event_id, event_type, NULL, 'finding'
        FROM disclosure_events WHERE event_type = 'disclosure'
        ORDER BY occurred_at, event_id LIMIT 80
        """
    )
    rows = _trained(con, models / "rows", monkeypatch, summed=False)
    summed = _trained(con, models / "summed", monkeypatch, summed=True)
    for detector_id in SUMMARIZED:
        a, b = rows[detector_id], summed[detector_id]
        assert (a.threshold, a.training_rows, a.train_from, a.train_to) == (
            b.threshold,
            b.training_rows,
            b.train_from,
            b.train_to,
        )
        meta = {k: v for k, v in b.metadata.items() if k != "training_summary"}
        assert meta == a.metadata
        assert a.metadata["alert_floor"]["training_rows"] > 1000
        # The transfers an open rule alert names (user-days are not told apart by them).
        named = 40 if detector_id == TransferSurprise.detector_id else 0
        assert a.metadata["alert_floor"]["rule_flagged_rows"] == named
        fitted = [
            sio.load(r.path, trusted=sio.get_untrusted_types(file=r.path))[-1] for r in (a, b)
        ]
        learned = [{k: v for k, v in vars(m).items() if k.endswith("_")} for m in fitted]
        assert learned[0].keys() == learned[1].keys()
        for name, value in learned[0].items():
            if name == "offset_" and detector_id == ActorPeers.detector_id:
                # Sums give no in-sample scores: the rate floor replaces the offset.
                assert np.isnan(learned[1][name]) and np.isfinite(value)
                continue
            assert _same(value, learned[1][name]), (detector_id, name)


def _same(a: object, b: object) -> bool:
    """Equal learned attributes: arrays value for value and of one dtype, lists of them."""
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray)
        return a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
    if isinstance(a, list | tuple):
        assert isinstance(b, list | tuple)
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        assert isinstance(b, dict)
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, float) and np.isnan(a):
        return isinstance(b, float) and np.isnan(b)
    return bool(a == b)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_window_s_middle_day_is_the_middle_row_s(seed: int) -> None:
    """count_summary._totals reads the middle row's day off rows per day; it is the day of
    the row at half the count in day order, nulls first (as held_out_scores splits)."""
    from detectors.ml import count_summary

    n = int(np.random.default_rng(seed).integers(1, 400))
    con = duckdb.connect()
    con.execute(
        f"CREATE TEMP TABLE {count_summary._TABLE} AS SELECT CASE WHEN hash(range, $s) % 20 = 0"
        " THEN NULL ELSE DATE '2026-01-01' + CAST(hash(range, $s, 1) % 9 AS INTEGER) END AS day,"
        " CAST(hash(range, $s, 2) % 30 AS BIGINT) AS events FROM range($n)",
        {"n": n, "s": seed},
    )
    rows, events = con.execute(
        f"SELECT count(*), sum(events) FROM {count_summary._TABLE}"
    ).fetchall()[0]
    middle = con.execute(
        f"SELECT day FROM {count_summary._TABLE} ORDER BY day NULLS FIRST LIMIT 1 OFFSET $k",
        {"k": rows // 2},
    ).fetchall()[0][0]
    assert count_summary._totals(con) == (rows, float(events), middle)
