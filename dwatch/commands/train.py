"""``dwatch train``: fit the ML detectors on a time window and save the models."""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime, time
from pathlib import Path

import click

from detectors.ml.registry import default_models_dir, load_config
from detectors.ml.run import train_models
from dwatch.errors import ConfigError
from dwatch.store import connect


def parse_day(value: str | None, option: str) -> datetime | None:
    """A date (YYYY-MM-DD) or an ISO timestamp; dates are midnight UTC."""
    if value is None:
        return None
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), time(), tzinfo=UTC)
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ConfigError(
            f"not a date: {value!r}", where=option, fix="use YYYY-MM-DD or an ISO timestamp"
        ) from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@click.command("train")
@click.option(
    "--from", "window_from", metavar="DATE", help="Start of the training window (inclusive)."
)
@click.option("--to", "window_to", metavar="DATE", help="End of the training window (exclusive).")
@click.option(
    "--models-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where model files go (default: $DWATCH_MODELS_DIR, else 'models' next to the store).",
)
@click.option(
    "--ml-config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="ML settings (default: $DWATCH_ML_CONFIG, else detectors/ml/config.yaml).",
)
@click.option(
    "--detector",
    "detectors",
    multiple=True,
    metavar="ID",
    help="Train only this detector (repeatable).",
)
@click.option("--prefect", is_flag=True, help="Run as the Prefect flow `train`.")
@click.pass_context
def command(
    ctx: click.Context,
    window_from: str | None,
    window_to: str | None,
    models_dir: Path | None,
    config_path: Path | None,
    detectors: tuple[str, ...],
    prefect: bool,
) -> None:
    """Fit the ML detectors on a window of the store and save each model.

    Each model is saved (skops) with its version, training window, feature list,
    parameters, a hash of its training data and its alert threshold (a percentile of its
    own training scores, per detector in the ML config), and recorded in the `models`
    table. `dwatch detect` then scores new data with the latest model, without retraining.

    \b
    Examples:
      dwatch train --from 2025-01-01 --to 2025-07-01
      dwatch train --from 2025-01-01 --to 2025-07-01 --detector ml.actor_peers
      dwatch train --models-dir /srv/dwatch/models --ml-config site-ml.yaml
    """
    db: Path = ctx.obj["db"]
    start, end = parse_day(window_from, "--from"), parse_day(window_to, "--to")
    if start and end and start >= end:
        raise ConfigError(
            f"--from {window_from} is not before --to {window_to}",
            where="--from/--to",
            fix="give a window whose start is before its end",
        )
    folder = models_dir or default_models_dir(db)
    if prefect:
        from flows.train import train_flow

        results = train_flow(
            window_from=start,
            window_to=end,
            db=str(db),
            models_dir=str(folder),
            config_path=str(config_path) if config_path else None,
            detectors=list(detectors) or None,
        )
    else:
        config = load_config(config_path)
        con = connect(db)
        try:
            results = train_models(
                con,
                window_from=start,
                window_to=end,
                models_dir=folder,
                config=config,
                detectors=list(detectors) or None,
            )
        finally:
            con.close()
    for r in results:
        version = f" {r.record.version}" if r.record else ""
        click.echo(f"{r.detector_id:28} {r.status:8}{version}  {r.message}")
    if not any(r.status == "trained" for r in results):
        click.echo("error: no model was trained", err=True)
        sys.exit(1)
