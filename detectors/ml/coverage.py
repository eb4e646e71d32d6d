"""A log's own coverage of a flow: silent for a flow that goes on being recorded elsewhere.

A flow (sender and recipient) is often written to more than one log: the sender's transfer
log and the recipient's receipt log, or two appliances. Judged per flow, a log that stops
recording it is invisible as long as another log still does. :class:`LogCoverageSurprise`
learns, per (log, flow), on what share of the days the flow was recorded in *other* logs
this log recorded it too (within a day of them), and judges a run of such days this log missed: each missed day
is ``-ln(1 - p)`` nats for a log that records the flow with probability ``p`` on those days
(additively smoothed), and consecutive missed days add up (the run ending on the row's day,
counted over the flow's days, not the calendar's: a weekly flow missed for three weeks is
three missed days). A log that often misses a flow's days (a receipt logged after
midnight, an appliance that records only some transfers) teaches a low ``p``, so one
missed day is nothing; a log that recorded the flow on all of 200 days and then misses
five in a row is. A flow that stops altogether is not a coverage question (no log records
it: the flow's own cadence in ``ml.recipient_volume`` is). Knows nothing of DuckDB,
alerts or agencies.
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

    Learned per key: ``n_days_`` such days and ``logged_days_`` of them this log recorded;
    ``p = (logged + smoothing * prior) / (n + smoothing)``. A key with fewer than
    ``min_history`` days, or never seen, is not judged (surprise 0).
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "min_history": [Interval(Integral, 1, None, closed="left")],
        "smoothing": [Interval(Real, 0, None, closed="neither")],
        "prior": [Interval(Real, 0, 1, closed="neither")],
        "contamination": [Interval(Real, 0, 0.5, closed="right")],
    }

    def __init__(
        self,
        min_history: int = 20,
        smoothing: float = 1.0,
        prior: float = 0.5,
        contamination: float = 0.01,
    ) -> None:
        self.min_history = min_history
        self.smoothing = smoothing
        self.prior = prior
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
        self.n_days_ = np.bincount(inv, minlength=self.keys_.size).astype(np.float64)
        self.logged_days_ = np.bincount(
            inv, weights=(logged > 0).astype(np.float64), minlength=self.keys_.size
        )
        own = self._coverage(keys, logged, missed)["surprise"]
        self.offset_ = float(np.percentile(-own, 100.0 * self.contamination))
        return self

    def coverage(self, X: Any) -> dict[str, NDArray[np.float64]]:
        """Per row: the key's training days (``n_days``, 0 if unknown), days logged, the
        learned probability of logging such a day, and the run's surprise in nats."""
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
        p = (got + self.smoothing * self.prior) / (n + self.smoothing)
        judged = known & (n >= self.min_history) & (logged <= 0)
        surprise = np.where(judged, -missed * np.log1p(-p), 0.0)
        return {"n_days": n, "logged_days": got, "p_logged": p, "surprise": surprise}

    def score_samples(self, X: Any) -> NDArray[np.float64]:
        """Minus the surprise of the run of missed days ending on the row (lower = more
        abnormal)."""
        return -self.coverage(X)["surprise"]
