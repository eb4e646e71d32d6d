"""How much history an ML detector trains on: bounded by its needs and by DWATCH_MEMORY.

Training reads a detector's training frame (aggregated in DuckDB: one row per transfer,
flow-day, user-day or combination-day), fits on it in memory and scores it again for
the alert floor. Two bounds keep that flat however large the store grows:

* **History the model needs** (``training_days`` in the ML config): with no ``--from``,
  training starts that many days before the detector's latest event. Why each default is
  what it is: ``detectors/ml/config.yaml`` and docs/ml.md.
* **Rows the budget holds** (:func:`max_training_rows`): when the window still holds more
  rows than the Python share of ``DWATCH_MEMORY`` can fit (at the detector's measured
  ``train_row_bytes``), or more than its ``training_rows`` setting, it is narrowed to the
  most recent whole days that fit, and the model records the narrowed window
  (explanations quote it). The training result says so.

The frame is read without the evidence lists (``event_ids``): models never see them, and
at millions of rows they were most of training's memory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import duckdb
import polars as pl

from detectors.ml import features, reuse
from detectors.ml.detectors import MLDetector
from dwatch.memory import memory_budget

# What one training row costs in Python at the peak of a fit when a detector does not say
# (MLDetector.train_row_bytes, measured per detector).
TRAIN_ROW_BYTES = 3072
# Frame columns that only alerts use; training reads the frame without them.
EVIDENCE_ONLY_COLUMNS = ("event_ids",)


def max_training_rows(detector: MLDetector | None = None) -> int:
    """Training rows the ``DWATCH_MEMORY`` budget holds at once (for ``detector``: at its
    measured bytes a row, and no more than its ``training_rows`` setting)."""
    row_bytes = detector.train_row_bytes if detector is not None else TRAIN_ROW_BYTES
    rows = memory_budget().rows_for(row_bytes, floor=50_000)
    setting = detector.settings.training_rows if detector is not None else None
    return min(rows, setting) if setting else rows


def _limit_words(detector: MLDetector, limit: int, max_rows: int | None) -> str:
    """Which bound ``limit`` is, for the narrowed window's note."""
    if not max_rows and detector.settings.training_rows == limit:
        return f"its training_rows setting is {limit:,}"
    return f"the DWATCH_MEMORY budget holds {limit:,}"


@dataclass(frozen=True)
class TrainingWindow:
    """The window a detector is fitted on, and why it differs from the one asked for."""

    window_from: datetime | None
    window_to: datetime | None
    note: str = ""


def _plan(
    con: duckdb.DuckDBPyConnection,
    detector: MLDetector,
    window_from: datetime | None,
    window_to: datetime | None,
) -> features.FeatureQuery | None:
    with features.planned() as queries:
        detector.training_frame(con, window_from, window_to)
    return queries[0] if len(queries) == 1 else None


def _latest_event(con: duckdb.DuckDBPyConnection, detector: MLDetector) -> datetime | None:
    row = con.execute(
        "SELECT max(occurred_at) FROM disclosure_events WHERE event_type IN"
        " (SELECT unnest($types::VARCHAR[]))",
        {"types": detector.event_types},
    ).fetchall()
    return row[0][0] if row else None


def _start_of_recent_days(
    con: duckdb.DuckDBPyConnection, query: features.FeatureQuery, max_rows: int
) -> tuple[int, datetime | None]:
    """The frame's rows, and the first UTC day from which the most recent whole days hold
    at most ``max_rows`` of them (None when every row fits)."""
    columns = con.sql(query.sql, params=query.params).columns
    when = "first_at" if "first_at" in columns else "occurred_at"
    row = con.execute(
        f"""
        WITH frame AS ({query.sql}),
        per_day AS (SELECT CAST(timezone('UTC', "{when}") AS DATE) AS d, count(*) AS n
                    FROM frame GROUP BY 1),
        running AS (SELECT d, n, sum(n) OVER (ORDER BY d DESC) AS newest FROM per_day)
        SELECT (SELECT sum(n) FROM per_day), min(d) FILTER (WHERE newest <= $max_rows)
        FROM running
        """,
        {**query.params, "max_rows": max_rows},
    ).fetchall()[0]
    total = int(row[0] or 0)
    if total <= max_rows:
        return total, None
    first = row[1]
    if first is None:  # the latest day alone is over the budget: keep that day
        first = con.execute(
            f"SELECT max(CAST(timezone('UTC', \"{when}\") AS DATE)) FROM ({query.sql})",
            query.params,
        ).fetchall()[0][0]
    return total, datetime.combine(first, datetime.min.time(), tzinfo=UTC)


def _needed(
    con: duckdb.DuckDBPyConnection,
    detector: MLDetector,
    window_from: datetime | None,
    window_to: datetime | None,
) -> tuple[datetime | None, list[str]]:
    """The window's start: the one asked for, else ``training_days`` before the latest
    event (and the note saying so)."""
    days = detector.settings.training_days
    if window_from is None and days is not None:
        latest = _latest_event(con, detector)
        end = min(window_to, latest) if window_to and latest else (window_to or latest)
        if end is not None:
            return end - timedelta(days=days), [
                f"the {days} days before its latest event (training_days)"
            ]
    return window_from, []


