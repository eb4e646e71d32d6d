"""``dwatch serve``: run the pipeline on the schedule from the settings (Prefect ``serve``)."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import click

from dwatch.errors import ConfigError
from dwatch.pipeline_config import PipelineConfig, load_pipeline_config


def next_fires(
    config: PipelineConfig, count: int, *, now: datetime | None = None
) -> list[datetime]:
    """The next ``count`` fire times of the configured cron, in its time zone."""
    from cronsim import CronSim

    start = (now or datetime.now(UTC)).astimezone(ZoneInfo(config.timezone))
    fires = CronSim(config.cron, start)
    return [next(fires) for _ in range(count)]


def prefect_api_url() -> str | None:
    """The Prefect API this process reports to (environment or active profile), if any."""
    from prefect.settings import get_current_settings

    # The environment first: Prefect reads its settings once, when it is imported.
    return os.environ.get("PREFECT_API_URL") or get_current_settings().api.url


def serve_parameters(config: PipelineConfig, db: Path, paths: tuple[str, ...]) -> dict[str, object]:
    return {
        "paths": list(paths) or list(config.inputs) or None,
        "db": str(Path(db).resolve()),
        "trigger": "schedule",
        "config_path": config.source if config.source != "(defaults)" else None,
    }


@click.command("serve")
@click.argument("paths", nargs=-1)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Pipeline settings (default: $DWATCH_PIPELINE_CONFIG or config/pipeline.yaml).",
)
@click.option("--cron", default=None, help="Override the schedule's cron expression.")
@click.option(
    "--print-schedule",
    is_flag=True,
    help="Print the deployment, its parameters and the next fire times, then exit.",
)
@click.pass_context
def command(
    ctx: click.Context,
    paths: tuple[str, ...],
    config_path: Path | None,
    cron: str | None,
    print_schedule: bool,
) -> None:
    """Serve the `pipeline` flow on the cron from the settings until stopped (Ctrl-C).

    Uses Prefect's `serve`: this process polls for scheduled runs and executes them. It needs
    a Prefect server, whose scheduler creates the runs: start one (`prefect server start`)
    and set PREFECT_API_URL; the runs, their steps and artifacts then show in its UI. See
    docs/operations.md. For a work pool and workers use `prefect deploy` with prefect.yaml.

    \b
    Examples:
      dwatch serve                          the schedule in config/pipeline.yaml
      dwatch serve --cron '*/15 * * * *'    every 15 minutes
      dwatch serve --print-schedule         show what would be served, then exit
    """
    from dataclasses import replace

    config = load_pipeline_config(config_path)
    if cron:
        from dwatch.pipeline_config import _check_cron

        _check_cron(cron, config.timezone, where="--cron")
        config = replace(config, cron=cron)
    params = serve_parameters(config, ctx.obj["db"], paths)
    click.echo(f"deployment: pipeline/{config.deployment_name}")
    click.echo(f"schedule:   {config.cron} ({config.timezone}) from {config.source}")
    click.echo(f"parameters: {params}")
    click.echo("next runs:  " + ", ".join(f"{t:%Y-%m-%d %H:%M %Z}" for t in next_fires(config, 3)))
    if print_schedule:
        return
    if not prefect_api_url():
        # Prefect's ephemeral mode runs flows but has no scheduler: serving would wait forever.
        raise ConfigError(
            "dwatch serve needs a Prefect server: no PREFECT_API_URL is set",
            where="environment / Prefect profile",
            fix="run `prefect server start` (see docs/operations.md), then"
            " export PREFECT_API_URL=http://127.0.0.1:4200/api; for a single run without a"
            " server use `dwatch run`",
        )
    from prefect.schedules import Cron

    from flows.pipeline import pipeline_flow

    pipeline_flow.serve(
        name=config.deployment_name,
        schedules=[Cron(config.cron, timezone=config.timezone)],
        parameters=params,
        description="Disclosure Watch: ingest new logs, validate, detect, report, notify, publish",
        tags=["dwatch"],
    )
