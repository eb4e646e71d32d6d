"""ML benchmark: fit a transfer-level detector on N events, score M, and compare our whole
scoring step with the model's bare ``score_samples`` on the same feature matrix.

    python -m benchmarks ml                      # 1M to fit, 5M to score (the issue's sizes)
    python -m benchmarks ml -- --train 100000 --score 500000
    python -m benchmarks ml -- --detector ml.transfer_isolation   # the isolation forest

Events are made directly in DuckDB (hash-based columns: recipients, channels, business
hours, heavy-tailed record counts, a few rare combinations), so the benchmark measures the
detector, not the generator or ingest. "Ours" is ``score_models`` for the detector, as a run
calls it: zones, model load, the feature query in DuckDB streamed in chunks (for the transfer
detectors its feature columns only), the feature pipeline, scoring on ``--threads`` threads,
thresholding, reading the flagged rows whole, explanations and the merge into ``alerts``.
"Bare" is one ``score_samples`` call of the fitted model (the naive-Bayes surprise model by
default, or the isolation forest) on the already-built feature matrix of the same rows (its
building is not counted). Last, 1% more events
arrive on three new days and are scored as an incremental run scores new batches (only the
days they touch): that costs what the increment holds, not what the year holds.
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb

from detectors.ml import features
from detectors.ml.detectors import DETECTORS
from detectors.ml.registry import latest_models, load_config, load_model
from detectors.ml.run import score_models, train_models
from dwatch.store import connect

DEFAULT_DETECTOR = "ml.transfer_surprise"
T0 = datetime(2025, 1, 1, tzinfo=UTC)
SPLIT = datetime(2026, 1, 1, tzinfo=UTC)
END = datetime(2027, 1, 1, tzinfo=UTC)


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_events(
    con: duckdb.DuckDBPyConnection, n: int, start: datetime, end: datetime, offset: int
) -> None:
    """n transfer events spread over [start, end), built set-wise in SQL."""
    seconds = int((end - start).total_seconds())
    con.execute(
        """
        INSERT INTO disclosure_events (event_id, source_system, sequence_no, occurred_at, event_type,
            disclosing_agency, recipient_agency, actor_id, actor_role, legal_authority, authority_id,
            purpose, data_elements, record_count, channel, encrypted)
        SELECT 'EV' || i, 'bench-ledger', i,
               $start::TIMESTAMPTZ + to_seconds(
                   (h % ($days)) * 86400 + (13 + (h >> 8) % 9) * 3600 + (h >> 16) % 3600),
               'disclosure', 'IRS', 'AG' || lpad(CAST(h % 60 AS VARCHAR), 2, '0'),
               'irs.' || (h >> 20) % 50, 'disclosure_specialist',
               CASE WHEN h % 60 < 50 THEN '26 USC 6103(d)' ELSE '26 USC 6103(l)(1)' END,
               CASE WHEN h % 60 < 50 THEN '26 USC 6103(d)' ELSE '26 USC 6103(l)(1)' END,
               CASE WHEN h % 60 < 50 THEN 'state_tax_administration' ELSE 'benefits' END,
               CASE WHEN (h >> 24) % 10 = 0 THEN ['name', 'address', 'tin', 'income', 'wages']
                    WHEN (h >> 24) % 10 < 6 THEN ['name', 'tin', 'income']
                    ELSE ['name', 'address', 'tin'] END,
               CASE WHEN (h >> 30) % 100 = 0 THEN 50000 + (h >> 36) % 500000
                    ELSE 1 + (h >> 36) % 20 END,
               CASE WHEN (h >> 30) % 100 = 0 THEN 'secure_file_transfer'
                    WHEN (h >> 40) % 1000 = 0 THEN 'email'
                    WHEN (h >> 40) % 2 = 0 THEN 'api' ELSE 'sftp' END,
               (h >> 44) % 5000 <> 0
        FROM (SELECT i, hash(i * 7919 + 17) AS h FROM range($offset, $offset + $n) t(i))
        """,
        {"start": start, "days": max(1, seconds // 86400), "offset": offset, "n": n},
    )


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench_ml")
    parser.add_argument("--train", type=int, default=1_000_000, help="events to fit on")
    parser.add_argument("--score", type=int, default=5_000_000, help="events to score")
    parser.add_argument("--threads", type=int, default=2, help="scoring threads")
    parser.add_argument(
        "--detector",
        default=DEFAULT_DETECTOR,
        choices=["ml.transfer_surprise", "ml.transfer_isolation", "ml.recipient_volume"],
        help="detector to measure (enabled for the run even if off in the config)",
    )
    args = parser.parse_args(argv)
    DETECTOR = args.detector

    with tempfile.TemporaryDirectory(prefix="bench-ml-") as tmp:
        con = connect(Path(tmp) / "bench.duckdb", threads=args.threads)
        t = time.perf_counter()
        make_events(con, args.train, T0, SPLIT, 0)
        make_events(con, args.score, SPLIT, END, args.train)
        print(
            f"data: {args.train:,} + {args.score:,} events made in {time.perf_counter() - t:.1f} s"
        )

        config = load_config()
        # This detector alone, enabled even if it is off in the config.
        config.detectors.update(
            {
                d: dataclasses.replace(st, enabled=d == DETECTOR)
                for d, st in config.detectors.items()
            }
        )
        t = time.perf_counter()
        train_models(con, window_from=T0, window_to=SPLIT, models_dir=Path(tmp) / "models",
                     config=config, detectors=[DETECTOR])  # fmt: skip
        fit_s = time.perf_counter() - t
        print(
            f"fit:   {fit_s:7.1f} s  {args.train / fit_s:12,.0f} rows/s  (features, fit, training"
            f" scores for the threshold, save)  peak RSS {_peak_mb():,.0f} MB"
        )

        record = latest_models(con)[DETECTOR]
        model = load_model(record)
        detector = DETECTORS[DETECTOR](config.detectors[DETECTOR])
        features.prepare_zones(con, config.time_zones)

        # Ours: the scoring step as a run does it (zones, model load, feature query
        # streamed in chunks, pipeline and model, threshold, explanations, merge).
        t, cpu = time.perf_counter(), time.process_time()
        summary = score_models(con, run_id="bench", models_dir=Path(tmp) / "models",
                               window_from=SPLIT, window_to=END, config=config,
                               threads=args.threads)  # fmt: skip
        ours, ours_cpu = time.perf_counter() - t, time.process_time() - cpu
        scored = sum(d.rows_scored for d in summary.detectors)
        t = time.perf_counter()
        frame = detector.scoring_frame(con, SPLIT, END)
        t_sql = time.perf_counter() - t
        print(
            f"score: {ours:7.1f} s  {scored / ours:12,.0f} rows/s  (score_models on {args.threads}"
            f" thread(s), {ours_cpu:.1f} CPU-s: {summary.new:,} alerts; building the whole-row"
            f" frame the bare side reads took {t_sql:.1f} s more)"
            f"  peak RSS {_peak_mb():,.0f} MB"
        )

        # Bare: scikit-learn's score_samples on the same, already-built feature matrix.
        x = frame.select(detector.feature_columns)
        matrix = model[:-1].transform(x) if len(model) > 1 else x
        t, cpu = time.perf_counter(), time.process_time()
        model[-1].score_samples(matrix)
        bare, bare_cpu = time.perf_counter() - t, time.process_time() - cpu
        print(
            f"bare:  {bare:7.1f} s  {matrix.shape[0] / bare:12,.0f} rows/s  ({type(model[-1]).__name__}.score_samples,"
            f" {matrix.shape[0]:,} x {matrix.shape[1]} matrix, one call)  peak RSS {_peak_mb():,.0f} MB"
        )
        # On a shared machine the wall clock follows the neighbours' load; CPU seconds
        # are the work each side did (ours on several threads, bare on one).
        print(
            f"ratio ours / bare = {ours / bare:.2f}x (target <= 1.5x);"
            f" CPU-s {ours_cpu / bare_cpu:.2f}x ({ours_cpu:.1f} / {bare_cpu:.1f})"
        )

        # An increment: 1% more events on the days after the scored year, scored as a
        # run scores new batches (the days they touch, detectors/ml/scope.py).
        new = max(1, args.score // 100)
        make_events(con, new, END, END + timedelta(days=3), args.train + args.score)
        windows = [("bench-ledger", END + timedelta(days=k), END + timedelta(days=k + 1))
                   for k in range(3)]  # fmt: skip
        t = time.perf_counter()
        summary = score_models(con, run_id="bench-1pct", models_dir=Path(tmp) / "models",
                               windows=windows, config=config, threads=args.threads)  # fmt: skip
        increment = time.perf_counter() - t
        rows = sum(d.rows_scored for d in summary.detectors)
        print(
            f"1%:    {increment:7.1f} s  ({new:,} new events on 3 days: {rows:,} rows scored,"
            f" {increment / ours:.1%} of scoring the year)"
        )
        con.close()
