"""scikit-learn estimators and feature transformers for the ML detectors.

They follow the scikit-learn contract (``__init__`` only stores parameters, ``fit``
returns ``self``, learned attributes end in ``_``) and know nothing about DuckDB, alerts
or agencies: they see arrays of keys and numbers.

Score convention: like scikit-learn's outlier detectors, ``score_samples`` here is
*lower = more abnormal*, ``decision_function = score_samples - offset_`` is negative for
outliers and ``predict`` returns -1 for outliers. The alert adapter
(``detectors.ml.adapter``) negates ``score_samples`` so that every alert score in the
``alerts`` table reads *higher = more anomalous*.
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import Any, ClassVar, Literal

import numpy as np
from numpy.typing import NDArray
from sklearn.base import BaseEstimator, OutlierMixin, TransformerMixin
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

# MAD of a normal distribution is 0.6745 sigma; scaling by 1.4826 makes it comparable.
MAD_TO_SIGMA = 1.4826
_KEY_SEP = "\x1f"


def _as_keys(values: NDArray[Any]) -> NDArray[Any]:
    """Categories as a sortable array: text stays text, integer codes stay integers (fast),
    other numbers become floats."""
    if values.dtype.kind in "OUS":
        return values.astype(str)
    if values.dtype.kind in "iu":
        return values.astype(np.uint64) if values.dtype.kind == "u" else values.astype(np.int64)
    return values.astype(np.float64)


_MIX = np.uint64(0x9E3779B97F4A7C15)


def _joint_keys(keys: NDArray[Any], values: NDArray[Any]) -> NDArray[Any]:
    """One key per (key, value) pair: mixed 64-bit integers for integer codes, else text."""
    if keys.dtype.kind in "iu" and values.dtype.kind in "iu":
        with np.errstate(over="ignore"):
            return keys.astype(np.uint64) * _MIX + values.astype(np.uint64)
    return np.char.add(np.char.add(keys.astype(str), _KEY_SEP), values.astype(str))


def _lookup(categories: NDArray[Any], values: NDArray[Any]) -> NDArray[np.intp]:
    """Index of each value in sorted ``categories``; -1 where the value was never seen."""
    if categories.size == 0:
        return np.full(values.shape[0], -1, dtype=np.intp)
    if categories.dtype.kind == "U" and values.dtype.kind != "U":
        values = values.astype(str)
    elif categories.dtype.kind in "iu" and values.dtype.kind != categories.dtype.kind:
        if values.dtype.kind not in "iu":
            return np.full(values.shape[0], -1, dtype=np.intp)
        values = values.astype(categories.dtype)
    elif categories.dtype.kind == "f" and values.dtype.kind not in "fiub":
        try:
            values = values.astype(np.float64)
        except ValueError:
            return np.full(values.shape[0], -1, dtype=np.intp)
    pos = np.searchsorted(categories, values)
    pos = np.minimum(pos, categories.size - 1)
    found = categories[pos] == values
    return np.where(found, pos, -1).astype(np.intp)


def _group_quantiles(
    inverse: NDArray[np.intp], values: NDArray[np.float64], n_groups: int, qs: list[float]
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Per-group sizes and quantiles (linear interpolation), without a Python loop per group."""
    order = np.lexsort((values, inverse))
    sorted_vals = values[order]
    counts = np.bincount(inverse, minlength=n_groups).astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    out = np.full((n_groups, len(qs)), np.nan)
    has = counts > 0
    for j, q in enumerate(qs):
        pos = starts[has] + q * (counts[has] - 1)
        lo = np.floor(pos).astype(np.int64)
        hi = np.ceil(pos).astype(np.int64)
        frac = pos - lo
        out[has, j] = sorted_vals[lo] * (1 - frac) + sorted_vals[hi] * frac
    return counts, out


