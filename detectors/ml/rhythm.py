"""A flow's own rhythm: on which days it runs, and how much it sends on the days it runs.

:class:`FlowRhythmSurprise` judges one flow-day (a sender-recipient-authority pair on one
local day of the sender) against that flow's own history, never against other flows:

- **Cadence.** Which days the flow runs on is learned per flow over three calendars
  (weekday; part of the month: its first business day, other days 1-10, days 11-20, other
  days from the 21st, its last business day; month of the year). A flow that runs every night is as normal on a Sunday as
  on a Monday; a flow that ran on 0 of 60 Sundays is not, when it runs on one. The
  surprise is the log-ratio of how often days of this kind occur among the flow's active
  days (additively smoothed towards the calendar's own share) to their share of all the
  days in the flow's span: 0 for a flow that runs on any kind of day, large for a kind of
  day the flow never runs on. The strongest calendar counts.
- **Volume, in transfers and in records.** The first ``count_measures`` measures (the
  transfers) are counts: the flow's mean per active day and its own dispersion over
  Poisson give a quasi-Poisson surprise of the day's count. The others (the records,
  heavy-tailed: a flow's monthly bulk is a thousand times its daily trickle) are judged
  on ``ln(1 + count)``: above the flow's ``upper_quantile`` (its bulk days included) a day
  is scored under a Laplace tail with the flow's own spread (the MAD of the log, at least
  ``min_spread``): ``-ln(1 - upper_quantile) + d ln 2 / MAD`` nats for a day ``d`` above
  it on the log scale. Days of the same kind (the same weekday, part of the month or
  month of the year, with at least ``min_class_history`` days of their own) raise the
  reference when they are busier (month-end and filing-season peaks are judged against
  past month-ends and seasons), and so does the rest of the sender's traffic that day
  when it is heavier than on that weekday usually (never lower: a quiet weekend does not
  make a nightly flow's usual night a burst). A day must also exceed the expected count
  by ``min_excess`` (per measure) to count at all.

Cadence and volume are different kinds of evidence (a day of the week can surprise by a
few nats at most, a record count by hundreds), so each is read as a *rarity* against the
training rows: ``-ln`` of the share of training flow-days with evidence of that kind at
least as strong, past the training's strongest an exponential tail fitted to its
``RARITY_TAIL`` strongest. The row's score is its rarest kind of evidence, in nats of "one
in so many training flow-days"; ``score_samples`` is minus it (lower = more abnormal). Flows with fewer than ``min_history`` active days are
not judged (surprise 0). Knows nothing about DuckDB, alerts or agencies.
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted, validate_data

from detectors.ml.estimators import _as_keys, _group_quantiles, _joint_keys, _lookup
from detectors.ml.surprise import _SurpriseOutlier, poisson_surprise

CALENDARS = ("weekday", "part of the month", "month of the year")
CALENDAR_SIZES = (7, 5, 12)
_OFFSETS = np.concatenate([[0], np.cumsum(CALENDAR_SIZES)[:-1]])
N_CLASSES = int(sum(CALENDAR_SIZES))
WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTH_PARTS = (
    "first business days of a month",
    "other days 1-10 of a month",
    "days 11-20 of a month",
    "other days from the 21st of a month",
    "last business days of a month",
)
MONTH_NAMES = (
    "January", "February", "March", "April", "May", "June", "July", "August",
    "September", "October", "November", "December",
)  # fmt: skip
_LN2 = float(np.log(2.0))
# The training's highest values of each kind of evidence that its tail is fitted to, and
# the least mean excess (nats) that tail may have.
RARITY_TAIL = 20
MIN_TAIL_SCALE = 0.5


def calendar_classes(day_number: NDArray[Any]) -> NDArray[np.int64]:
    """Per day (days since 1970-01-01): weekday (0 = Monday), part of month (see
    :data:`MONTH_PARTS`), month (0 = January), as column indexes into the flattened classes
    of :data:`CALENDARS`. Business days are Monday to Friday (holidays are not known)."""
    d = np.asarray(day_number, dtype=np.int64)
    weekday = (d + 3) % 7  # 1970-01-01 was a Thursday
    dates = d.astype("datetime64[D]")
    months = dates.astype("datetime64[M]")
    first = months.astype("datetime64[D]").astype(np.int64)
    last = (months + 1).astype("datetime64[D]").astype(np.int64) - 1
    first_wd, last_wd = (first + 3) % 7, (last + 3) % 7
    first_business = first + np.select([first_wd == 5, first_wd == 6], [2, 1], 0)
    last_business = last - np.select([last_wd == 5, last_wd == 6], [1, 2], 0)
    day_of_month = d - first
    part = np.select(
        [d == first_business, d == last_business, day_of_month < 10, day_of_month < 20],
        [0, 4, 1, 2],
        3,
    )
    month = months.astype(np.int64) % 12
    return np.stack([weekday, part, month], axis=1) + _OFFSETS


def day_kind(day_number: int) -> str:
    """'Friday, last business days of a month, in March' (for explanations)."""
    w, p, m = (calendar_classes(np.array([day_number]))[0] - _OFFSETS).tolist()
    return f"{WEEKDAY_NAMES[w]}, {MONTH_PARTS[p]}, in {MONTH_NAMES[m]}"


def class_name(flat: int) -> str:
    """The name of a flattened calendar class ('Sundays', 'days 11-20 of a month')."""
    if flat < _OFFSETS[1]:
        return WEEKDAY_NAMES[flat] + "s"
    if flat < _OFFSETS[2]:
        return MONTH_PARTS[flat - _OFFSETS[1]]
    return "days in " + MONTH_NAMES[flat - _OFFSETS[2]]


class FlowRhythmSurprise(_SurpriseOutlier):
    """Surprise of a flow-day against the flow's own cadence and volume (module docstring).

    Column layout: ``[key_0 .. key_{k-1}] [day] [x_1 .. x_M] [total_1 .. total_M if
    with_load]``. Keys run from the *unit* whose other traffic sets the day's load (key 0,
    e.g. the sending agency) to the flow (all keys joined); ``day`` is the local day as
    days since 1970-01-01; ``x_m`` the flow's count of measure ``m`` that day and
    ``total_m`` the unit's count that day *including* the flow. Every row is a day the flow
    ran; a flow that ran on no day has no row.
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "n_key_columns": [Interval(Integral, 0, None, closed="left")],
        "with_load": ["boolean"],
        "min_history": [Interval(Integral, 1, None, closed="left")],
        "min_class_history": [Interval(Integral, 1, None, closed="left")],
        "min_spread": [Interval(Real, 0, None, closed="neither")],
        "count_measures": [Interval(Integral, 0, None, closed="left")],
        "upper_quantile": [Interval(Real, 0, 1, closed="neither")],
        "min_excess": [Interval(Real, 0, None, closed="left"), list, tuple],
        "cadence_smoothing": [Interval(Real, 0, None, closed="neither")],
        "max_load": [Interval(Real, 1, None, closed="left")],
        "contamination": [Interval(Real, 0, 0.5, closed="right")],
    }

    def __init__(
        self,
        n_key_columns: int = 0,
        with_load: bool = False,
        min_history: int = 8,
        min_class_history: int = 3,
        min_spread: float = 0.1,
        count_measures: int = 0,
        upper_quantile: float = 0.98,
        min_excess: float | list[float] | tuple[float, ...] = 0.0,
        cadence_smoothing: float = 1.0,
        max_load: float = 4.0,
        contamination: float = 0.01,
    ) -> None:
        self.n_key_columns = n_key_columns
        self.with_load = with_load
        self.min_history = min_history
        self.min_class_history = min_class_history
        self.min_spread = min_spread
        self.count_measures = count_measures
        self.upper_quantile = upper_quantile
        self.min_excess = min_excess
        self.cadence_smoothing = cadence_smoothing
        self.max_load = max_load
        self.contamination = contamination

    # -- layout ----------------------------------------------------------------------------
    def _split(self, X: NDArray[Any]) -> dict[str, Any]:
        k = self.n_key_columns
        rest = X.shape[1] - k - 1
        blocks = 2 if self.with_load else 1
        if rest < blocks or rest % blocks:
            raise ValueError(
                f"n_features = {X.shape[1]}: expected {k} key column(s), a day column, then"
                f" {'a count and a sender total' if self.with_load else 'a count'} per measure"
            )
        try:
            day = np.floor(X[:, k].astype(np.float64))
            values = np.maximum(X[:, k + 1 :].astype(np.float64), 0.0)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"count and day columns must be numeric: {exc}") from exc
        if not (np.isfinite(values).all() and np.isfinite(day).all()):
            raise ValueError("Input contains NaN or infinity in the count or day columns.")
        m = rest // blocks
        unit: NDArray[Any] = np.zeros(X.shape[0], dtype=np.int64)
        flow: NDArray[Any] = unit
        for j in range(k):
            key = _as_keys(X[:, j])
            flow = key if j == 0 else _joint_keys(flow, key)
            if j == 0:
                unit = key
        return {
            "unit": unit,
            "flow": flow,
            "day": day.astype(np.int64),
            "x": values[:, :m],
            "total": values[:, m:] if self.with_load else None,
        }

    def _excess_floor(self, n_measures: int) -> NDArray[np.float64]:
        floor = np.atleast_1d(np.asarray(self.min_excess, dtype=np.float64))
        if floor.size == 1:
            floor = np.repeat(floor, n_measures)
        if floor.size != n_measures:
            raise ValueError(
                f"min_excess has {floor.size} value(s) for {n_measures} measure(s): give one, or"
                " one per measure"
            )
        return floor

    # -- fit -------------------------------------------------------------------------------
    def fit(self, X: Any, y: Any = None) -> FlowRhythmSurprise:
        self._validate_params()
        X = validate_data(self, X, dtype=None, reset=True)
        p = self._split(X)
        day, x = p["day"], p["x"]
        self.n_measures_ = x.shape[1]
        self.min_excess_ = self._excess_floor(self.n_measures_)
        self.flows_, inv = np.unique(p["flow"], return_inverse=True)
        inv = inv.ravel()
        n_flows = self.flows_.size
        self._fit_cadence(inv, day, n_flows)
        self._fit_volume(inv, day, x, n_flows)
        self._fit_load(p, inv, n_flows)
        own = self._surprises(p, calibrated=False)
        self._fit_rarity(np.column_stack([own["cadence"], own["volume"]]))
        self.offset_ = float(
            np.percentile(-self._surprises(p)["score"], 100.0 * self.contamination)
        )
        return self

    def _fit_rarity(self, raw: NDArray[np.float64]) -> None:
        """Each kind of evidence (cadence, each measure) on the training rows, sorted, and an
        exponential tail over its ``RARITY_TAIL`` highest values (threshold, mean excess)."""
        self.training_evidence_ = np.sort(raw, axis=0)
        n = raw.shape[0]
        top = min(RARITY_TAIL, max(n - 1, 1))
        self.rarity_tail_start_ = self.training_evidence_[max(n - top - 1, 0)]
        excess = self.training_evidence_[n - top :] - self.rarity_tail_start_
        self.rarity_tail_scale_ = np.maximum(excess.mean(axis=0), MIN_TAIL_SCALE)

    def _rarity(self, raw: NDArray[np.float64]) -> NDArray[np.float64]:
        """``-ln`` of the share of training rows with evidence at least as strong, per kind;
        beyond the training's highest values, the fitted exponential tail."""
        ref = self.training_evidence_
        n = float(ref.shape[0])
        top = min(RARITY_TAIL, max(ref.shape[0] - 1, 1))
        out = np.zeros(raw.shape)
        for j in range(raw.shape[1]):
            at_least = n - np.searchsorted(ref[:, j], raw[:, j], side="left")
            with np.errstate(divide="ignore"):
                empirical = -np.log(np.maximum(at_least, 0.5) / n)
            tail = (
                np.log(n / top)
                + (raw[:, j] - self.rarity_tail_start_[j]) / (self.rarity_tail_scale_[j])
            )
            out[:, j] = np.where(raw[:, j] > self.rarity_tail_start_[j], tail, empirical)
        return np.where(raw > 0, np.maximum(out, 0.0), 0.0)

    def _fit_cadence(self, inv: NDArray[np.intp], day: NDArray[np.int64], n_flows: int) -> None:
        """Per flow: its span, active days, and per calendar class the days in its span and
        the days it ran."""
        first = np.full(n_flows, np.iinfo(np.int64).max)
        last = np.full(n_flows, np.iinfo(np.int64).min)
        np.minimum.at(first, inv, day)
        np.maximum.at(last, inv, day)
        active = np.unique(np.stack([inv.astype(np.int64), day], axis=1), axis=0)
        self.first_day_, self.last_day_ = first, last
        self.active_days_ = np.bincount(active[:, 0], minlength=n_flows).astype(np.float64)
        self.class_active_ = np.zeros((n_flows, N_CLASSES))
        np.add.at(self.class_active_, (active[:, [0]], calendar_classes(active[:, 1])), 1.0)
        # Days of each class in each flow's span: prefix sums over the whole range.
        lo = int(first.min())
        every_day = np.arange(lo, int(last.max()) + 1)
        onehot = np.zeros((every_day.size + 1, N_CLASSES))
        np.add.at(
            onehot, (np.arange(1, every_day.size + 1)[:, None], calendar_classes(every_day)), 1.0
        )
        cum = np.cumsum(onehot, axis=0)
        self.class_days_ = cum[last - lo + 1] - cum[first - lo]

    def _fit_volume(
        self, inv: NDArray[np.intp], day: NDArray[np.int64], x: NDArray[np.float64], n_flows: int
    ) -> None:
        """Per flow and measure, its reference level (the mean of a count measure; the
        ``upper_quantile`` of a logged one), its spread (dispersion over Poisson; MAD of the
        log) and, per (flow, calendar class) with ``min_class_history`` days, the class's
        mean or median, which raises the reference on days of that kind."""
        v = np.log1p(x)
        counts_m = np.arange(self.n_measures_) < self.count_measures
        self.level_ = np.zeros((n_flows, self.n_measures_))
        self.spread_ = np.ones((n_flows, self.n_measures_))
        size = np.maximum(np.bincount(inv, minlength=n_flows), 1).astype(np.float64)
        for m in range(self.n_measures_):
            if counts_m[m]:
                mean = np.bincount(inv, weights=x[:, m], minlength=n_flows) / size
                var = np.bincount(inv, weights=x[:, m] ** 2, minlength=n_flows) / size - mean**2
                with np.errstate(divide="ignore", invalid="ignore"):
                    phi = np.where(mean > 0, var / mean, 1.0)
                self.level_[:, m] = mean
                self.spread_[:, m] = np.clip(np.nan_to_num(phi, nan=1.0), 1.0, None)
                continue
            _, q = _group_quantiles(inv, v[:, m], n_flows, [0.5, self.upper_quantile])
            self.level_[:, m] = np.expm1(np.nan_to_num(q[:, 1]))
            _, mad = _group_quantiles(inv, np.abs(v[:, m] - q[inv, 0]), n_flows, [0.5])
            self.spread_[:, m] = np.maximum(np.nan_to_num(mad[:, 0]), self.min_spread)
        classes = calendar_classes(day)
        class_keys, class_level = [], []
        for c in range(classes.shape[1]):
            keys, kinv = np.unique(
                inv.astype(np.int64) * N_CLASSES + classes[:, c], return_inverse=True
            )
            kinv = kinv.ravel()
            n_in = np.bincount(kinv, minlength=keys.size)
            level = np.zeros((keys.size, self.n_measures_))
            for m in range(self.n_measures_):
                if counts_m[m]:
                    level[:, m] = np.bincount(kinv, weights=x[:, m], minlength=keys.size) / n_in
                else:
                    level[:, m] = np.expm1(
                        _group_quantiles(kinv, v[:, m], keys.size, [0.5])[1][:, 0]
                    )
            enough = n_in >= self.min_class_history
            class_keys.append(keys[enough])
            class_level.append(level[enough])
        all_keys = np.concatenate(class_keys)
        order = np.argsort(all_keys, kind="stable")
        self.class_keys_ = all_keys[order]
        self.class_level_ = np.concatenate(class_level)[order].reshape(-1, self.n_measures_)

    def _fit_load(self, p: dict[str, Any], inv: NDArray[np.intp], n_flows: int) -> None:
        """The unit's median daily total, per weekday where it has ``min_class_history``
        days of that weekday (a weekly flow of another recipient makes its weekday busier
        without making anyone else's day so), and each flow's unit (only ``with_load``)."""
        flow_unit = np.zeros(n_flows, dtype=np.intp)
        self.units_, unit_inv = np.unique(p["unit"], return_inverse=True)
        unit_inv = unit_inv.ravel()
        flow_unit[inv] = unit_inv
        self.flow_unit_ = flow_unit
        self.unit_usual_total_ = np.zeros((self.units_.size, 7, self.n_measures_))
        if p["total"] is None:
            return
        _, first_row = np.unique(
            np.stack([unit_inv.astype(np.int64), p["day"]], axis=1), axis=0, return_index=True
        )
        units = unit_inv[first_row]
        weekday = calendar_classes(p["day"][first_row])[:, 0]
        by_weekday = units.astype(np.intp) * 7 + weekday
        for m in range(self.n_measures_):
            totals = p["total"][first_row, m]
            _, overall = _group_quantiles(units, totals, self.units_.size, [0.5])
            counts, med = _group_quantiles(by_weekday, totals, self.units_.size * 7, [0.5])
            own = np.where(counts >= self.min_class_history, med[:, 0], np.nan)
            self.unit_usual_total_[:, :, m] = np.where(
                np.isnan(own.reshape(-1, 7)), np.nan_to_num(overall[:, :1]), own.reshape(-1, 7)
            )

    # -- scoring ---------------------------------------------------------------------------
    def _surprises(self, p: dict[str, Any], calibrated: bool = True) -> dict[str, NDArray[Any]]:
        x = p["x"]
        n = x.shape[0]
        if x.shape[1] != self.n_measures_:
            raise ValueError(f"expected {self.n_measures_} measure(s), got {x.shape[1]}")
        f = _lookup(self.flows_, p["flow"])
        fi = np.maximum(f, 0)
        judged = (f >= 0) & (self.active_days_[fi] >= self.min_history)
        classes = calendar_classes(p["day"])

        # Cadence: log-ratio of the class's share among active days to its share of days.
        rows = np.arange(n)[:, None]
        active_c = self.class_active_[fi[:, None], classes]
        days_c = self.class_days_[fi[:, None], classes]
        span = np.maximum((self.last_day_[fi] - self.first_day_[fi] + 1).astype(np.float64), 1.0)
        share = days_c / span[:, None]
        alpha = self.cadence_smoothing
        with np.errstate(divide="ignore", invalid="ignore"):
            p_active = (active_c + alpha * share) / (self.active_days_[fi][:, None] + alpha)
            llr = np.where(days_c > 0, -np.log(p_active / share), 0.0)
        llr = np.where(judged[:, None], np.maximum(llr, 0.0), 0.0)
        strongest = np.argmax(llr, axis=1)
        cadence = llr[rows[:, 0], strongest]

        # Volume: the flow's reference level, raised by days of the same kind and by load.
        usual = self.level_[fi].copy()
        for c in range(classes.shape[1]):
            k = _lookup(self.class_keys_, fi.astype(np.int64) * N_CLASSES + classes[:, c])
            hit = k >= 0
            usual[hit] = np.maximum(usual[hit], self.class_level_[k[hit]])
        load = np.ones_like(x)
        if p["total"] is not None:
            unit_usual = self.unit_usual_total_[self.flow_unit_[fi], classes[:, 0]]
            usual_others = unit_usual - usual
            others = np.maximum(p["total"] - x, 0.0)
            with np.errstate(divide="ignore", invalid="ignore"):
                load = np.where(
                    usual_others >= 0.5, np.clip(others / usual_others, 1.0, self.max_load), 1.0
                )
        expected = usual * load
        spread = self.spread_[fi]
        count_m = np.arange(x.shape[1]) < self.count_measures
        tail = -np.log1p(-self.upper_quantile)
        logged = tail + (np.log1p(x) - np.log1p(expected)) * _LN2 / spread
        counted = poisson_surprise(x / spread, np.maximum(expected, 1e-3) / spread)
        above = (x > expected) & (x - expected >= self.min_excess_) & judged[:, None]
        volume = np.where(above, np.where(count_m, counted, logged), 0.0)
        rarity = np.zeros((n, 1 + x.shape[1]))
        if calibrated:
            rarity = self._rarity(np.column_stack([cadence, volume]))
        return {
            "score": rarity.max(axis=1), "rarity": rarity, "cadence": cadence, "cadence_class": classes[rows[:, 0], strongest],
            "class_active": active_c[rows[:, 0], strongest],
            "class_days": days_c[rows[:, 0], strongest],
            "active_days": np.where(f >= 0, self.active_days_[fi], 0.0),
            "span_days": np.where(f >= 0, span, 0.0), "volume": volume,
            "usual": usual, "expected": expected, "load": load, "spread": spread,
            "judged": judged, "flow_index": f,
        }  # fmt: skip

    def _check(self, X: Any) -> dict[str, Any]:
        check_is_fitted(self)
        return self._split(validate_data(self, X, dtype=None, reset=False))

    def explain(self, X: Any) -> dict[str, NDArray[Any]]:
        """What each row was compared with: the flow (``flow_index`` into ``flows_``, -1 if
        unknown), its cadence (its strongest calendar class, days of that class in its span
        and days it ran on them), the usual and expected counts per measure, the load, the
        spread and each surprise."""
        return self._surprises(self._check(X))

    def score_samples(self, X: Any) -> NDArray[np.float64]:
        """Minus the row's largest surprise, cadence or volume (lower = more abnormal)."""
        return -self._surprises(self._check(X))["score"]


def cadence_label(active_days: float, span_days: float, class_active: NDArray[Any]) -> str:
    """How a flow runs, in words, from its active days per calendar class (one flow)."""
    if active_days <= 0 or span_days <= 0:
        return "no history"
    share = active_days / span_days
    weekday = class_active[: CALENDAR_SIZES[0]]
    weekend_share = float(weekday[5:].sum()) / active_days
    if share >= 0.7 and weekend_share >= 0.15:
        return "every day, weekends included"
    if share >= 0.5 and weekend_share < 0.05:
        return "on working days"
    top_day = int(np.argmax(weekday))
    per_week = active_days / (span_days / 7.0)
    if weekday[top_day] >= 0.7 * active_days and 0.5 <= per_week <= 1.5:
        return f"weekly, on {WEEKDAY_NAMES[top_day]}s"
    per_month = active_days / (span_days / 30.44)
    if 0.5 <= per_month <= 1.5:
        return "about monthly"
    if span_days >= 300 and active_days / (span_days / 365.25) <= 2.0:
        return "about yearly"
    return f"irregularly ({int(active_days)} of {int(span_days)} days)"