def window_and_frame(
    con: duckdb.DuckDBPyConnection,
    detector: MLDetector,
    window_from: datetime | None,
    window_to: datetime | None,
    max_rows: int | None = None,
    keep_for_scoring: bool = False,
) -> tuple[TrainingWindow, pl.DataFrame]:
    """:func:`training_window` and :func:`training_frame` with one run of the feature query
    over the whole window: its lean rows go to a temporary DuckDB table (spilling to disk
    past DuckDB's share of the budget, unsorted: the final sort of millions of rows is
    what ran out of memory under a small budget), the rows per day are counted there, and
    the frame is read from it, sorted, when it fits ``max_rows``. Only a window over the
    budget runs the query again, on the narrowed window (before, the whole window's query
    ran three times: streamed until over the budget, counted per day, then narrowed).

    ``keep_for_scoring``: when the window's rows are all history's scoring rows
    (:func:`reuse.shares_rows`), the table holds them whole, evidence included, and stays
    for the scoring that follows (:mod:`detectors.ml.reuse`); the fit reads them lean."""
    start, notes = _needed(con, detector, window_from, window_to)
    limit = max_rows or max_training_rows(detector)
    shared = keep_for_scoring and reuse.shares_rows(con, detector, start, window_to)
    # The window's rows are all history's: the all-history query builds them.
    query = reuse.all_history(con, detector) if shared else _plan(con, detector, start, window_to)
    if query is None:
        window = training_window(con, detector, window_from, window_to, max_rows)
        return window, training_frame(con, detector, window)
    body, order = _unsorted(query.sql)
    table = reuse.table_name(detector) if shared else _HELD
    built = features.FeatureQuery(body, query.params)
    if not shared:
        built = _lean(con, built)
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS {built.sql}", built.params)
    except duckdb.Error as exc:
        raise features._query_error(exc) from exc
    try:
        held = _lean(con, features.FeatureQuery(f"SELECT * FROM {table}", {}))
        total, first = _start_of_recent_days(con, held, limit)
        if first is None:
            frame = features.run_query(con, features.FeatureQuery(held.sql + order, {}))
            return TrainingWindow(start, window_to, "; ".join(notes)), frame
    except BaseException:
        shared = False  # not kept: dropped below
        raise
    finally:
        if shared:
            reuse.keep(con, detector, table)
        else:
            con.execute(f"DROP TABLE IF EXISTS {table}")
    if start is not None and first <= start:
        window = TrainingWindow(start, window_to, "; ".join(notes))
    else:
        notes.append(_narrowed(first, total, _limit_words(detector, limit, max_rows)))
        window = TrainingWindow(first, window_to, "; ".join(notes))
    return window, training_frame(con, detector, window)


# The training frame of the detector being trained, held in DuckDB (see window_and_frame).
_HELD = "_ml_training_frame"
_FINAL_ORDER = re.compile(r"\s+ORDER BY\s+([\w\s.,]+?)\s*$")


def _unsorted(sql: str) -> tuple[str, str]:
    """The query without its final ``ORDER BY``, and that clause for a query of its rows
    (table aliases dropped: ``w.day`` is the output's ``day``); no clause found: the query
    as it is (its rows then keep their order in the table)."""
    match = _FINAL_ORDER.search(sql)
    if match is None:
        return sql, ""
    keys = re.sub(r"\b\w+\.(?=\w)", "", match.group(1))
    # A new line ends any SQL comment before the clause (the query is wrapped next).
    return sql[: match.start()] + "\n", f" ORDER BY {keys}"


def final_order(sql: str) -> str:
    """The query's final ``ORDER BY``, for a query of its rows held in a table."""
    return _unsorted(sql)[1]


def _narrowed(first: datetime, total: int, bound: str) -> str:
    return f"narrowed to the days from {first.date()} ({total:,} rows in the window, {bound})"


def training_window(
    con: duckdb.DuckDBPyConnection,
    detector: MLDetector,
    window_from: datetime | None,
    window_to: datetime | None,
    max_rows: int | None = None,
) -> TrainingWindow:
    """The window to fit ``detector`` on: the one asked for (else its ``training_days``
    before its latest event), narrowed to the most recent days that fit the budget."""
    window_from, notes = _needed(con, detector, window_from, window_to)
    limit = max_rows or max_training_rows(detector)
    query = _plan(con, detector, window_from, window_to)
    if query is not None:
        total, start = _start_of_recent_days(con, query, limit)
        if start is not None and (window_from is None or start > window_from):
            window_from = start
            notes.append(_narrowed(start, total, _limit_words(detector, limit, max_rows)))
    return TrainingWindow(window_from, window_to, "; ".join(notes))


def training_frame(
    con: duckdb.DuckDBPyConnection, detector: MLDetector, window: TrainingWindow
) -> pl.DataFrame:
    """The detector's training frame for the window, without the evidence-only columns
    (DuckDB then never builds them)."""
    query = _plan(con, detector, window.window_from, window.window_to)
    if query is None:
        return detector.training_frame(con, window.window_from, window.window_to)
    return features.run_query(con, _lean(con, query))


def _lean(con: duckdb.DuckDBPyConnection, query: features.FeatureQuery) -> features.FeatureQuery:
    """The query without its evidence-only columns (DuckDB then never builds them)."""
    columns = con.sql(query.sql, params=query.params).columns
    dropped = [c for c in EVIDENCE_ONLY_COLUMNS if c in columns]
    if not dropped:
        return query
    exclude = ", ".join(f'"{c}"' for c in dropped)
    return features.FeatureQuery(f"SELECT * EXCLUDE ({exclude}) FROM ({query.sql})", query.params)
