"""Prefect flow ``validate``: the validation gate on ingested batches. Thin: logic is dwatch.validate."""

from __future__ import annotations

from pathlib import Path

# dwatch first: its __init__ turns Prefect's and GX's telemetry off before they load.
import dwatch  # noqa: F401

# isort: split
from prefect import flow, get_run_logger, task

from dwatch import progress
from dwatch.store import connect
from dwatch.validate import ValidationReport, validate_batches


@task
def validate_store(db: str, run_ids: list[str] | None, docs_dir: str | None) -> ValidationReport:
    """Run the suites on each batch; quarantine failing rows; record every outcome."""
    con = connect(db)
    try:
        return validate_batches(
            con, ingest_run_ids=run_ids, docs_dir=Path(docs_dir) if docs_dir else None
        )
    finally:
        con.close()


@flow(name="validate", log_prints=False)
@progress.in_prefect_logs
def validate_flow(
    run_ids: list[str] | None = None, db: str | None = None, docs_dir: str | None = None
) -> ValidationReport:
    """Validate ingested batches with Great Expectations; gaps become coverage_gaps."""
    from dwatch.store import default_db_path

    report = validate_store(str(db or default_db_path()), run_ids, docs_dir)
    get_run_logger().info("validation summary\n%s", report.summary())
    return report
