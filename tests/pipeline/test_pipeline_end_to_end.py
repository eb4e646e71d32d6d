"""End to end on generated logs: the Prefect flow under prefect_test_harness (a real, temporary
Prefect server), the plain function with no server, a crash mid-run then a re-run, repeated
runs, and every SQL example of docs/analyst-guide.md run against the published snapshot."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest
from pipeline_helpers import fingerprint, ledger_rows, make_config, write_events

import detectors.ml.run
from dwatch.pipeline import RunSummary, run_pipeline
from dwatch.snapshot import current_snapshot

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "analyst-guide.md"
KEY = "pipeline-e2e-key-not-secret-0123456789"


@dataclass
class Outcome:
    root: Path
    db: Path
    result: dict[str, Any]
    state: dict[str, Any]
    artifact_markdown: str | None = None
    summary: RunSummary | None = None
    failing: dict[str, Any] | None = None


@pytest.fixture(scope="module")
def key_env() -> Iterator[None]:
    # Module fixtures start before the per-test autouse fixture sets a key.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DWATCH_PSEUDONYM_KEY", KEY)
        yield


@pytest.fixture(scope="module")
def flow_outcome(
    key_env: None, generated_logs: Path, tmp_path_factory: pytest.TempPathFactory
) -> Outcome:
    """The Prefect flow, against the temporary server prefect_test_harness starts."""
    from prefect.artifacts import Artifact
    from prefect.testing.utilities import prefect_test_harness

    from flows.pipeline import pipeline_flow

    root = tmp_path_factory.mktemp("flow")
    settings = root / "pipeline.yaml"
    settings.write_text(
        f"reports_dir: {root / 'reports'}\nsnapshots: {{dir: {root / 'snapshots'}, keep: 2}}\nnotify: false\n",
        encoding="utf-8",
    )
    db = root / "store.duckdb"
    with prefect_test_harness(server_startup_timeout=180):
        result = pipeline_flow(paths=[str(generated_logs)], db=str(db), config_path=str(settings))
        artifact = Artifact.get("dwatch-pipeline-run")
        failing = _failing_flow_run(root, settings)
    return Outcome(
        root,
        db,
        result,
        fingerprint(db),
        artifact.data if artifact is not None else None,
        failing=failing,
    )


def _failing_flow_run(root: Path, settings: Path) -> dict[str, Any]:
    """A second flow run whose ingest hits a transient I/O error once (retried) and whose
    report step then fails for good."""
    import dwatch.pipeline
    from flows.pipeline import pipeline_flow

    inbox = root / "small-inbox"
    write_events(inbox / "a.csv", ledger_rows("ca-ftb-fti-log", [("2026-01-02", 9)]))
    real_ingest = dwatch.pipeline.STEPS["ingest"]
    calls: list[int] = []

    def flaky_ingest(ctx: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise OSError(5, "Input/output error (transient)")
        return real_ingest(ctx)

    def broken_report(ctx: Any) -> Any:
        raise RuntimeError("report template missing")

    db = root / "failing.duckdb"
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(dwatch.pipeline.STEPS, "ingest", flaky_ingest)
        mp.setitem(dwatch.pipeline.STEPS, "report", broken_report)
        state = pipeline_flow(
            paths=[str(inbox)], db=str(db), config_path=str(settings), return_state=True
        )
    con = duckdb.connect(str(db), read_only=True)
    try:
        row = con.execute("SELECT status, error, steps, flow_run_id FROM runs").fetchone()
    finally:
        con.close()
    return {"failed": state.is_failed(), "ingest_calls": len(calls), "row": row}


@pytest.fixture(scope="module")
def clean_outcome(
    key_env: None, generated_logs: Path, tmp_path_factory: pytest.TempPathFactory
) -> Outcome:
    """The plain function, no Prefect at all, on a fresh store."""
    root = tmp_path_factory.mktemp("clean")
    db = root / "store.duckdb"
    summary = run_pipeline(db, [generated_logs], config=make_config(root), trigger="test")
    return Outcome(root, db, {"status": summary.status}, fingerprint(db), summary=summary)


def test_the_flow_runs_every_step_under_a_prefect_server(flow_outcome: Outcome) -> None:
    result = flow_outcome.result
    assert result["status"] == "succeeded", result
    assert result["steps"] == {
        "ingest": "ok",
        "plan": "ok",
        "validate": "ok",
        "detect_rules": "ok",
        "detect_ml": "ok",
        "report": "ok",
        "notify": "skipped",  # notify: false in the settings
        "publish": "ok",
    }
    counts = result["counts"]
    assert counts["files_new"] == 3 and counts["events_loaded"] > 500
    assert counts["alerts_new"] > 0 and counts["alerts_open"] == counts["alerts_new"]
    assert Path(result["report"]).is_file()
    assert Path(result["snapshot"]).resolve() == current_snapshot(flow_outcome.root / "snapshots")
    # The run's summary is an artifact in the Prefect UI.
    assert flow_outcome.artifact_markdown is not None
    assert result["run_id"] in flow_outcome.artifact_markdown
    assert "| detect_rules | ok |" in flow_outcome.artifact_markdown

    con = duckdb.connect(str(flow_outcome.db), read_only=True)
    try:
        run = con.execute(
            "SELECT status, trigger, flow_run_id, rules_version, registry_version, model_versions,"
            " alerts_new, duration_seconds, validation_incomplete FROM runs"
        ).fetchone()
    finally:
        con.close()
    assert run is not None
    assert run[0] == "succeeded" and run[1] == "prefect" and run[2]  # the Prefect flow run id
    assert run[3] and run[4] and "ml." in run[5]
    assert run[6] == counts["alerts_new"] and run[7] > 0 and run[8] is False


def test_a_failing_flow_retries_io_records_the_failure_and_ends_failed(
    flow_outcome: Outcome,
) -> None:
    failing = flow_outcome.failing
    assert failing is not None
    assert failing["failed"] is True  # the Prefect flow run ends Failed
    assert failing["ingest_calls"] == 2  # the I/O step was retried once, then succeeded
    status, error, steps, flow_run_id = failing["row"]
    assert status == "failed" and flow_run_id
    assert error.startswith("report: RuntimeError: report template missing")
    by_step = {s["step"]: s for s in json.loads(steps)}
    assert by_step["ingest"]["status"] == "ok" and by_step["ingest"]["attempts"] == 2
    assert by_step["report"]["status"] == "failed"
    assert "publish" not in by_step  # nothing was published after the failure


def test_two_runs_on_the_same_input_give_the_same_alerts(
    flow_outcome: Outcome, clean_outcome: Outcome
) -> None:
    # One through Prefect, one without: same logs, same final state.
    assert clean_outcome.result["status"] == "succeeded"
    assert clean_outcome.state["alerts"] == flow_outcome.state["alerts"]
    assert clean_outcome.state == flow_outcome.state
    detectors = {a[1] for a in clean_outcome.state["alerts"]}
    assert any(not d.startswith("ml.") for d in detectors)
    # The ML step took part: every enabled detector was fitted, identically in both runs
    # (these 600 events are too few for an ML alert above the floors in nats).
    from detectors.ml.registry import load_config

    enabled = {d for d, s in load_config().detectors.items() if s.enabled}
    assert {m[0] for m in clean_outcome.state["models"]} == enabled


def test_a_crash_mid_run_then_a_rerun_ends_like_a_clean_run(
    generated_logs: Path,
    clean_outcome: Outcome,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DWATCH_PSEUDONYM_KEY", KEY)
    db = tmp_path / "store.duckdb"
    config = make_config(tmp_path)

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("injected crash while scoring")

    # Rules have merged their alerts; the ML step dies after training, before scoring.
    monkeypatch.setattr(detectors.ml.run, "score_models", crash)
    with pytest.raises(RuntimeError, match="injected crash"):
        run_pipeline(db, [generated_logs], config=config, trigger="test")
    monkeypatch.undo()
    monkeypatch.setenv("DWATCH_PSEUDONYM_KEY", KEY)

    con = duckdb.connect(str(db), read_only=True)
    try:
        failed = con.execute("SELECT status, error, snapshot_path FROM runs").fetchone()
        open_windows = con.execute(
            "SELECT count(*) FROM run_windows WHERE closed_by_run_id IS NULL"
        ).fetchone()
    finally:
        con.close()
    assert failed is not None and failed[0] == "failed"
    assert failed[1].startswith("detect_ml: RuntimeError: injected crash") and failed[2] is None
    assert open_windows is not None and open_windows[0] > 0  # the gap the next run must fill
    assert current_snapshot(tmp_path / "snapshots") is None  # nothing half-done was published

    rerun = run_pipeline(db, [generated_logs], config=config, trigger="test")
    assert rerun.status == "succeeded", rerun.describe()
    assert rerun.counts["files_new"] == 0  # the crashed run had read them
    assert rerun.counts["gaps_filled"] == open_windows[0]
    assert fingerprint(db) == clean_outcome.state


def test_a_second_run_on_the_same_input_changes_nothing(
    generated_logs: Path, clean_outcome: Outcome, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DWATCH_PSEUDONYM_KEY", KEY)
    again = run_pipeline(
        clean_outcome.db, [generated_logs], config=make_config(clean_outcome.root), trigger="test"
    )
    assert again.status == "succeeded"
    assert again.counts["files_new"] == 0 and again.counts["windows_processed"] == 0
    assert again.counts.get("alerts_new", 0) == 0 and again.counts.get("alerts_retracted", 0) == 0
    state = fingerprint(clean_outcome.db)
    assert state["alerts"] == clean_outcome.state["alerts"]
    assert state["cases"] == clean_outcome.state["cases"]


def _guide_queries() -> list[tuple[str, str]]:
    text = GUIDE.read_text(encoding="utf-8")
    found = []
    for match in re.finditer(r"```sql\n(.*?)```", text, re.S):
        heading = [h for h in re.findall(r"^### (.+)$", text[: match.start()], re.M)][-1:]
        found.append((heading[0] if heading else "(top)", match.group(1)))
    return found


def test_the_analyst_guide_has_at_least_ten_queries() -> None:
    assert len(_guide_queries()) >= 10


@pytest.mark.parametrize(("title", "sql"), _guide_queries(), ids=lambda v: str(v)[:40])
def test_every_analyst_guide_query_runs_on_the_snapshot(
    flow_outcome: Outcome, title: str, sql: str
) -> None:
    snapshot = current_snapshot(flow_outcome.root / "snapshots")
    assert snapshot is not None
    con = duckdb.connect(str(snapshot), read_only=True)
    try:
        con.execute("SET TimeZone = 'UTC'")
        rows = con.execute(sql).fetchall()
    finally:
        con.close()
    if "-- may be empty" not in sql:
        assert rows, f"query '{title}' returned nothing on generated logs"


def test_a_real_case_exports_a_bundle_that_verifies(clean_outcome: Outcome) -> None:
    from dwatch import ledger
    from dwatch.evidence import export_bundle, verify_bundle

    con = duckdb.connect(str(clean_outcome.db))
    try:
        assert ledger.verify_store(con) == []
        (case_id,) = con.execute(
            "SELECT c.case_id FROM case_alerts c JOIN alerts a USING (alert_id)"
            " WHERE a.detector_kind = 'rule' AND len(a.event_ids) > 0"
            " ORDER BY c.case_id LIMIT 1"
        ).fetchone()
        out = clean_outcome.root / f"bundle-{case_id}"
        bundle = export_bundle(con, case_id, out)
    finally:
        con.close()
    assert verify_bundle(out, bundle.manifest_sha256) == []
    rules = json.loads((out / "rules.json").read_text())
    assert rules and all(r["files"] for r in rules)
    with (out / "events.csv").open(encoding="utf-8") as fh:
        events = list(csv.DictReader(fh))
    assert events
    assert all(e["source_file"] and len(e["source_file_sha256"]) == 64 for e in events)
    assert all(e["source_row"] for e in events)
