"""Fitted models on disk (skops) and in the ``models`` table, and the ML config file."""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import sklearn
import skops.io as sio
import yaml
from sklearn.pipeline import Pipeline

from detectors.ml.detectors import DETECTORS, DetectorSettings
from dwatch import yamlfile
from dwatch.errors import ConfigError, StoreError

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent / "config.yaml"
# Types a saved model may contain; anything else in a file is refused at load time.
_TRUSTED_PREFIXES = ("detectors.ml.", "sklearn.", "numpy.", "builtins.", "polars.")
_SETTING_KEYS = {
    "enabled",
    "training_days",
    "training_rows",
    "event_types",
    "threshold_percentile",
    "min_score",
    "false_alarms_per_10k",
    "severity",
    "params",
}
_SEVERITIES = {"info", "low", "medium", "high", "critical"}


@dataclass(frozen=True)
class MLConfig:
    time_zones: dict[str, str]
    detectors: dict[str, DetectorSettings]
    path: Path


def load_config(path: Path | str | None = None) -> MLConfig:
    """Read and check the ML config ($DWATCH_ML_CONFIG, else the packaged config.yaml)."""
    cfg_path = Path(path or os.environ.get("DWATCH_ML_CONFIG") or DEFAULT_CONFIG_PATH)
    try:
        raw = yamlfile.safe_load(cfg_path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(
            f"cannot read the ML config: {exc}",
            where=str(cfg_path),
            fix="pass an existing file with --ml-config",
        ) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"the ML config is not valid YAML: {exc}",
            where=str(cfg_path),
            fix="fix the YAML syntax at the line shown",
        ) from exc
    if not isinstance(raw, dict):
        raise ConfigError(
            "the ML config must be a mapping",
            where=str(cfg_path),
            fix="see detectors/ml/config.yaml for the layout",
        )
    zones = raw.get("time_zones") or {}
    if not isinstance(zones, dict):
        raise ConfigError(
            "time_zones must map agency codes to IANA zones",
            where=f"{cfg_path}: time_zones",
            fix="e.g. time_zones: {CA-FTB: America/Los_Angeles}",
        )
    settings: dict[str, DetectorSettings] = {}
    blocks = raw.get("detectors") or {}
    for detector_id, block in blocks.items():
        where = f"{cfg_path}: detectors.{detector_id}"
        if detector_id not in DETECTORS:
            raise ConfigError(
                f"unknown ML detector {detector_id!r}",
                where=where,
                fix=f"use one of {sorted(DETECTORS)}",
            )
        block = block or {}
        unknown = set(block) - _SETTING_KEYS
        if unknown:
            raise ConfigError(
                f"unknown setting(s) {sorted(unknown)}",
                where=where,
                fix=f"allowed: {sorted(_SETTING_KEYS)}",
            )
        pct = block.get("threshold_percentile", 99.9)
        if pct is not None and not (0 < float(pct) < 100):
            raise ConfigError(
                f"threshold_percentile must be between 0 and 100, got {pct}",
                where=f"{where}.threshold_percentile",
                fix="e.g. 99.9",
            )
        rate = block.get("false_alarms_per_10k")
        if rate is not None and not (isinstance(rate, int | float) and 0 < float(rate) < 10_000):
            raise ConfigError(
                f"false_alarms_per_10k must be a number above 0 and below 10,000, got {rate!r}",
                where=f"{where}.false_alarms_per_10k",
                fix="e.g. 1 (at most 1 alert per 10,000 lawful events on the training window)",
            )
        severity = block.get("severity", "medium")
        if severity not in _SEVERITIES:
            raise ConfigError(
                f"unknown severity {severity!r}",
                where=f"{where}.severity",
                fix=f"use one of {sorted(_SEVERITIES)}",
            )
        days = block.get("training_days")
        if days is not None and not (
            isinstance(days, int) and not isinstance(days, bool) and days > 0
        ):
            raise ConfigError(
                f"training_days must be a whole number of days above 0, got {days!r}",
                where=f"{where}.training_days",
                fix="e.g. 365 (a year of history), or leave it out to train on all history",
            )
        rows = block.get("training_rows")
        if rows is not None and not (
            isinstance(rows, int) and not isinstance(rows, bool) and rows >= 1000
        ):
            raise ConfigError(
                f"training_rows must be a whole number of rows, at least 1,000, got {rows!r}",
                where=f"{where}.training_rows",
                fix="e.g. 1000000, or leave it out to bound training by DWATCH_MEMORY alone",
            )
        types = block.get("event_types") or ["disclosure"]
        settings[detector_id] = DetectorSettings(
            enabled=bool(block.get("enabled", True)),
            event_types=tuple(str(t).lower() for t in types),
            threshold_percentile=None if pct is None else float(pct),
            min_score=None if block.get("min_score") is None else float(block["min_score"]),
            false_alarms_per_10k=None if rate is None else float(rate),
            severity=severity,
            params=dict(block.get("params") or {}),
            training_days=days,
            training_rows=rows,
        )
    for detector_id in DETECTORS:
        settings.setdefault(detector_id, DetectorSettings())
    return MLConfig(
        time_zones={str(k): str(v) for k, v in zones.items()}, detectors=settings, path=cfg_path
    )


def default_models_dir(db_path: Path | str | None = None) -> Path:
    """$DWATCH_MODELS_DIR, else a ``models`` folder next to the store (data/models)."""
    env = os.environ.get("DWATCH_MODELS_DIR")
    if env:
        return Path(env)
    if db_path is None or str(db_path) == ":memory:":
        return Path("data") / "models"
    return Path(db_path).parent / "models"


