"""A log's own coverage of a flow: silent for a flow that goes on being recorded elsewhere.

A flow (sender and recipient, over one channel) is often written to more than one log: the
sender's transfer log and the recipient's receipt log, or two appliances. Judged per flow,
a log that stops recording it is invisible as long as another log still does.
:class:`LogCoverageSurprise` learns, per (log, flow), how this log records the days the
flow was recorded in *other* logs (within a day of them), as a two-state chain over those
days: ``a``, the chance it misses a day after recording the one before, and ``b``, the
chance it misses a day after missing the one before (misses that come in clusters, an
appliance down for two days, teach a high ``b``; with no clusters seen, ``b`` stays near
``a``, as if days were independent). A run of ``k`` missed days has probability
``a b^(k-1)`` of starting on a given day; over the ``n`` days of a window like the
training one, a run that long turns up by chance about ``n a b^(k-1)`` times. The score is
``-ln`` of that chance (0 when it is 1 or more): the surprise of the run *given how many
days the log had to produce one*, so a flow recorded every day is not judged more harshly
for having more days. A log that often misses a flow's days teaches high ``a`` and ``b``,
so a few missed days are nothing; a log that recorded the flow on all of 200 days and then
misses five in a row is. A flow that stops altogether is not a coverage question (no log
records it: the flow's own cadence in ``ml.recipient_volume`` is). Knows nothing of
DuckDB, alerts or agencies.
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted, validate_data

from detectors.ml.estimators import _as_keys, _lookup
from detectors.ml.surprise import _SurpriseOutlier


class LogCoverageSurprise(_SurpriseOutlier):
    """Surprise of a run of days a log missed a flow that other logs recorded.

    Column layout: ``[key] [logged_here] [missed_in_a_row]``: the (log, flow) key, the
    log's events of the flow that day (0 = missed) and how many of the flow's days in a row
    this log has missed up to and including this one (0 when it logged the day). Each row
    is a day on which other logs recorded the flow.

    Learned per key: ``n_days_`` such days, ``logged_days_`` of them this log recorded,
    ``miss_after_logged_`` (``a``: runs started / logged days, additively smoothed towards
    ``prior``) and ``miss_after_missed_`` (``b``: missed days that continued a run / missed
    days, smoothed towards ``a`` with weight ``cluster_smoothing``). A key with fewer than
    ``min_history`` days, or never seen, is not judged (surprise 0).
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "min_history": [Interval(Integral, 1, None, closed="left")],
        "smoothing": [Interval(Real, 0, None, closed="neither")],
        "prior": [Interval(Real, 0, 1, closed="neither")],
        "cluster_smoothing": [Interval(Real, 0, None, closed="neither")],
        "contamination": [Interval(Real, 0, 0.5, closed="right")],
    }

    def __init__(
        self,
        min_history: int = 20,
        smoothing: float = 1.0,
        prior: float = 0.5,
        cluster_smoothing: float = 2.0,
        contamination: float = 0.01,
    ) -> None:
        self.min_history = min_history
        self.smoothing = smoothing
        self.prior = prior
        self.cluster_smoothing = cluster_smoothing
        self.contamination = contamination

    def _split(self, X: NDArray[Any]) -> tuple[NDArray[Any], NDArray[np.float64], NDArray[Any]]:
        if X.shape[1] != 3:
            raise ValueError(
                f"n_features = {X.shape[1]}: expected 3 columns (the log-and-flow key, the "
                "log's events of the flow that day, the flow's days missed in a row)"
            )
        try:
            counts = X[:, 1:].astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"count columns must be numeric: {exc}") from exc
        if not np.isfinite(counts).all():
            raise ValueError("Input contains NaN or infinity in the count columns.")
        return _as_keys(X[:, 0]), counts[:, 0], np.maximum(counts[:, 1], 0.0)

    def fit(self, X: Any, y: Any = None) -> LogCoverageSurprise:
        self._validate_params()
        X = validate_data(self, X, dtype=None, reset=True)
        keys, logged, missed = self._split(X)
        self.keys_, inv = np.unique(keys, return_inverse=True)
        inv = inv.ravel()

        def per_key(weights: NDArray[np.bool_]) -> NDArray[np.float64]:
            return np.bincount(inv, weights=weights.astype(np.float64), minlength=self.keys_.size)

        self.n_days_ = per_key(np.ones(inv.size, dtype=bool))
        self.logged_days_ = per_key(logged > 0)
        missed_days = self.n_days_ - self.logged_days_
        started = per_key((logged <= 0) & (missed <= 1))
        continued = per_key((logged <= 0) & (missed >= 2))
        a = (started + self.smoothing * self.prior) / (self.logged_days_ + self.smoothing)
        self.miss_after_logged_ = np.minimum(a, 1.0)
        self.miss_after_missed_ = np.minimum(
            (continued + self.cluster_smoothing * self.miss_after_logged_)
            / (missed_days + self.cluster_smoothing),
            1.0,
        )
        own = self._coverage(keys, logged, missed)["surprise"]
        self.offset_ = float(np.percentile(-own, 100.0 * self.contamination))
        return self

    def coverage(self, X: Any) -> dict[str, NDArray[np.float64]]:
        """Per row: the key's training days (``n_days``, 0 if unknown), days logged, the
        learned chances of missing a day after a logged one (``a``) and after a missed one
        (``b``), the expected number of runs this long in ``n_days`` (``expected_runs``)
        and the run's surprise in nats."""
        check_is_fitted(self)
        return self._coverage(*self._split(validate_data(self, X, dtype=None, reset=False)))

    def _coverage(
        self, keys: NDArray[Any], logged: NDArray[np.float64], missed: NDArray[np.float64]
    ) -> dict[str, NDArray[np.float64]]:
        k = _lookup(self.keys_, keys)
        known = k >= 0
        ki = np.maximum(k, 0)
        n = np.where(known, self.n_days_[ki], 0.0)
        got = np.where(known, self.logged_days_[ki], 0.0)
        a = np.where(known, self.miss_after_logged_[ki], 1.0)
        b = np.where(known, self.miss_after_missed_[ki], 1.0)
        judged = known & (n >= self.min_history) & (logged <= 0) & (missed >= 1)
        run = np.maximum(missed, 1.0)
        with np.errstate(divide="ignore"):
            log_expected = np.log(np.maximum(n, 1.0)) + np.log(a) + (run - 1.0) * np.log(b)
        surprise = np.where(judged, np.maximum(-log_expected, 0.0), 0.0)
        return {
            "n_days": n,
            "logged_days": got,
            "a": a,
            "b": b,
            "expected_runs": np.where(judged, np.exp(np.minimum(log_expected, 50.0)), np.nan),
            "surprise": surprise,
        }

    def score_samples(self, X: Any) -> NDArray[np.float64]:
        """Minus the surprise of the run of missed days ending on the row (lower = more
        abnormal)."""
        return -self.coverage(X)["surprise"]
