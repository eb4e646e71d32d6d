"""Likelihood-based estimators: how surprising a row is under a model of normal behaviour.

Both estimators score in *nats of surprise* (``-ln`` of a probability), so a score reads
the same way everywhere: 7 nats is a 1-in-1,100 event, 14 nats a 1-in-1.2-million event.
Like scikit-learn's outlier detectors, ``score_samples`` is *lower = more abnormal* (it is
minus the surprise); the alert adapter negates it again.

- :class:`ConditionalSurprise` is a naive-Bayes density model over categorical columns:
  each *term* is the probability of one column's value given some key columns (a channel
  given the recipient and transfer size, an hour given the sending agency), smoothed
  towards coarser keys when a key has little history (hierarchical additive smoothing).
  The score is the sum of the terms' surprise, the negative log-likelihood of the row.
- :class:`CountRateSurprise` judges counts (records read in a day, transfers to a pair in
  a day) against a Poisson rate learned per entity (a user, a recipient-authority pair),
  its peers, and the workload of its unit that day (the whole agency's reads), with a
  quasi-Poisson dispersion for bursty entities and optional multi-day windows for
  sustained excess (a gate keeps the window's evidence on the days that add to it, not
  the quiet days after it).

They know nothing about DuckDB, alerts or agencies: they see arrays of keys and numbers.
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray
from scipy.special import gammainc, gammaln
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from detectors.ml import count_stats
from detectors.ml.estimators import _as_keys, _joint_keys, _lookup

# A row whose probability underflows gets the log of the leading term of its tail.
_TINY = 1e-300


def poisson_surprise(x: NDArray[np.float64], mu: NDArray[np.float64]) -> NDArray[np.float64]:
    """``-ln P(X >= x)`` for ``X ~ Poisson(mu)``, continuous in ``x`` (0 when ``x <= 0``).

    ``P(X >= x)`` is the regularised lower incomplete gamma ``P(x, mu)``; in the far tail,
    where it underflows, the log of its leading term ``x ln mu - mu - ln x!`` is used, so
    the surprise keeps growing with ``x`` instead of saturating.
    """
    x = np.asarray(x, dtype=np.float64)
    mu = np.maximum(np.asarray(mu, dtype=np.float64), 1e-9)
    out = np.zeros(np.broadcast(x, mu).shape)
    x, mu = np.broadcast_arrays(x, mu)
    pos = x > 0
    if not pos.any():
        return out
    xp, mp = x[pos], mu[pos]
    p = gammainc(xp, mp)
    leading = -(xp * np.log(mp) - mp - gammaln(xp + 1))
    out[pos] = np.where(p > _TINY, -np.log(np.maximum(p, _TINY)), np.maximum(leading, 690.0))
    return out


def _fold_keys(columns: NDArray[Any]) -> NDArray[Any]:
    """One key per row from several key columns (integers mix; anything else joins as text)."""
    keys = _as_keys(columns[:, 0])
    for j in range(1, columns.shape[1]):
        keys = _joint_keys(keys, _as_keys(columns[:, j]))
    return keys


def _counts(
    keys: NDArray[Any], weights: NDArray[np.float64] | None = None
) -> tuple[NDArray[Any], NDArray[np.float64]]:
    """Sorted distinct keys and how many rows hold each (``weights``: rows each row stands
    for, as in a summary of distinct rows; whole numbers sum exactly)."""
    if weights is None:
        cats, counts = np.unique(keys, return_counts=True)
        return cats, counts.astype(np.float64)
    cats, inverse = np.unique(keys, return_inverse=True)
    return cats, np.bincount(inverse.ravel(), weights=weights, minlength=cats.size)


def _count_of(
    cats: NDArray[Any], counts: NDArray[np.float64], keys: NDArray[Any]
) -> NDArray[np.float64]:
    idx = _lookup(cats, keys)
    return np.where(idx >= 0, counts[np.maximum(idx, 0)], 0.0)


class _SurpriseOutlier(OutlierMixin, BaseEstimator):
    """What both estimators share: sklearn's outlier API around ``score_samples`` and
    ``offset_`` (set in ``fit``), and input tags for keys that may be text.

    ``fit(X, offset=False)`` leaves ``offset_`` unset (NaN): scoring every training row
    again for it is a third of a fit, and a model fitted only to score held-out rows (the
    alert floor's folds, :func:`detectors.ml.run.held_out_scores`) never uses it."""

    offset_: float

    def score_samples(self, X: Any) -> NDArray[np.float64]:
        raise NotImplementedError

    def decision_function(self, X: Any) -> NDArray[np.float64]:
        return self.score_samples(X) - self.offset_

    def predict(self, X: Any) -> NDArray[np.int_]:
        return np.where(self.decision_function(X) >= 0, 1, -1)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.categorical = True
        tags.input_tags.string = True
        return tags


class ConditionalSurprise(_SurpriseOutlier):
    """Naive-Bayes surprise of categorical rows: ``sum_t -ln P(value_t | keys_t)``.

    ``terms`` lists, per term, the value column and a chain of key-column tuples from
    coarse to fine, e.g. ``(channel, ((size,), (recipient, size)))``: the channel given the
    transfer size, refined by the recipient of that size. Each level's probability is
    ``(n(key, value) + alpha * P_parent) / (n(key) + alpha)``, the top level's parent being
    the value's overall frequency with add-``smoothing``; a key never seen falls back to
    its parent, a value never seen gets the probability of a count of zero. ``None`` (the
    default) makes every column one unconditioned term. Columns are categories (codes,
    text) unless they hold floating-point measurements, which are cut into ``n_bins``
    equal-width bins over the training range (a histogram: take logs of heavy-tailed
    measurements first).
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "terms": [list, tuple, None],
        "alpha": [Interval(Real, 0, None, closed="neither")],
        "n_bins": [Interval(Integral, 2, None, closed="left")],
        "smoothing": [Interval(Real, 0, None, closed="neither")],
        "contamination": [Interval(Real, 0, 0.5, closed="right")],
    }

    def __init__(
        self,
        terms: list[tuple[int, tuple[tuple[int, ...], ...]]] | None = None,
        alpha: float = 2.0,
        smoothing: float = 0.5,
        n_bins: int = 10,
        contamination: float = 0.01,
    ) -> None:
        self.terms = terms
        self.alpha = alpha
        self.n_bins = n_bins
        self.smoothing = smoothing
        self.contamination = contamination

    def _terms(self, n_features: int) -> list[tuple[int, tuple[tuple[int, ...], ...]]]:
        terms = self.terms if self.terms is not None else [(j, ()) for j in range(n_features)]
        out = []
        for value, chain in terms:
            cols = [value, *(c for level in chain for c in level)]
            if any(not 0 <= int(c) < n_features for c in cols):
                raise ValueError(
                    f"n_features = {n_features}: term on column {value} with keys {chain} "
                    f"refers to a column outside the {n_features} input columns"
                )
            out.append((int(value), tuple(tuple(int(c) for c in level) for level in chain)))
        return out

    def fit(
        self,
        X: Any,
        y: Any = None,
        offset: bool = True,
        sample_weight: Any = None,
    ) -> ConditionalSurprise:
        """Count the rows; ``sample_weight`` (whole numbers): how many rows each row of
        ``X`` stands for, so a summary of distinct rows with their counts (summed in
        DuckDB, detectors/ml/summary.py) fits the same model as the rows themselves."""
        self._validate_params()
        X = validate_data(self, X, dtype=None, reset=True)
        w = None
        if sample_weight is not None:
            w = _check_sample_weight(sample_weight, X, dtype=np.float64, ensure_non_negative=True)
            X, w = X[w > 0], w[w > 0]  # a row counted zero times is not there
        self.terms_ = self._terms(X.shape[1])
        self.bin_edges_: dict[int, NDArray[np.float64]] = {}
        if X.dtype.kind == "f":
            for j in range(X.shape[1]):
                lo, hi = float(np.min(X[:, j])), float(np.max(X[:, j]))
                self.bin_edges_[j] = np.linspace(lo, hi, self.n_bins + 1)[1:-1]
        X = self._categories(X)
        n = float(X.shape[0]) if w is None else float(w.sum())
        self.value_counts_: list[tuple[NDArray[Any], NDArray[np.float64]]] = []
        self.unseen_probability_: list[float] = []
        self.levels_: list[
            list[
                tuple[
                    tuple[NDArray[Any], NDArray[np.float64]],
                    tuple[NDArray[Any], NDArray[np.float64]],
                ]
            ]
        ] = []
        for value, chain in self.terms_:
            values = _as_keys(X[:, value])
            cats, counts = _counts(values, w)
            self.value_counts_.append((cats, counts))
            self.unseen_probability_.append(self.smoothing / (n + self.smoothing * (cats.size + 1)))
            levels = []
            for level in chain:
                keys = _fold_keys(X[:, list(level)])
                levels.append((_counts(keys, w), _counts(_joint_keys(keys, values), w)))
            self.levels_.append(levels)
        self.n_samples_fit_ = n
        self.offset_ = float("nan")
        if offset:
            own_scores = np.log(self._probabilities(X)[0]).sum(axis=1)
            if w is not None:  # each distinct row's score as often as the rows it stands for
                own_scores = np.repeat(own_scores, w.astype(np.int64))
            self.offset_ = float(np.percentile(own_scores, 100.0 * self.contamination))
        return self

    def _categories(self, X: NDArray[Any]) -> NDArray[Any]:
        """Measurements (float columns) as their histogram bin; categories as they are."""
        if not self.bin_edges_:
            return X
        out = np.empty(X.shape, dtype=np.int64)
        for j in range(X.shape[1]):
            out[:, j] = np.searchsorted(self.bin_edges_[j], X[:, j].astype(np.float64))
        return out

    def _probabilities(
        self, X: NDArray[Any]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        """Per term: probability, and the finest level's (key count, key-and-value count)."""
        n_terms = len(self.terms_)
        prob = np.empty((X.shape[0], n_terms))
        key_n = np.full((X.shape[0], n_terms), np.nan)
        pair_n = np.full((X.shape[0], n_terms), np.nan)
        for t, (value, chain) in enumerate(self.terms_):
            values = _as_keys(X[:, value])
            cats, counts = self.value_counts_[t]
            n_v = _count_of(cats, counts, values)
            p = (n_v + self.smoothing) / (self.n_samples_fit_ + self.smoothing * (cats.size + 1))
            key_n[:, t], pair_n[:, t] = self.n_samples_fit_, n_v
            for level, ((kc, kn), (pc, pn)) in zip(chain, self.levels_[t], strict=True):
                keys = _fold_keys(X[:, list(level)])
                nk = _count_of(kc, kn, keys)
                nkv = _count_of(pc, pn, _joint_keys(keys, values))
                p = (nkv + self.alpha * p) / (nk + self.alpha)
                seen = nk > 0
                key_n[seen, t], pair_n[seen, t] = nk[seen], nkv[seen]
            prob[:, t] = p
        return prob, key_n, pair_n

    def term_surprise(self, X: Any) -> NDArray[np.float64]:
        """``-ln P`` per row and term (columns in the order of ``terms_``)."""
        check_is_fitted(self)
        X = self._categories(validate_data(self, X, dtype=None, reset=False))
        return -np.log(self._probabilities(X)[0])

    def term_counts(self, X: Any) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Training counts behind each term at its finest known key: (key rows, key rows
        with this value), for explanations ("0 of 412 transfers of this size")."""
        check_is_fitted(self)
        X = self._categories(validate_data(self, X, dtype=None, reset=False))
        _, key_n, pair_n = self._probabilities(X)
        return key_n, pair_n

    def score_samples(self, X: Any) -> NDArray[np.float64]:
        """Log-likelihood of each row under the model (lower = more abnormal)."""
        return -self.term_surprise(X).sum(axis=1)


class CountRateSurprise(_SurpriseOutlier):
    """Surprise of counts against an entity's own rate, its peers' and its unit's workload.

    Column layout (all numbers; keys may be any hashable codes):

    ``[key_0 .. key_{k-1}] [day if with_load] then, per measure, [x] [x_window_1 ..
    x_window_w] [unit_total if with_load] [unit_total_window_1 .. _w if with_load]``

    Keys run from the *unit* (key 0: whose workload sets the day's pace, e.g. an agency)
    to the *entity* (the last key: a user, a recipient-authority pair); keys in between
    are peer groups (e.g. agency and role). ``x`` is the entity's count on the row's day;
    ``unit_total`` the unit's count that day *including* the entity.

    Learned in ``fit`` per measure: the entity's own rate per active unit-day, the peers'
    ``peer_quantile`` of those rates (most specific group first, then the unit, then all),
    the unit's mean daily total and a quasi-Poisson dispersion. The expected count of a row
    is ``base * load`` where ``base`` is the larger of the own rate and the peers' (only the
    own rate when ``peers=False``; no own history and no peers = no verdict) and ``load``
    is the rest of the unit's activity that day against its usual. The surprise is
    :func:`poisson_surprise` of the count. With ``windows`` > 0, each row also carries that
    many multi-day counts over windows of ``window_days`` days that contain its day (e.g.
    the 7 days ending on it and the 7 days starting on it); they are judged too, on rows
    whose day is itself more likely under a ``rate_ratio``-times elevated rate (so a
    window counts on the days that make it, not the quiet days around it), and the row
    takes the strongest (a scan statistic over windows containing the day). The row's
    surprise is the largest over measures; ``score_samples`` is minus it.
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "n_key_columns": [Interval(Integral, 0, None, closed="left")],
        "with_load": ["boolean"],
        "windows": [Interval(Integral, 0, None, closed="left")],
        "window_days": [Interval(Real, 0, None, closed="neither")],
        "peers": ["boolean"],
        "peer_quantile": [Interval(Real, 0, 1, closed="both")],
        "rate_ratio": [Interval(Real, 1, None, closed="neither")],
        "min_history": [Interval(Integral, 1, None, closed="left")],
        "min_rate": [Interval(Real, 0, None, closed="neither")],
        "max_dispersion": [Interval(Real, 1, None, closed="left")],
        "contamination": [Interval(Real, 0, 0.5, closed="right")],
    }

    def __init__(
        self,
        n_key_columns: int = 0,
        with_load: bool = False,
        windows: int = 0,
        window_days: float = 7.0,
        peers: bool = True,
        peer_quantile: float = 0.5,
        rate_ratio: float = 4.0,
        min_history: int = 3,
        min_rate: float = 0.05,
        max_dispersion: float = 1e12,
        contamination: float = 0.01,
    ) -> None:
        self.n_key_columns = n_key_columns
        self.with_load = with_load
        self.windows = windows
        self.window_days = window_days
        self.peers = peers
        self.peer_quantile = peer_quantile
        self.rate_ratio = rate_ratio
        self.min_history = min_history
        self.min_rate = min_rate
        self.max_dispersion = max_dispersion
        self.contamination = contamination

    # -- layout ----------------------------------------------------------------------------
    @property
    def _block(self) -> int:
        return (1 + self.windows) * (1 + int(self.with_load))

    def _split(self, X: NDArray[Any]) -> dict[str, Any]:
        k = self.n_key_columns
        head = k + int(self.with_load)
        rest = X.shape[1] - head
        if rest < self._block or rest % self._block:
            raise ValueError(
                f"n_features = {X.shape[1]}: expected {k} key column(s)"
                f"{' and a day column' if self.with_load else ''} then blocks of {self._block}"
                " count column(s) per measure"
            )
        try:
            values = X[:, head:].astype(np.float64)
            day = X[:, k].astype(np.float64) if self.with_load else None
        except (TypeError, ValueError) as exc:
            raise ValueError(f"count and day columns must be numeric: {exc}") from exc
        if not np.isfinite(values).all() or (day is not None and not np.isfinite(day).all()):
            raise ValueError("Input contains NaN or infinity in the count or day columns.")
        values = np.maximum(values, 0.0)
        n_measures = rest // self._block
        blocks = values.reshape(X.shape[0], n_measures, self._block)
        w = self.windows
        parts = {
            "x": blocks[:, :, 0],
            "x_window": blocks[:, :, 1 : 1 + w] if w else None,
            "total": blocks[:, :, 1 + w] if self.with_load else None,
            "total_window": blocks[:, :, 2 + w : 2 + 2 * w] if (self.with_load and w) else None,
            "day": day,
        }
        keys = [_as_keys(X[:, j]) for j in range(k)]
        # Level j joins keys 0..j; the unit is level 0, the entity the last level.
        levels, joined = [], None
        for j in range(k):
            joined = keys[j] if joined is None else _joint_keys(joined, keys[j])
            levels.append(joined)
        parts["levels"] = levels
        return parts

    # -- fit -------------------------------------------------------------------------------
    def fit(self, X: Any, y: Any = None, offset: bool = True) -> CountRateSurprise:
        self._validate_params()
        X = validate_data(self, X, dtype=None, reset=True)
        p = self._split(X)
        self.fit_stats(count_stats.from_rows(p["x"], p["levels"], p["day"], p["total"]))
        self.offset_ = float("nan")
        if offset:
            day_s, window_s, _ = self._surprise(p, self._expectations(p))
            own_scores = -np.maximum(day_s, window_s).max(axis=1)
            self.offset_ = float(np.percentile(own_scores, 100.0 * self.contamination))
        return self

    def fit_stats(
        self, stats: count_stats.CountStats, feature_names: list[str] | None = None
    ) -> CountRateSurprise:
        """Learn from the sums per unit and entity (:mod:`detectors.ml.count_stats`): the
        same model as :meth:`fit` on the rows they sum (``feature_names``: their columns),
        but ``offset_`` (the rows' own scores' quantile) is left unset (NaN), as
        ``fit(offset=False)`` leaves it."""
        self._validate_params()
        if feature_names is not None:
            self.n_features_in_ = len(feature_names)
            self.feature_names_in_ = np.asarray(feature_names, dtype=object)
        n_measures = stats.n_measures
        self.n_measures_ = n_measures
        self.units_ = stats.unit_keys
        exposure = stats.unit_exposure
        if stats.unit_total is not None:
            assert stats.unit_first is not None and stats.unit_last is not None
            self.unit_active_share_ = exposure / np.maximum(
                stats.unit_last - stats.unit_first + 1, 1
            )
            self.unit_mean_total_ = stats.unit_total / np.maximum(exposure, 1)[:, None]
        else:
            self.unit_active_share_ = np.ones(self.units_.size)
            self.unit_mean_total_ = None
        self.unit_exposure_ = exposure

        # Entities: own rate per active unit-day, rows seen, dispersion.
        self.entities_ = stats.entity_keys
        ent_unit = stats.entity_unit
        ent_exposure = np.maximum(self.unit_exposure_[ent_unit], 1.0)
        self.entity_rows_ = stats.entity_rows
        self.entity_rate_ = np.zeros((self.entities_.size, n_measures))
        self.entity_dispersion_ = np.ones((self.entities_.size, n_measures))
        for m in range(n_measures):
            mean = stats.entity_sum[:, m] / ent_exposure
            var = stats.entity_sum_sq[:, m] / ent_exposure - mean**2
            self.entity_rate_[:, m] = mean
            with np.errstate(divide="ignore", invalid="ignore"):
                phi = np.where(mean > 0, var / mean, 1.0)
            self.entity_dispersion_[:, m] = np.clip(
                np.nan_to_num(phi, nan=1.0), 1.0, self.max_dispersion
            )
        # The unit's dispersion: median over its entities with history.
        self.unit_dispersion_ = np.ones((self.units_.size, n_measures))
        enough = self.entity_rows_ >= self.min_history
        for u in range(self.units_.size):
            sel = enough & (ent_unit == u)
            if sel.any():
                self.unit_dispersion_[u] = np.median(self.entity_dispersion_[sel], axis=0)
        self._fit_groups(stats.entity_levels, n_measures)
        self.offset_ = float("nan")
        return self

    def _fit_groups(self, entity_levels: list[NDArray[Any]], n_measures: int) -> None:
        """Peer groups: every level but the entity's (level 0 = the unit), and everyone."""
        self.group_keys_: list[NDArray[Any]] = []
        self.group_rate_: list[NDArray[np.float64]] = []
        self.group_p99_: list[NDArray[np.float64]] = []
        self.group_size_: list[NDArray[np.int64]] = []
        for lvl_keys in [np.zeros(self.entities_.size, dtype=np.int64), *entity_levels]:
            groups, g_inv = np.unique(lvl_keys, return_inverse=True)
            g_inv = g_inv.ravel()
            rate = np.zeros((groups.size, n_measures))
            p99 = np.zeros((groups.size, n_measures))
            for g in range(groups.size):
                members = self.entity_rate_[g_inv == g]
                rate[g] = np.quantile(members, self.peer_quantile, axis=0)
                p99[g] = np.quantile(members, 0.99, axis=0)
            self.group_keys_.append(groups)
            self.group_rate_.append(rate)
            self.group_p99_.append(p99)
            self.group_size_.append(np.bincount(g_inv, minlength=groups.size))

    # -- scoring ---------------------------------------------------------------------------
    def _expectations(self, p: dict[str, Any]) -> dict[str, NDArray[Any]]:
        x, levels = p["x"], p["levels"]
        n, n_measures = x.shape
        if n_measures != self.n_measures_:
            raise ValueError(f"expected {self.n_measures_} measure(s), got {n_measures}")
        unit = levels[0] if levels else np.zeros(n, dtype=np.int64)
        entity = levels[-1] if levels else np.zeros(n, dtype=np.int64)
        u = _lookup(self.units_, unit)
        e = _lookup(self.entities_, entity)
        known = e >= 0
        if known.any():
            known[known] = self.entity_rows_[e[known]] >= self.min_history
        own = np.where(known[:, None], self.entity_rate_[np.maximum(e, 0)], np.nan)

        # Peers: the most specific group with the entity's level keys; level 0 is everyone.
        peer = np.broadcast_to(self.group_rate_[0][0], (n, n_measures)).copy()
        peer_p99 = np.broadcast_to(self.group_p99_[0][0], (n, n_measures)).copy()
        peer_n = np.full(n, self.group_size_[0][0])
        level_used = np.zeros(n, dtype=np.intp)
        for lvl in range(1, len(self.group_keys_)):
            g = _lookup(self.group_keys_[lvl], levels[lvl - 1])
            hit = g >= 0
            peer[hit] = self.group_rate_[lvl][g[hit]]
            peer_p99[hit] = self.group_p99_[lvl][g[hit]]
            peer_n[hit] = self.group_size_[lvl][g[hit]]
            level_used[hit] = lvl
        if self.peers:
            base = np.where(known[:, None], np.fmax(own, peer), peer)
            judged = np.ones(n, dtype=bool)
        else:
            base = np.where(known[:, None], own, 0.0)
            judged = known

        phi = np.where(
            known[:, None],
            self.entity_dispersion_[np.maximum(e, 0)],
            np.where((u >= 0)[:, None], self.unit_dispersion_[np.maximum(u, 0)], 1.0),
        )
        load = np.ones((n, n_measures))
        # Per window (last axis): the unit's load over the window's days.
        load_w = np.full((n, n_measures, max(self.windows, 1)), float(self.window_days))
        if self.unit_mean_total_ is not None:
            share = np.where(u >= 0, self.unit_active_share_[np.maximum(u, 0)], 1.0)
            load_w = load_w * share[:, None, None]
            usual_others = np.where(
                (u >= 0)[:, None], self.unit_mean_total_[np.maximum(u, 0)], 0.0
            ) - np.nan_to_num(own, nan=0.0)
            has_others = usual_others >= 0.5
            others = np.maximum(p["total"] - x, 0.0)
            with np.errstate(divide="ignore", invalid="ignore"):
                load = np.where(has_others, np.clip(others / usual_others, 0.25, 4.0), 1.0)
                if p["total_window"] is not None:
                    others_w = np.maximum(p["total_window"] - p["x_window"], 0.0)
                    load_w = np.where(
                        has_others[:, :, None],
                        np.clip(others_w / usual_others[:, :, None], 0.25, 4.0 * self.window_days),
                        load_w,
                    )
        mu = np.maximum(base * load, self.min_rate)
        mu_w = np.maximum(base[:, :, None] * load_w, self.min_rate)
        return {
            "own": own, "peer": peer, "peer_p99": peer_p99, "peer_n": peer_n,
            "level": level_used, "base": base, "load": load, "load_window": load_w,
            "mu": mu, "mu_window": mu_w, "dispersion": phi, "judged": judged,
        }  # fmt: skip

    def _surprise(
        self, p: dict[str, Any], ex: dict[str, NDArray[Any]]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        """Surprise of the day, of its strongest window, and of each window (n, M, w)."""
        phi = ex["dispersion"]
        judged = ex["judged"][:, None]
        day = poisson_surprise(p["x"] / phi, ex["mu"] / phi)
        each = np.zeros((*day.shape, max(self.windows, 1)))
        if p["x_window"] is not None:
            k = self.rate_ratio
            elevated = (p["x"] / phi) * np.log(k) - (k - 1) * ex["mu"] / phi > 0
            on = elevated & judged  # only these rows' windows count: the others stay 0
            f = phi[on][:, None]
            each[on] = poisson_surprise(p["x_window"][on] / f, ex["mu_window"][on] / f)
        return np.where(judged, day, 0.0), each.max(axis=2), each

    def _check(self, X: Any) -> dict[str, Any]:
        check_is_fitted(self)
        X = validate_data(self, X, dtype=None, reset=False)
        return self._split(X)

    def surprise(self, X: Any) -> NDArray[np.float64]:
        """Surprise per row and measure: the strongest of the day and its windows."""
        p = self._check(X)
        day, window, _ = self._surprise(p, self._expectations(p))
        # A scan statistic: the strongest window containing the row's day (the windows
        # contain the day, so adding them would count the day twice).
        return np.maximum(day, window)

    def explain(self, X: Any) -> dict[str, NDArray[Any]]:
        """What each row was compared with: own and peer rates, load, expected counts (per
        measure; per measure and window for ``mu_window``), and the surprise of the day, of
        its strongest window and of each window (``window_surprises``)."""
        p = self._check(X)
        ex = self._expectations(p)
        day, window, each = self._surprise(p, ex)
        return {**ex, "day_surprise": day, "window_surprise": window, "window_surprises": each}

    def score_samples(self, X: Any) -> NDArray[np.float64]:
        """Minus the largest surprise over the measures (lower = more abnormal)."""
        return -self.surprise(X).max(axis=1)
