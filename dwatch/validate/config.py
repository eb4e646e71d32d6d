"""Settings of the validation gate, read from ``validation.yaml`` (or an operator's copy).

Thresholds such as the allowed clock skew, the earliest plausible event time and the
silence window are data: the defaults sit in ``dwatch/validate/validation.yaml`` and
``DWATCH_VALIDATION_CONFIG`` (or the ``path`` argument) names a replacement file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from dwatch import yamlfile
from dwatch.errors import ConfigError
from dwatch.timevalues import parse_duration, parse_setting_instant

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent / "validation.yaml"
PROJECT_ROOT = Path(__file__).resolve().parents[2]
ENV_CONFIG = "DWATCH_VALIDATION_CONFIG"
ROW_ACTIONS = ("quarantine", "record")


@dataclass(frozen=True)
class ValidationConfig:
    clock_skew: timedelta
    occurred_at_floor: datetime
    silence_window: timedelta
    sequence_time_tolerance: timedelta
    silence_rhythm_factor: float = 8.0
    row_actions: dict[str, str] = field(default_factory=dict)
    docs_dir: Path = PROJECT_ROOT / "reports" / "validation"
    max_gap_rows: int = 1000
    # The instant "now" for the future-timestamp check; None = the validating machine's
    # clock at the start of the run (tests pin it).
    now: datetime | None = None
    # Folder of per-source suites; None = the source mappings folder.
    sources_dir: Path | None = None
    source: str = str(DEFAULT_CONFIG_PATH)

    def action_for(self, check_id: str) -> str:
        return self.row_actions.get(check_id, self.row_actions.get("default", "quarantine"))

    def with_overrides(self, **changes: Any) -> ValidationConfig:
        return replace(self, **changes)


def load_config(path: Path | str | None = None) -> ValidationConfig:
    """The validation settings: ``path``, else $DWATCH_VALIDATION_CONFIG, else the defaults."""
    chosen = Path(path or os.environ.get(ENV_CONFIG) or DEFAULT_CONFIG_PATH)
    try:
        raw = yamlfile.safe_load(chosen.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(
            f"cannot read the validation settings: {exc}",
            where=str(chosen),
            fix=f"fix the file or unset {ENV_CONFIG} to use {DEFAULT_CONFIG_PATH}",
        ) from exc
    if not isinstance(raw, dict):
        raise ConfigError("expected a mapping of settings", where=str(chosen))
    where = str(chosen)
    required = ("clock_skew", "occurred_at_floor", "silence_window", "sequence_time_tolerance")
    missing = [k for k in required if k not in raw]
    if missing:
        raise ConfigError(
            f"missing settings: {', '.join(missing)}",
            where=where,
            fix=f"copy them from {DEFAULT_CONFIG_PATH}",
        )
    actions = {str(k): str(v) for k, v in (raw.get("row_actions") or {}).items()}
    bad = {k: v for k, v in actions.items() if v not in ROW_ACTIONS}
    if bad:
        raise ConfigError(
            f"unknown row action(s) {bad}",
            where=f"{where}: row_actions",
            fix=f"use one of {', '.join(ROW_ACTIONS)}",
        )
    docs = Path(str(raw.get("docs_dir", "reports/validation")))
    return ValidationConfig(
        clock_skew=parse_duration(raw["clock_skew"], where=f"{where}: clock_skew"),
        occurred_at_floor=parse_setting_instant(
            raw["occurred_at_floor"], where=f"{where}: occurred_at_floor"
        ),
        silence_window=parse_duration(raw["silence_window"], where=f"{where}: silence_window"),
        sequence_time_tolerance=parse_duration(
            raw["sequence_time_tolerance"], where=f"{where}: sequence_time_tolerance"
        ),
        silence_rhythm_factor=float(raw.get("silence_rhythm_factor", 8.0)),
        row_actions=actions,
        docs_dir=docs if docs.is_absolute() else PROJECT_ROOT / docs,
        max_gap_rows=int(raw.get("max_gap_rows", 1000)),
        source=where,
    )
