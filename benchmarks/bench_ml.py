"""ML benchmark: fit a transfer-level detector on N events, score M, and compare our whole
scoring step with the model's bare ``score_samples`` on the same feature matrix.

    python -m benchmarks ml                      # 1M to fit, 5M to score (the issue's sizes)
    python -m benchmarks ml -- --train 100000 --score 500000
    python -m benchmarks ml -- --detector ml.transfer_isolation   # the isolation forest

Events are made directly in DuckDB (hash-based columns: recipients, channels, business
hours, heavy-tailed record counts, a few rare combinations), so the benchmark measures the
detector, not the generator or ingest. "Ours" is everything ``score_models`` does for the
detector: the feature query in DuckDB, Arrow hand-over, the feature pipeline, scoring in
row chunks on two threads, thresholding, explanations and the merge into ``alerts``.
"Bare" is one ``score_samples`` call of the fitted model (the naive-Bayes surprise model by
default, or the isolation forest) on the already-built feature matrix.
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from detectors.alerts import merge_alerts
from detectors.ml import features
from detectors.ml.detectors import DETECTORS
from detectors.ml.registry import latest_models, load_config, load_model
from detectors.ml.run import alerts_for, train_models
from dwatch.store import connect, transaction

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
        config.detectors[DETECTOR] = dataclasses.replace(config.detectors[DETECTOR], enabled=True)
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

        # Ours: the whole scoring step.
        t = time.perf_counter()
        frame = detector.scoring_frame(con, SPLIT, END)
        t_sql = time.perf_counter() - t
        scores = detector.anomaly_scores(model, frame, threads=args.threads)
        t_score = time.perf_counter() - t - t_sql
        candidates = alerts_for(detector, model, record, frame, scores)
        with transaction(con):
            merged = merge_alerts(con, candidates.to_arrow(), detector_ids=[DETECTOR], run_id="bench",
                                  retract_reason="bench", window_from=SPLIT, window_to=END)  # fmt: skip
        ours = time.perf_counter() - t
        print(
            f"score: {ours:7.1f} s  {frame.height / ours:12,.0f} rows/s  (feature query {t_sql:.1f} s,"
            f" pipeline + model on {args.threads} threads {t_score:.1f} s, alerts"
            f" {ours - t_sql - t_score:.1f} s: {merged.new:,} alerts)  peak RSS {_peak_mb():,.0f} MB"
        )

        # Bare: scikit-learn's score_samples on the same, already-built feature matrix.
        x = frame.select(detector.feature_columns)
        matrix = model[:-1].transform(x) if len(model) > 1 else x
        t = time.perf_counter()
        model[-1].score_samples(matrix)
        bare = time.perf_counter() - t
        print(
            f"bare:  {bare:7.1f} s  {matrix.shape[0] / bare:12,.0f} rows/s  ({type(model[-1]).__name__}.score_samples,"
            f" {matrix.shape[0]:,} x {matrix.shape[1]} matrix, one call)  peak RSS {_peak_mb():,.0f} MB"
        )
        print(f"ratio ours / bare = {ours / bare:.2f}x (target <= 1.5x)")
        con.close()
