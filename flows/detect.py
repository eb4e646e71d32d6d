"""Prefect flow ``detect``: judge the store by the policy registry, then score the models.

Thin: the rules step is :func:`detectors.engine.detect_rules`, the ML step
:func:`detectors.ml.run.score_models`; both are plain functions tests call directly.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task

from detectors.engine import DetectResult, detect_rules, new_run_id, summarise
from dwatch import progress
from dwatch.store import connect


@task
def run_rule_detectors(db: str, registry_path: str | None, run_id: str) -> DetectResult:
    """Evaluate every rule against the registry and merge the alerts."""
    con = connect(db)
    try:
        return detect_rules(
            con, registry_path=Path(registry_path) if registry_path else None, run_id=run_id
        )
    finally:
        con.close()


@task
def run_model_detectors(db: str, run_id: str) -> str:
    """Score the latest trained models (a detector never trained is reported, not an error)."""
    from detectors.ml.run import score_models

    con = connect(db)
    try:
        summary = score_models(con, run_id=run_id)
    finally:
        con.close()
    return "; ".join(d.message for d in summary.detectors)


@flow(name="detect", log_prints=False)
@progress.in_prefect_logs
def detect_flow(
    db: str | None = None, registry_path: str | None = None, ml: bool = True
) -> DetectResult:
    """Rules (as data, judged as of each event's time) then ML detectors, into ``alerts``."""
    from dwatch.store import default_db_path

    target = str(db or default_db_path())
    run_id = new_run_id()
    result = run_rule_detectors(target, registry_path, run_id)
    logger = get_run_logger()
    logger.info("%s", summarise(result))
    if ml:
        logger.info("models: %s", run_model_detectors(target, run_id))
    return result
