"""`dwatch train` from the command line."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from click.testing import CliRunner
from ml_synthetic import Injected, load_events

from detectors.ml.registry import load_config
from dwatch.cli import main
from dwatch.store import connect


def test_dwatch_train_fits_and_records_every_detector(
    tmp_path: Path, synthetic: tuple[pl.DataFrame, Injected]
) -> None:
    db = tmp_path / "cli.duckdb"
    con = connect(db)
    load_events(con, synthetic[0])
    con.close()
    models = tmp_path / "models"
    result = CliRunner().invoke(
        main,
        [
            "--db",
            str(db),
            "train",
            "--from",
            "2026-01-01",
            "--to",
            "2026-04-01",
            "--models-dir",
            str(models),
        ],
    )
    assert result.exit_code == 0, result.output
    enabled = [d for d, settings in load_config().detectors.items() if settings.enabled]
    for detector_id in enabled:
        assert f"{detector_id}" in result.output
    assert result.output.count(" trained ") == len(enabled)
    con = connect(db)
    assert con.execute("SELECT count(DISTINCT detector_id) FROM models").fetchone() == (
        len(enabled),
    )
    con.close()
    assert len(list(models.rglob("*.skops"))) == len(enabled)


def test_dwatch_train_rejects_a_bad_date_cleanly(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["--db", str(tmp_path / "x.duckdb"), "train", "--from", "March 3rd"]
    )
    assert result.exit_code == 2
    assert "--from" in result.output and "YYYY-MM-DD" in result.output


def test_dwatch_train_on_an_empty_store_says_why_and_fails(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["--db", str(tmp_path / "x.duckdb"), "train", "--models-dir", str(tmp_path / "m")]
    )
    assert result.exit_code == 1
    assert "skipped" in result.output and "no model was trained" in result.output


def test_train_flow_task_runs_without_prefect(
    tmp_path: Path, synthetic: tuple[pl.DataFrame, Injected]
) -> None:
    from datetime import UTC, datetime

    from flows.train import fit_and_save

    db = tmp_path / "flow.duckdb"
    con = connect(db)
    load_events(con, synthetic[0])
    con.close()
    results = fit_and_save.fn(
        str(db),
        datetime(2026, 1, 1, tzinfo=UTC),
        datetime(2026, 4, 1, tzinfo=UTC),
        str(tmp_path / "models"),
        None,
        ["ml.actor_peers"],
    )
    assert [(r.detector_id, r.status) for r in results] == [("ml.actor_peers", "trained")]
