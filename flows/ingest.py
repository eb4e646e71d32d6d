"""Prefect flow ``ingest``: load disclosure logs into the store. Thin: logic is dwatch.ingest."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task

from dwatch import progress
from dwatch.ingest import IngestResult, ingest_paths, summarise
from dwatch.store import connect


@task(retries=2, retry_delay_seconds=5)
def load_files(
    db: str, paths: list[str], kind: str | None, source: str | None, force: bool
) -> list[IngestResult]:
    """Load the files into the store, one transaction per file."""
    con = connect(db)
    try:
        return ingest_paths(con, paths, kind=kind, source=source, force=force)
    finally:
        con.close()


@flow(name="ingest", log_prints=False)
@progress.in_prefect_logs
def ingest_flow(
    paths: list[str],
    db: str | None = None,
    kind: str | None = None,
    source: str | None = None,
    force: bool = False,
) -> list[IngestResult]:
    """Ingest disclosure logs (CSV, JSON Lines, Parquet) into DuckDB; bad rows to quarantine."""
    from dwatch.store import default_db_path

    results = load_files(
        str(db or default_db_path()), [str(Path(p)) for p in paths], kind, source, force
    )
    get_run_logger().info("ingest summary\n%s", summarise(results))
    return results