class RarityEncoder(TransformerMixin, BaseEstimator):
    """Replace each categorical value by its rarity, ``-log`` of its smoothed frequency.

    A value never seen in ``fit`` gets the rarity of a count of zero (the highest). Works on
    text or numeric categories; combinations (recipient and channel, say) are passed as one
    joined column.
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "smoothing": [Interval(Real, 0, None, closed="neither")],
    }

    def __init__(self, smoothing: float = 1.0) -> None:
        self.smoothing = smoothing

    def fit(self, X: Any, y: Any = None) -> RarityEncoder:
        self._validate_params()
        X = validate_data(self, X, dtype=None, reset=True)
        self.categories_: list[NDArray[Any]] = []
        self.rarity_: list[NDArray[np.float64]] = []
        self.unseen_rarity_: NDArray[np.float64] = np.empty(X.shape[1])
        n = X.shape[0]
        for j in range(X.shape[1]):
            cats, counts = np.unique(_as_keys(X[:, j]), return_counts=True)
            denom = n + self.smoothing * (cats.size + 1)
            self.categories_.append(cats)
            self.rarity_.append(-np.log((counts + self.smoothing) / denom))
            self.unseen_rarity_[j] = -np.log(self.smoothing / denom)
        return self

    def transform(self, X: Any) -> NDArray[np.float64]:
        check_is_fitted(self)
        X = validate_data(self, X, dtype=None, reset=False)
        out = np.empty(X.shape, dtype=np.float64)
        for j in range(X.shape[1]):
            idx = _lookup(self.categories_[j], _as_keys(X[:, j]))
            rarity = self.rarity_[j]
            out[:, j] = np.where(idx >= 0, rarity[np.maximum(idx, 0)], self.unseen_rarity_[j])
        return out

    def get_feature_names_out(self, input_features: Any = None) -> NDArray[np.object_]:
        check_is_fitted(self)
        names = _input_names(self, input_features)
        return np.asarray([f"{name}_rarity" for name in names], dtype=object)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.categorical = True
        tags.input_tags.string = True
        return tags


class ConditionalRarityEncoder(TransformerMixin, BaseEstimator):
    """Rarity of each value *given* a key: ``-log P(value | key)``, smoothed.

    The first column is the key (e.g. the recipient), the others are values (channel,
    data elements, ...). A recipient's own monthly bulk channel is then ordinary for it,
    while a channel it never used is rare even if other recipients use it daily. A key
    never seen in ``fit`` is judged against all rows.
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "smoothing": [Interval(Real, 0, None, closed="neither")],
    }

    def __init__(self, smoothing: float = 1.0) -> None:
        self.smoothing = smoothing

    def fit(self, X: Any, y: Any = None) -> ConditionalRarityEncoder:
        self._validate_params()
        X = validate_data(self, X, dtype=None, reset=True)
        if X.shape[1] < 2:
            raise ValueError(
                f"n_features = {X.shape[1]}: need a key column and at least one value column"
            )
        keys = _as_keys(X[:, 0])
        self.keys_, key_counts = np.unique(keys, return_counts=True)
        self.key_counts_ = key_counts.astype(np.float64)
        self.pairs_: list[NDArray[Any]] = []
        self.pair_counts_: list[NDArray[np.float64]] = []
        self.value_cardinality_ = np.empty(X.shape[1] - 1)
        self.marginal_ = []
        for j in range(1, X.shape[1]):
            values = _as_keys(X[:, j])
            joint = _joint_keys(keys, values)
            pairs, counts = np.unique(joint, return_counts=True)
            self.pairs_.append(pairs)
            self.pair_counts_.append(counts.astype(np.float64))
            self.value_cardinality_[j - 1] = np.unique(values).size
            self.marginal_.append(
                RarityEncoder(smoothing=self.smoothing).fit(values.reshape(-1, 1))
            )
        return self

    def transform(self, X: Any) -> NDArray[np.float64]:
        check_is_fitted(self)
        X = validate_data(self, X, dtype=None, reset=False)
        keys = _as_keys(X[:, 0])
        kidx = _lookup(self.keys_, keys)
        key_n = np.where(kidx >= 0, self.key_counts_[np.maximum(kidx, 0)], 0.0)
        out = np.empty((X.shape[0], X.shape[1] - 1))
        for j in range(1, X.shape[1]):
            values = _as_keys(X[:, j])
            joint = _joint_keys(keys, values)
            pidx = _lookup(self.pairs_[j - 1], joint)
            pair_n = np.where(pidx >= 0, self.pair_counts_[j - 1][np.maximum(pidx, 0)], 0.0)
            k = self.value_cardinality_[j - 1] + 1
            conditional = -np.log((pair_n + self.smoothing) / (key_n + self.smoothing * k))
            out[:, j - 1] = conditional
            unseen = kidx < 0
            if unseen.any():
                out[unseen, j - 1] = self.marginal_[j - 1].transform(values[unseen].reshape(-1, 1))[
                    :, 0
                ]
        return out

    def get_feature_names_out(self, input_features: Any = None) -> NDArray[np.object_]:
        check_is_fitted(self)
        names = _input_names(self, input_features)
        return np.asarray([f"{n}_given_{names[0]}_rarity" for n in names[1:]], dtype=object)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.categorical = True
        tags.input_tags.string = True
        return tags


