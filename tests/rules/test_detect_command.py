"""`dwatch detect`, `dwatch registry` and the thin `detect` flow's task, without Prefect."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from detectors.engine import RuleCase, load_case
from dwatch.cli import main
from dwatch.store import connect

EVENTS = [
    {"event_id": "A1", "source_system": "ice-log", "event_type": "access",
     "occurred_at": "2026-02-10T14:00:00Z", "recipient_agency": "DHS-ICE", "actor_id": "ice.ero.1"},
    {"event_id": "D1", "legal_authority": "N/A", "purpose": "state_tax_administration"},
]  # fmt: skip


def _store(db: Path) -> None:
    con = connect(db)
    try:
        load_case(con, RuleCase(name="cli", alerts=0, events=EVENTS))
    finally:
        con.close()


def test_detect_command_reports_json_and_writes_alerts(db_path: Path) -> None:
    _store(db_path)
    result = CliRunner().invoke(main, ["--db", str(db_path), "detect", "--no-ml", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)  # progress lines go to stderr
    assert summary["alerts"]["new"] == 2
    fired = {r["rule_id"] for r in summary["rules"] if r["findings"]}
    assert fired == {"use_after_court_order", "disclosure_without_authority"}
    again = CliRunner().invoke(main, ["--db", str(db_path), "detect", "--no-ml", "--json"])
    assert json.loads(again.stdout)["alerts"]["new"] == 0  # same findings, same ids


def test_detect_command_with_a_broken_registry_gives_a_clean_error(
    db_path: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "registry: {version: x}\nauthorities:\n  - {id: 26 USC 6103(d)}\n", encoding="utf-8"
    )
    result = CliRunner().invoke(
        main, ["--db", str(db_path), "detect", "--no-ml", "--registry", str(bad)]
    )
    assert result.exit_code == 2
    assert "bad.yaml" in result.output and "authorities[0]" in result.output
    assert "Traceback" not in result.output


def test_registry_commands() -> None:
    runner = CliRunner()
    checked = runner.invoke(main, ["registry", "check"])
    assert checked.exit_code == 0 and ": ok" in checked.output
    shown = runner.invoke(main, ["registry", "show", "--as-of", "2025-10-01"])
    assert "ddc-25-cv-00457-pi" in shown.output and "not yet issued" in shown.output
    cited = runner.invoke(main, ["registry", "cite", "I.R.C. §6103(i)(2)"])
    assert "26 USC 6103(i)(2)" in cited.output


def test_the_flow_task_runs_without_prefect(db_path: Path) -> None:
    from flows.detect import run_rule_detectors

    _store(db_path)
    result = run_rule_detectors.fn(str(db_path), None, "flow-run-1")
    assert result.merge is not None and result.merge.new == 2