def frame_sha256(frame: pl.DataFrame) -> str:
    """Hash of a feature frame's content (Arrow IPC, uncompressed), for the model record."""
    buffer = io.BytesIO()
    frame.write_ipc(buffer, compression="uncompressed")
    return hashlib.sha256(buffer.getvalue()).hexdigest()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _json_params(model: Pipeline) -> dict[str, Any]:
    return {
        k: v
        for k, v in model.get_params(deep=True).items()
        if isinstance(v, str | int | float | bool) or v is None
    }


@dataclass(frozen=True)
class ModelRecord:
    model_id: str
    detector_id: str
    version: str
    train_from: datetime | None
    train_to: datetime | None
    training_rows: int
    features: list[str]
    parameters: dict[str, Any]
    training_data_sha256: str
    threshold: float
    threshold_percentile: float | None
    metadata: dict[str, Any]
    path: str
    file_sha256: str


def save_model(
    con: duckdb.DuckDBPyConnection,
    *,
    detector_id: str,
    model: Pipeline,
    models_dir: Path,
    train_from: datetime | None,
    train_to: datetime | None,
    training_rows: int,
    features: list[str],
    training_data_sha256: str,
    threshold: float,
    threshold_percentile: float | None,
    metadata: dict[str, Any],
) -> ModelRecord:
    """Write the model file (skops) and its row in ``models``."""
    version = f"{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{training_data_sha256[:8]}"
    path = Path(models_dir) / detector_id / f"{version}.skops"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        sio.dump(model, path)
    except OSError as exc:
        raise StoreError(
            f"cannot write the model file: {exc}",
            where=str(path),
            fix="check the models folder (--models-dir or $DWATCH_MODELS_DIR) is writable",
        ) from exc
    # Categorical codes are DuckDB hash() values: a model is only valid with the DuckDB
    # version that computed them (checked in load_model).
    meta = {
        **metadata,
        "sklearn_version": sklearn.__version__,
        "duckdb_version": duckdb.__version__,
    }
    record = ModelRecord(
        model_id=f"{detector_id}@{version}",
        detector_id=detector_id,
        version=version,
        train_from=train_from,
        train_to=train_to,
        training_rows=training_rows,
        features=features,
        parameters=_json_params(model),
        training_data_sha256=training_data_sha256,
        threshold=threshold,
        threshold_percentile=threshold_percentile,
        metadata=meta,
        path=str(path.resolve()),
        file_sha256=_file_sha256(path),
    )
    con.execute(
        "INSERT INTO models (model_id, detector_id, version, train_from, train_to, training_rows,"
        " features, parameters, training_data_sha256, threshold, threshold_percentile, metadata,"
        " path, file_sha256) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            record.model_id,
            detector_id,
            version,
            train_from,
            train_to,
            training_rows,
            features,
            json.dumps(record.parameters),
            training_data_sha256,
            threshold,
            threshold_percentile,
            json.dumps(meta, default=str),
            record.path,
            record.file_sha256,
        ],
    )
    return record


def latest_models(con: duckdb.DuckDBPyConnection) -> dict[str, ModelRecord]:
    """The newest model of each detector."""
    rows = con.execute(
        "SELECT model_id, detector_id, version, train_from, train_to, training_rows, features,"
        " parameters, training_data_sha256, threshold, threshold_percentile, metadata, path, file_sha256"
        " FROM models QUALIFY row_number() OVER (PARTITION BY detector_id ORDER BY created_at DESC, version DESC) = 1"
    ).fetchall()
    out = {}
    for r in rows:
        out[r[1]] = ModelRecord(
            model_id=r[0],
            detector_id=r[1],
            version=r[2],
            train_from=r[3],
            train_to=r[4],
            training_rows=int(r[5] or 0),
            features=list(r[6] or []),
            parameters=json.loads(r[7]) if r[7] else {},
            training_data_sha256=r[8],
            threshold=float(r[9]),
            threshold_percentile=r[10],
            metadata=json.loads(r[11]) if r[11] else {},
            path=r[12],
            file_sha256=r[13],
        )
    return out


def load_model(record: ModelRecord, models_dir: Path | None = None) -> Pipeline:
    """Load a saved model after checking its hash and that it holds only known types."""
    path = Path(record.path)
    if models_dir is not None:
        path = Path(models_dir) / record.detector_id / path.name
    if not path.is_file():
        raise StoreError(
            f"model file of {record.model_id} is missing",
            where=str(path),
            fix="run `dwatch train` again, or point --models-dir at the folder holding it",
        )
    if _file_sha256(path) != record.file_sha256:
        raise StoreError(
            f"model file of {record.model_id} does not match the hash recorded at training",
            where=str(path),
            fix="the file was changed or replaced: retrain with `dwatch train`",
        )
    trained_with = record.metadata.get("duckdb_version")
    if trained_with and trained_with != duckdb.__version__:
        raise StoreError(
            f"model {record.model_id} was trained with DuckDB {trained_with}, this is {duckdb.__version__}",
            where=str(path),
            fix="retrain with `dwatch train` (its categorical codes come from DuckDB's hash())",
        )
    untrusted = sio.get_untrusted_types(file=path)
    foreign = [t for t in untrusted if not t.startswith(_TRUSTED_PREFIXES)]
    if foreign:
        raise StoreError(
            f"model file holds types this project does not use: {foreign}",
            where=str(path),
            fix="load only models written by `dwatch train`",
        )
    return sio.load(path, trusted=untrusted)