class CyclicalEncoder(TransformerMixin, BaseEstimator):
    """Encode periodic numbers (hour of day, weekday) as sine and cosine.

    Hour 23 and hour 0 are neighbours on the circle, which a plain number would hide.
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "period": [Interval(Real, 0, None, closed="neither")],
    }

    def __init__(self, period: float = 24.0) -> None:
        self.period = period

    def fit(self, X: Any, y: Any = None) -> CyclicalEncoder:
        self._validate_params()
        validate_data(self, X, dtype=np.float64, reset=True)
        return self

    def transform(self, X: Any) -> NDArray[np.float64]:
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        angle = 2 * np.pi * X / self.period
        out = np.empty((X.shape[0], 2 * X.shape[1]))
        out[:, 0::2] = np.sin(angle)
        out[:, 1::2] = np.cos(angle)
        return out

    def get_feature_names_out(self, input_features: Any = None) -> NDArray[np.object_]:
        check_is_fitted(self)
        names = _input_names(self, input_features)
        return np.asarray([f"{n}_{part}" for n in names for part in ("sin", "cos")], dtype=object)


class GroupedRobustZ(OutlierMixin, BaseEstimator):
    """Robust z-score of values against the history of their own group.

    The first ``n_key_columns`` columns of ``X`` are group keys, most general first
    (e.g. agency, then role; or recipient-authority pair, then phase of the month); the
    rest are values (already on the scale to compare, e.g. log counts). Each row is
    compared with the most specific group that had at least ``min_history`` rows in
    ``fit``, falling back to coarser groups and finally to all rows:
    ``z = (value - q) / max(1.4826 * MAD, min_scale)`` where ``q`` is the group's
    ``baseline_quantile`` (the median by default). A high quantile (e.g. 0.99) makes
    anything the group does regularly, such as a monthly bulk run on whatever day its
    schedule falls, part of the baseline rather than an anomaly. With
    ``fallback_to_all=False`` a row whose groups all lack history gets z = 0: no baseline,
    no verdict (new groups are the novelty detector's business). The row's z is the largest
    over its value columns. ``score_samples`` is ``-z`` (``direction='high'``: only
    unusually high values count, as for volumes) or ``-|z|`` (``'both'``).
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "n_key_columns": [Interval(Integral, 0, None, closed="left")],
        "min_history": [Interval(Integral, 1, None, closed="left")],
        "min_scale": [Interval(Real, 0, None, closed="neither")],
        "direction": [StrOptions({"high", "both"})],
        "baseline_quantile": [Interval(Real, 0, 1, closed="both")],
        "fallback_to_all": ["boolean"],
        "contamination": [Interval(Real, 0, 0.5, closed="right")],
    }

    def __init__(
        self,
        n_key_columns: int = 1,
        min_history: int = 5,
        min_scale: float = 0.25,
        direction: Literal["high", "both"] = "high",
        baseline_quantile: float = 0.5,
        fallback_to_all: bool = True,
        contamination: float = 0.01,
    ) -> None:
        self.n_key_columns = n_key_columns
        self.min_history = min_history
        self.min_scale = min_scale
        self.direction = direction
        self.baseline_quantile = baseline_quantile
        self.fallback_to_all = fallback_to_all
        self.contamination = contamination

    def _split(self, X: NDArray[Any]) -> tuple[list[NDArray[Any]], NDArray[np.float64]]:
        k = self.n_key_columns
        keys = X[:, :k].astype(str) if k else np.empty((X.shape[0], 0), dtype=str)
        # Level l joins the first l key columns; level 0 is everyone.
        levels = [np.full(X.shape[0], "", dtype="<U1")]
        joined = None
        for j in range(k):
            joined = (
                keys[:, j]
                if joined is None
                else np.char.add(np.char.add(joined, _KEY_SEP), keys[:, j])
            )
            levels.append(joined)
        try:
            values = X[:, k:].astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"value columns (after the {k} key columns) must be numeric: {exc}"
            ) from exc
        if not np.isfinite(values).all():
            raise ValueError("Input contains NaN or infinity in the value columns.")
        return levels, values

    def fit(self, X: Any, y: Any = None) -> GroupedRobustZ:
        self._validate_params()
        X = validate_data(self, X, dtype=None, reset=True)
        if X.shape[1] <= self.n_key_columns:
            raise ValueError(
                f"n_features = {X.shape[1]}: need at least one value column after "
                f"{self.n_key_columns} key column(s)"
            )
        levels, values = self._split(X)
        n_values = values.shape[1]
        self.level_keys_: list[NDArray[Any]] = []
        self.level_counts_: list[NDArray[np.int64]] = []
        # Per level: (n_groups, n_values) arrays of median, scale, 99th percentile.
        self.level_median_: list[NDArray[np.float64]] = []
        self.level_scale_: list[NDArray[np.float64]] = []
        self.level_p99_: list[NDArray[np.float64]] = []
        self.level_center_: list[NDArray[np.float64]] = []
        for key in levels:
            groups, inverse = np.unique(key, return_inverse=True)
            inverse = inverse.ravel()
            med = np.empty((groups.size, n_values))
            scale = np.empty((groups.size, n_values))
            p99 = np.empty((groups.size, n_values))
            center = np.empty((groups.size, n_values))
            counts = np.zeros(groups.size, dtype=np.int64)
            for v in range(n_values):
                counts, q = _group_quantiles(
                    inverse, values[:, v], groups.size, [0.5, 0.99, self.baseline_quantile]
                )
                med[:, v], p99[:, v], center[:, v] = q[:, 0], q[:, 1], q[:, 2]
                dev = np.abs(values[:, v] - med[inverse, v])
                _, mad = _group_quantiles(inverse, dev, groups.size, [0.5])
                scale[:, v] = np.maximum(MAD_TO_SIGMA * mad[:, 0], self.min_scale)
            self.level_keys_.append(groups)
            self.level_counts_.append(counts)
            self.level_median_.append(med)
            self.level_scale_.append(scale)
            self.level_p99_.append(p99)
            self.level_center_.append(center)
        self.offset_ = float(np.percentile(self._score(levels, values), 100.0 * self.contamination))
        return self

    def _baseline_index(
        self, levels: list[NDArray[Any]]
    ) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
        """For each row: the level used and the group index within that level."""
        n = levels[0].shape[0]
        level = np.zeros(n, dtype=np.intp)
        group = np.zeros(n, dtype=np.intp)
        for lvl in range(1, len(levels)):
            idx = _lookup(self.level_keys_[lvl], levels[lvl])
            enough = idx >= 0
            enough[enough] = self.level_counts_[lvl][idx[enough]] >= self.min_history
            level[enough] = lvl
            group[enough] = idx[enough]
        return level, group

    def _z(self, levels: list[NDArray[Any]], values: NDArray[np.float64]) -> NDArray[np.float64]:
        level, group = self._baseline_index(levels)
        med = np.empty_like(values)
        scale = np.empty_like(values)
        for lvl in np.unique(level):
            rows = level == lvl
            med[rows] = self.level_center_[lvl][group[rows]]
            scale[rows] = self.level_scale_[lvl][group[rows]]
        z = (values - med) / scale
        if not self.fallback_to_all and self.n_key_columns:
            z[level == 0] = 0.0
        return z

    def _score(
        self, levels: list[NDArray[Any]], values: NDArray[np.float64]
    ) -> NDArray[np.float64]:
        z = self._z(levels, values)
        if self.direction == "both":
            z = np.abs(z)
        return -z.max(axis=1)

    def _check(self, X: Any) -> tuple[list[NDArray[Any]], NDArray[np.float64]]:
        check_is_fitted(self)
        X = validate_data(self, X, dtype=None, reset=False)
        return self._split(X)

    def score_samples(self, X: Any) -> NDArray[np.float64]:
        """Minus the robust z (lower = more abnormal, as in scikit-learn)."""
        return self._score(*self._check(X))

    def decision_function(self, X: Any) -> NDArray[np.float64]:
        return self.score_samples(X) - self.offset_

    def predict(self, X: Any) -> NDArray[np.int_]:
        return np.where(self.decision_function(X) >= 0, 1, -1)

    def z_scores(self, X: Any) -> NDArray[np.float64]:
        """Robust z per value column (positive = above the baseline), for explanations."""
        return self._z(*self._check(X))

    def baseline(self, X: Any) -> dict[str, NDArray[Any]]:
        """What each row was compared with: level, group size, median and 99th percentile."""
        levels, values = self._check(X)
        level, group = self._baseline_index(levels)
        out = {
            "level": level,
            "n": np.empty(level.size, dtype=np.int64),
            "median": np.empty_like(values),
            "p99": np.empty_like(values),
        }
        for lvl in np.unique(level):
            rows = level == lvl
            out["n"][rows] = self.level_counts_[lvl][group[rows]]
            out["median"][rows] = self.level_median_[lvl][group[rows]]
            out["p99"][rows] = self.level_p99_[lvl][group[rows]]
        return out

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.categorical = True
        tags.input_tags.string = True
        return tags


