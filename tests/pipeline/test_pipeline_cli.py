"""`dwatch run`, `dwatch serve` and the prefect.yaml deployment."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from pipeline_helpers import ledger_rows, write_events

from dwatch.cli import main
from dwatch.pipeline import load_pipeline_config

ROOT = Path(__file__).resolve().parents[2]


def _settings(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(
        f"reports_dir: {tmp_path / 'reports'}\nsnapshots: {{dir: {tmp_path / 'snapshots'}}}\n"
        f"notify: false\nml: {{train_when_missing: false}}\n{extra}",
        encoding="utf-8",
    )
    return path


def test_dwatch_run_prints_the_run_and_where_the_snapshot_is(tmp_path: Path, db_path: Path) -> None:
    inbox = tmp_path / "inbox"
    write_events(
        inbox / "a.csv", ledger_rows("ca-ftb-fti-log", [("2026-01-02", 9), ("2026-01-03", 9)])
    )
    settings = _settings(tmp_path)
    runner = CliRunner()
    result = runner.invoke(
        main, ["--db", str(db_path), "run", str(inbox), "--config", str(settings), "--json"]
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)  # progress lines go to stderr
    assert out["status"] == "succeeded"
    assert [s["step"] for s in out["steps"]] == [
        "ingest", "plan", "validate", "detect_rules", "detect_ml", "report", "notify", "publish",
    ]  # fmt: skip
    assert out["counts"]["events_loaded"] == 2
    assert Path(out["snapshot"]) == tmp_path / "snapshots" / "current.duckdb"

    text = runner.invoke(main, ["--db", str(db_path), "run", str(inbox), "--config", str(settings)])
    assert text.exit_code == 0, text.output
    assert "1 unchanged (not read)" in text.output
    assert f"duckdb -readonly {tmp_path / 'snapshots' / 'current.duckdb'}" in text.output


def test_dwatch_run_rejects_a_bad_backfill_before_touching_the_store(
    tmp_path: Path, db_path: Path
) -> None:
    result = CliRunner().invoke(
        main,
        [
            "--db",
            str(db_path),
            "run",
            "--backfill",
            "2026-03-01",
            "2026-02-01",
            "--config",
            str(_settings(tmp_path)),
        ],
    )
    assert result.exit_code == 2
    assert "backfill range is empty" in result.output and "fix:" in result.output
    assert not db_path.exists()


def test_dwatch_run_reports_a_failed_run_cleanly(
    tmp_path: Path, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dwatch.pipeline

    def broken(ctx: Any) -> Any:
        raise RuntimeError("rule engine exploded")

    monkeypatch.setitem(dwatch.pipeline.STEPS, "detect_rules", broken)
    result = CliRunner().invoke(
        main, ["--db", str(db_path), "run", "--config", str(_settings(tmp_path))]
    )
    assert result.exit_code == 1
    assert "the pipeline run failed: RuntimeError: rule engine exploded" in result.output
    assert "Traceback" not in result.output


def test_dwatch_serve_serves_the_flow_on_the_configured_cron(
    tmp_path: Path, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.pipeline import pipeline_flow

    served: dict[str, Any] = {}
    monkeypatch.setattr(pipeline_flow, "serve", lambda **kwargs: served.update(kwargs))
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4200/api")
    settings = _settings(
        tmp_path, "schedule: {cron: '30 3 * * 1-5', timezone: America/New_York}\ninputs: [inbox]\n"
    )
    result = CliRunner().invoke(main, ["--db", str(db_path), "serve", "--config", str(settings)])
    assert result.exit_code == 0, result.output
    assert served["name"] == "nightly"
    schedule = served["schedules"][0]
    assert (schedule.cron, schedule.timezone) == ("30 3 * * 1-5", "America/New_York")
    assert served["parameters"]["trigger"] == "schedule"
    assert served["parameters"]["db"] == str(db_path.resolve())
    assert served["parameters"]["config_path"] == str(settings)
    assert served["parameters"]["paths"] == [str(ROOT / "inbox")]

    shown = CliRunner().invoke(
        main,
        [
            "--db",
            str(db_path),
            "serve",
            "--config",
            str(settings),
            "--print-schedule",
            "--cron",
            "0 * * * *",
        ],
    )
    assert shown.exit_code == 0 and "0 * * * * (America/New_York)" in shown.output
    monkeypatch.delenv("PREFECT_API_URL")
    no_server = CliRunner().invoke(main, ["--db", str(db_path), "serve", "--config", str(settings)])
    assert no_server.exit_code == 2 and "needs a Prefect server" in no_server.output
    assert "prefect server start" in no_server.output
    bad = CliRunner().invoke(main, ["serve", "--config", str(settings), "--cron", "every night"])
    assert bad.exit_code == 2 and "bad cron expression" in bad.output


def test_prefect_yaml_deploys_this_flow_on_the_configured_schedule() -> None:
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text(encoding="utf-8"))
    (deployment,) = spec["deployments"]
    module, _, name = deployment["entrypoint"].partition(":")
    assert module == "flows/pipeline.py" and (ROOT / module).is_file()
    import flows.pipeline

    assert getattr(flows.pipeline, name).name == "pipeline"
    config = load_pipeline_config(ROOT / "config" / "pipeline.yaml")
    assert deployment["schedules"][0]["cron"] == config.cron
    assert deployment["schedules"][0]["timezone"] == config.timezone
    assert deployment["work_pool"]["name"] == config.work_pool
    assert deployment["name"] == config.deployment_name
    assert deployment["concurrency_limit"] == 1
