"""``dwatch run``: the whole pipeline once, on new logs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from dwatch.pipeline import run_pipeline
from dwatch.pipeline_config import load_pipeline_config, parse_backfill


@click.command("run")
@click.argument("paths", nargs=-1)
@click.option(
    "--backfill",
    nargs=2,
    metavar="FROM TO",
    default=None,
    help="Also re-judge events in [FROM, TO]: dates (TO inclusive) or ISO timestamps with a zone.",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Pipeline settings (default: $DWATCH_PIPELINE_CONFIG or config/pipeline.yaml).",
)
@click.option(
    "--reports",
    "reports_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder for the report and Data Docs (default: reports_dir from the settings).",
)
@click.option(
    "--notify/--no-notify", default=None, help="E-mail new cases (default: from the settings)."
)
@click.option(
    "--prefect",
    is_flag=True,
    help="Run as the Prefect flow `pipeline` (ephemeral unless PREFECT_API_URL is set).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the run summary as JSON.")
@click.pass_context
def command(
    ctx: click.Context,
    paths: tuple[str, ...],
    backfill: tuple[str, str] | None,
    config_path: Path | None,
    reports_dir: Path | None,
    notify: bool | None,
    prefect: bool,
    as_json: bool,
) -> None:
    """Ingest new logs, validate, detect (rules and ML), report, notify, publish a snapshot.

    Only files that are new or changed since they were last read are opened. Work an
    earlier run left unfinished (a crash, a skipped schedule) is picked up. Late events
    re-open the days they fall in; --backfill re-judges a range. Every run is recorded in
    the runs table. Analysts query the published snapshot, never the working store:
    duckdb -readonly data/snapshots/current.duckdb

    Exit status: 0 succeeded (or partial: a step not available, validation incomplete),
    1 the run failed (nothing published; the next run resumes its work).

    \b
    Examples:
      dwatch run                                   read the inputs listed in config/pipeline.yaml
      dwatch run inbox/ exports/2026-03/           read these folders
      dwatch run --backfill 2025-08-01 2025-08-31  re-judge August 2025 too
      dwatch run --prefect                         as the Prefect flow (see it in the UI)
    """
    db: Path = ctx.obj["db"]
    window = parse_backfill(*backfill) if backfill else None
    config = load_pipeline_config(config_path)
    if not paths and not config.inputs:
        click.echo(
            "note: no PATHS and no inputs in the settings; processing pending work only", err=True
        )
    if prefect:
        from flows.pipeline import pipeline_flow

        try:
            result = pipeline_flow(
                paths=list(paths) or None,
                db=str(db),
                backfill_from=backfill[0] if backfill else None,
                backfill_to=backfill[1] if backfill else None,
                trigger="cli",
                notify_email=notify,
                reports_dir=str(reports_dir) if reports_dir else None,
                config_path=str(config_path) if config_path else None,
            )
        except Exception as exc:  # the flow recorded the failure in runs; say it plainly
            click.echo(f"error: the pipeline run failed: {exc}", err=True)
            sys.exit(1)
        click.echo(json.dumps(result, indent=2, default=str))
        sys.exit(0 if result["status"] in ("succeeded", "partial") else 1)
    try:
        summary = run_pipeline(
            db,
            list(paths) or None,
            backfill=window,
            trigger="cli",
            config=config,
            reports_dir=reports_dir,
            notify=notify,
        )
    except Exception as exc:
        from dwatch.errors import DWatchError
        from dwatch.failed_starts import RunNotStarted

        what = exc.render() if isinstance(exc, DWatchError) else f"{type(exc).__name__}: {exc}"
        recorded = (
            exc.where_recorded()
            if isinstance(exc, RunNotStarted)
            else "the run is recorded in the runs table"
        )
        click.echo(
            f"error: the pipeline run failed: {what}\n"
            f"  {recorded}; nothing was published and the next run resumes its pending work",
            err=True,
        )
        sys.exit(1)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "run_id": summary.run_id,
                    "status": summary.status,
                    "steps": [s.as_json() for s in summary.steps],
                    "counts": summary.counts,
                    "notes": summary.notes,
                    "report": summary.report_path,
                    "snapshot": summary.current_snapshot,
                },
                indent=2,
                default=str,
            )
        )
    else:
        click.echo(summary.describe())
        if summary.report_path:
            click.echo(f"report:   {summary.report_path}")
        if summary.current_snapshot:
            click.echo(f"snapshot: duckdb -readonly {summary.current_snapshot}")
    sys.exit(0 if summary.ok else 1)
