"""What :class:`detectors.ml.surprise.CountRateSurprise` learns from: sums per unit and
per entity, however many rows they come from.

A fit reads, per unit (an agency): its active days, first and last day and the sum of its
daily totals; per entity (a user): its level keys, rows, and the sum and sum of squares of
each measure. :func:`from_rows` takes them from the rows of a feature frame; DuckDB sums
the same figures over a whole training window (``detectors/ml/summary.py``) and
:func:`from_sums` takes them from its result, so a fit on the sums is the fit on the rows
(whole-number sums are exact in float64 below 2**53, whatever the order of addition).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from detectors.ml.estimators import _as_keys, _joint_keys, _lookup


@dataclass(frozen=True)
class CountStats:
    """Sums per unit (sorted by unit key) and per entity (sorted by entity key)."""

    unit_keys: NDArray[Any]
    # Active days of the unit (with a day column), else its rows.
    unit_exposure: NDArray[np.float64]
    # With a day column: the unit's first and last day, and per measure the sum over its
    # active days of its daily total; else None.
    unit_first: NDArray[np.float64] | None
    unit_last: NDArray[np.float64] | None
    unit_total: NDArray[np.float64] | None
    entity_keys: NDArray[Any]
    entity_unit: NDArray[np.intp]
    # Per level but the entity's own (level 0: the unit), the entity's key at that level.
    entity_levels: list[NDArray[Any]]
    entity_rows: NDArray[np.int64]
    entity_sum: NDArray[np.float64]
    entity_sum_sq: NDArray[np.float64]

    @property
    def n_measures(self) -> int:
        return int(self.entity_sum.shape[1])


def from_rows(
    x: NDArray[np.float64],
    levels: list[NDArray[Any]],
    day: NDArray[np.float64] | None,
    total: NDArray[np.float64] | None,
) -> CountStats:
    """The sums of rows: counts ``x`` (rows, measures), joined keys per level (unit first,
    entity last), the day of each row and the unit's total that day (with a day column)."""
    n, n_measures = x.shape
    unit = levels[0] if levels else np.zeros(n, dtype=np.int64)
    entity = levels[-1] if levels else np.zeros(n, dtype=np.int64)
    units, unit_inv = np.unique(unit, return_inverse=True)
    unit_inv = unit_inv.ravel()
    first = last = unit_total = None
    if day is not None and total is not None:
        # One (unit, day) code per row, in the order of the pairs (unit, then day):
        # unique over one integer column, not over rows of two (a lexical sort of pairs).
        days, day_inv = np.unique(day, return_inverse=True)
        pair_code = unit_inv.astype(np.int64) * days.size + day_inv.ravel()
        pair_codes, first_row = np.unique(pair_code, return_index=True)
        exposure = np.bincount(pair_codes // days.size, minlength=units.size)
        first = np.full(units.size, np.inf)
        last = np.full(units.size, -np.inf)
        np.minimum.at(first, unit_inv, day)
        np.maximum.at(last, unit_inv, day)
        # The unit's daily total: one value per (unit, day).
        unit_total = np.zeros((units.size, n_measures))
        for m in range(n_measures):
            np.add.at(unit_total[:, m], unit_inv[first_row], total[first_row, m])
    else:
        exposure = np.bincount(unit_inv, minlength=units.size)
    entities, ent_inv = np.unique(entity, return_inverse=True)
    ent_inv = ent_inv.ravel()
    ent_unit = np.zeros(entities.size, dtype=np.intp)
    ent_unit[ent_inv] = unit_inv
    first_row_of_entity = np.zeros(entities.size, dtype=np.intp)
    first_row_of_entity[ent_inv[::-1]] = np.arange(n)[::-1]
    sums = np.zeros((entities.size, n_measures))
    squares = np.zeros((entities.size, n_measures))
    for m in range(n_measures):
        sums[:, m] = np.bincount(ent_inv, weights=x[:, m], minlength=entities.size)
        squares[:, m] = np.bincount(ent_inv, weights=x[:, m] ** 2, minlength=entities.size)
    return CountStats(
        unit_keys=units,
        unit_exposure=exposure.astype(np.float64),
        unit_first=first,
        unit_last=last,
        unit_total=unit_total,
        entity_keys=entities,
        entity_unit=ent_unit,
        entity_levels=[levels[lvl][first_row_of_entity] for lvl in range(max(len(levels) - 1, 0))],
        entity_rows=np.bincount(ent_inv, minlength=entities.size).astype(np.int64),
        entity_sum=sums,
        entity_sum_sq=squares,
    )


def joined_levels(key_columns: list[NDArray[Any]]) -> list[NDArray[Any]]:
    """The key of each level: level j joins key columns 0..j (as the rows' keys are)."""
    levels: list[NDArray[Any]] = []
    joined = None
    for column in key_columns:
        keys = _as_keys(column)
        joined = keys if joined is None else _joint_keys(joined, keys)
        levels.append(joined)
    return levels


def from_sums(
    unit_codes: NDArray[Any],
    unit_sums: dict[str, NDArray[np.float64]],
    entity_codes: list[NDArray[Any]],
    entity_sums: dict[str, NDArray[np.float64]],
) -> CountStats:
    """The sums as DuckDB gives them, one row per unit and per entity in any order:
    ``unit_codes`` (the unit's key column), ``unit_sums`` (``exposure``, ``first``,
    ``last``, ``total``: units x measures; the last three None without a day column);
    ``entity_codes`` (its key columns, unit first), ``entity_sums`` (``rows``, ``sum``,
    ``sum_sq``: entities x measures)."""
    unit_keys = _as_keys(unit_codes)
    u_order = np.argsort(unit_keys, kind="stable")
    levels = joined_levels(entity_codes)
    e_order = np.argsort(levels[-1], kind="stable")

    def by_unit(name: str) -> NDArray[np.float64] | None:
        value = unit_sums.get(name)
        return None if value is None else np.asarray(value, dtype=np.float64)[u_order]

    units = unit_keys[u_order]
    return CountStats(
        unit_keys=units,
        unit_exposure=np.asarray(unit_sums["exposure"], dtype=np.float64)[u_order],
        unit_first=by_unit("first"),
        unit_last=by_unit("last"),
        unit_total=by_unit("total"),
        entity_keys=levels[-1][e_order],
        entity_unit=_lookup(units, levels[0][e_order]),
        entity_levels=[keys[e_order] for keys in levels[:-1]],
        entity_rows=np.asarray(entity_sums["rows"], dtype=np.int64)[e_order],
        entity_sum=np.asarray(entity_sums["sum"], dtype=np.float64)[e_order],
        entity_sum_sq=np.asarray(entity_sums["sum_sq"], dtype=np.float64)[e_order],
    )