class GroupDeviationEncoder(TransformerMixin, BaseEstimator):
    """Feature: how far each value is from its own group's history, as a robust z.

    Same layout and baselines as :class:`GroupedRobustZ` (key columns first, then values);
    outputs one signed z per value column, e.g. a transfer's log volume against that
    recipient's usual transfers.
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "n_key_columns": [Interval(Integral, 0, None, closed="left")],
        "min_history": [Interval(Integral, 1, None, closed="left")],
        "min_scale": [Interval(Real, 0, None, closed="neither")],
        "baseline_quantile": [Interval(Real, 0, 1, closed="both")],
    }

    def __init__(
        self,
        n_key_columns: int = 1,
        min_history: int = 5,
        min_scale: float = 0.25,
        baseline_quantile: float = 0.5,
    ) -> None:
        self.n_key_columns = n_key_columns
        self.min_history = min_history
        self.min_scale = min_scale
        self.baseline_quantile = baseline_quantile

    def fit(self, X: Any, y: Any = None) -> GroupDeviationEncoder:
        self._validate_params()
        X = validate_data(self, X, dtype=None, reset=True)
        self.baseline_ = GroupedRobustZ(
            n_key_columns=self.n_key_columns,
            min_history=self.min_history,
            min_scale=self.min_scale,
            direction="both",
            baseline_quantile=self.baseline_quantile,
        ).fit(X)
        return self

    def transform(self, X: Any) -> NDArray[np.float64]:
        check_is_fitted(self)
        X = validate_data(self, X, dtype=None, reset=False)
        return self.baseline_.z_scores(X)

    def get_feature_names_out(self, input_features: Any = None) -> NDArray[np.object_]:
        check_is_fitted(self)
        names = _input_names(self, input_features)[self.n_key_columns :]
        return np.asarray([f"{n}_vs_group" for n in names], dtype=object)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.categorical = True
        tags.input_tags.string = True
        return tags


class FirstSeenDetector(OutlierMixin, BaseEstimator):
    """Novelty: a row whose combination of values never occurred in ``fit`` is an outlier.

    ``score_samples`` is ``log(1 + times the combination was seen)`` plus a tie-breaker
    below 0.01 that grows with how common each single value was (a combination whose
    recipient was never seen at all is more novel than a known recipient's new channel);
    combinations seen fewer than ``min_count`` times are outliers. By definition nothing
    in the fitted data itself is new.
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "min_count": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(self, min_count: int = 1) -> None:
        self.min_count = min_count

    @staticmethod
    def _combine(X: NDArray[Any]) -> NDArray[Any]:
        cols = X.astype(str)
        joined = cols[:, 0]
        for j in range(1, cols.shape[1]):
            joined = np.char.add(np.char.add(joined, _KEY_SEP), cols[:, j])
        return joined

    def fit(self, X: Any, y: Any = None) -> FirstSeenDetector:
        self._validate_params()
        X = validate_data(self, X, dtype=None, reset=True)
        self.combinations_, self.counts_ = np.unique(self._combine(X), return_counts=True)
        self.value_encoder_ = RarityEncoder().fit(X)
        self.n_samples_fit_ = X.shape[0]
        # Half-way between "seen min_count - 1 times" and "seen min_count times".
        self.offset_ = float(0.5 * (np.log1p(self.min_count - 1) + np.log1p(self.min_count)))
        return self

    def seen_counts(self, X: Any) -> NDArray[np.int64]:
        """How many times each row's combination occurred in the fitted data."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=None, reset=False)
        idx = _lookup(self.combinations_, self._combine(X))
        return np.where(idx >= 0, self.counts_[np.maximum(idx, 0)], 0).astype(np.int64)

    def score_samples(self, X: Any) -> NDArray[np.float64]:
        """log(1 + count seen in fit) + tie-breaker: lower = more novel (about 0 = never seen)."""
        counts = self.seen_counts(X).astype(np.float64)
        X = validate_data(self, X, dtype=None, reset=False)
        rarity = self.value_encoder_.transform(X)
        # The rarest single value counts most; the mean breaks its ties.
        rarity = 0.8 * rarity.max(axis=1) + 0.2 * rarity.mean(axis=1)
        ceiling = np.log(self.n_samples_fit_ + 2.0) + 1.0
        commonness = np.clip(1.0 - rarity / ceiling, 0.0, 1.0)
        return np.log1p(counts) + 0.01 * commonness

    def decision_function(self, X: Any) -> NDArray[np.float64]:
        return self.score_samples(X) - self.offset_

    def predict(self, X: Any) -> NDArray[np.int_]:
        return np.where(self.decision_function(X) >= 0, 1, -1)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.categorical = True
        tags.input_tags.string = True
        return tags


def _input_names(estimator: BaseEstimator, input_features: Any) -> list[str]:
    if input_features is not None:
        names = [str(n) for n in input_features]
        if len(names) != estimator.n_features_in_:
            raise ValueError(
                f"input_features has {len(names)} names, expected {estimator.n_features_in_}"
            )
        return names
    if hasattr(estimator, "feature_names_in_"):
        return [str(n) for n in estimator.feature_names_in_]
    return [f"x{i}" for i in range(estimator.n_features_in_)]
