"""Prefect flow ``train``: fit the ML detectors on a window and save them. Thin: the logic
is detectors.ml.run.train_models."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from prefect import flow, get_run_logger, task

from detectors.ml.registry import default_models_dir, load_config
from detectors.ml.run import TrainResult, train_models
from dwatch import progress
from dwatch.store import connect, default_db_path


@task
def fit_and_save(
    db: str,
    window_from: datetime | None,
    window_to: datetime | None,
    models_dir: str,
    config_path: str | None,
    detectors: list[str] | None,
) -> list[TrainResult]:
    """Fit every enabled ML detector on the window; write model files and `models` rows."""
    con = connect(db)
    try:
        return train_models(
            con,
            window_from=window_from,
            window_to=window_to,
            models_dir=Path(models_dir),
            config=load_config(config_path),
            detectors=detectors,
        )
    finally:
        con.close()


@flow(name="train", log_prints=False)
@progress.in_prefect_logs
def train_flow(
    window_from: datetime | None = None,
    window_to: datetime | None = None,
    db: str | None = None,
    models_dir: str | None = None,
    config_path: str | None = None,
    detectors: list[str] | None = None,
) -> list[TrainResult]:
    """Fit the ML detectors on [window_from, window_to) and save each model."""
    db = str(db or default_db_path())
    results = fit_and_save(
        db,
        window_from,
        window_to,
        str(models_dir or default_models_dir(db)),
        config_path,
        detectors,
    )
    logger = get_run_logger()
    for r in results:
        logger.info("%s: %s (%s)", r.detector_id, r.status, r.message)
    return results
