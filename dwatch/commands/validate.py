"""``dwatch validate``: run the validation gate on ingested batches, build Data Docs."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from dwatch.store import connect
from dwatch.validate import validate_batches


@click.command("validate")
@click.option(
    "--run-id",
    "run_ids",
    multiple=True,
    metavar="ID",
    help="Validate this ingest run (repeatable; default: every loaded run not yet validated).",
)
@click.option(
    "--docs",
    "docs_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Build Data Docs into DIR (default: docs_dir of the validation settings, reports/validation).",
)
@click.option("--no-docs", is_flag=True, help="Skip building Data Docs.")
@click.option(
    "--prefect",
    is_flag=True,
    help="Run as the Prefect flow `validate` (ephemeral unless PREFECT_API_URL is set).",
)
@click.option(
    "--strict",
    is_flag=True,
    help="Exit with status 1 when any expectation failed (default: only when a batch could not be validated).",
)
@click.pass_context
def command(
    ctx: click.Context,
    run_ids: tuple[str, ...],
    docs_dir: Path | None,
    no_docs: bool,
    prefect: bool,
    strict: bool,
) -> None:
    """Validate ingested batches with Great Expectations.

    Suites come from schemas/canonical.yaml and schemas/sources/*.expectations.yaml.
    Failing rows move to quarantine (stage 'validate'); every outcome is written to
    validation_results; sequence gaps and silent sources become coverage_gaps, and open
    alerts in those windows are flagged coverage-incomplete. Settings (clock skew, time
    floor, silence window): dwatch/validate/validation.yaml or $DWATCH_VALIDATION_CONFIG.

    \b
    Examples:
      dwatch validate                              every batch not validated yet
      dwatch validate --run-id ing_20260101T000000_ab12cd34
      dwatch validate --docs /srv/reports/validation
    """
    db: Path = ctx.obj["db"]
    ids = list(run_ids) or None
    if prefect:
        from flows.validate import validate_flow

        report = validate_flow(
            run_ids=ids, db=str(db), docs_dir=str(docs_dir) if docs_dir else None
        )
    else:
        con = connect(db)
        try:
            report = validate_batches(
                con, ingest_run_ids=ids, docs_dir=docs_dir, build_docs=not no_docs
            )
        finally:
            con.close()
    click.echo(report.summary())
    if any(b.error for b in report.all_batches) or (strict and report.failed):
        sys.exit(1)
