"""Pipeline settings (config/pipeline.yaml) and ``--backfill`` bounds, checked on load.

Split from ``dwatch.pipeline`` so a run's steps and its settings each have a room;
``dwatch.pipeline`` re-exports every name here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import yaml

from dwatch import yamlfile
from dwatch.errors import ConfigError, InputError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = PROJECT_ROOT / "config" / "pipeline.yaml"
ENV_CONFIG = "DWATCH_PIPELINE_CONFIG"


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class PipelineConfig:
    """config/pipeline.yaml: schedule, inputs, output folders, snapshot retention."""

    cron: str = "0 2 * * *"
    timezone: str = "UTC"
    inputs: tuple[str, ...] = ()
    reports_dir: Path = PROJECT_ROOT / "reports"
    snapshot_dir: Path | None = None  # None = snapshots/ next to the store
    keep_snapshots: int = 3
    train_when_missing: bool = True
    notify: bool = True
    deployment_name: str = "nightly"
    work_pool: str = "dwatch"
    source: str = "(defaults)"


def _resolve(value: object) -> Path:
    path = Path(os.path.expandvars(str(value))).expanduser()
    return path if path.is_absolute() else PROJECT_ROOT / path


def load_pipeline_config(path: Path | str | None = None) -> PipelineConfig:
    """Settings from ``path``, else $DWATCH_PIPELINE_CONFIG, else config/pipeline.yaml."""
    chosen = Path(path or os.environ.get(ENV_CONFIG) or DEFAULT_CONFIG)
    if not chosen.exists():
        if path or os.environ.get(ENV_CONFIG):
            raise ConfigError(
                "the pipeline settings file does not exist",
                where=str(chosen),
                fix=f"create it from {DEFAULT_CONFIG} or unset {ENV_CONFIG}",
            )
        return PipelineConfig()
    try:
        raw = yamlfile.safe_load(chosen.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read the pipeline settings: {exc}", where=str(chosen)) from exc
    if not isinstance(raw, dict):
        raise ConfigError("expected a mapping of settings", where=str(chosen))
    known = {"schedule", "inputs", "reports_dir", "snapshots", "ml", "notify", "deployment"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(
            f"unknown setting(s) {unknown}",
            where=str(chosen),
            fix=f"use only {sorted(known)} (see {DEFAULT_CONFIG})",
        )
    schedule = raw.get("schedule") or {}
    snapshots = raw.get("snapshots") or {}
    ml = raw.get("ml") or {}
    deployment = raw.get("deployment") or {}
    cron = str(schedule.get("cron", PipelineConfig.cron))
    timezone = str(schedule.get("timezone", "UTC"))
    _check_cron(cron, timezone, where=f"{chosen}: schedule")
    inputs = raw.get("inputs") or []
    if isinstance(inputs, str):
        inputs = [inputs]
    keep = snapshots.get("keep", 3)
    if not isinstance(keep, int) or keep < 1:
        raise ConfigError(
            f"snapshots.keep must be a whole number of at least 1, got {keep!r}",
            where=f"{chosen}: snapshots.keep",
        )
    return PipelineConfig(
        cron=cron,
        timezone=timezone,
        inputs=tuple(str(_resolve(p)) for p in inputs),
        reports_dir=_resolve(raw.get("reports_dir", "reports")),
        snapshot_dir=_resolve(snapshots["dir"]) if snapshots.get("dir") else None,
        keep_snapshots=keep,
        train_when_missing=bool(ml.get("train_when_missing", True)),
        notify=bool(raw.get("notify", True)),
        deployment_name=str(deployment.get("name", "nightly")),
        work_pool=str(deployment.get("work_pool", "dwatch")),
        source=str(chosen),
    )


def _check_cron(cron: str, timezone: str, *, where: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from cronsim import CronSim, CronSimError

    try:
        CronSim(cron, datetime.now(UTC))
    except CronSimError as exc:
        raise ConfigError(
            f"bad cron expression {cron!r}: {exc}",
            where=f"{where}.cron",
            fix="five fields: minute hour day-of-month month day-of-week, e.g. '0 2 * * *'",
        ) from exc
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(
            f"unknown time zone {timezone!r}",
            where=f"{where}.timezone",
            fix="an IANA name such as UTC or America/New_York",
        ) from exc


def parse_instant(text: str | date | datetime, *, where: str) -> datetime:
    """A backfill bound: a date (midnight UTC) or an ISO timestamp with a zone."""
    if isinstance(text, datetime):
        value = text
    elif isinstance(text, date):
        value = datetime(text.year, text.month, text.day, tzinfo=UTC)
    else:
        try:
            value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        except ValueError as exc:
            raise InputError(
                f"not a date or timestamp: {text!r}",
                where=where,
                fix="write YYYY-MM-DD (midnight UTC) or an ISO timestamp such as 2025-08-07T00:00Z",
            ) from exc
        if len(text.strip()) == 10:
            value = value.replace(tzinfo=UTC)
    if value.tzinfo is None:
        raise InputError(
            f"timestamp without a time zone: {text!r}",
            where=where,
            fix="add Z or an offset such as +00:00, or give a plain date",
        )
    return value.astimezone(UTC)


def parse_backfill(
    start: str | date | datetime, end: str | date | datetime
) -> tuple[datetime, datetime]:
    """[FROM, TO) as UTC instants; a plain TO date includes that whole day."""
    lo = parse_instant(start, where="--backfill FROM")
    hi = parse_instant(end, where="--backfill TO")
    if (isinstance(end, date) and not isinstance(end, datetime)) or (
        isinstance(end, str) and len(end.strip()) == 10
    ):
        hi += timedelta(days=1)
    if hi <= lo:
        raise InputError(
            f"backfill range is empty: {lo.isoformat()} .. {hi.isoformat()}",
            where="--backfill FROM TO",
            fix="give FROM before TO",
        )
    return lo, hi
