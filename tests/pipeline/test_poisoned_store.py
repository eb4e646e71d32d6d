"""No stored value stops the pipeline: a batch an older version let in with instants that
cannot be (year 294247, infinity) is cleaned at validation, and the clean batches of the
same run and of the next run are validated, judged, reported and published."""

from __future__ import annotations

from pathlib import Path

import pytest
from pipeline_helpers import ledger_rows, write_events

import dwatch.watermark
from dwatch.ingest import ingest_paths
from dwatch.pipeline import PipelineConfig, RunSummary, run_pipeline
from dwatch.store import connect


def _old_store_with_poisoned_batch(db_path: Path, folder: Path) -> str:
    """A batch as a store written before ingest checked instants would hold it."""
    rows = ledger_rows("old-log", [("2026-01-02", h) for h in (9, 10, 11)])
    con = connect(db_path)
    try:
        [result] = ingest_paths(con, [write_events(folder / "old.csv", rows)])
        con.execute(
            "UPDATE disclosure_events SET occurred_at = CASE sequence_no"
            " WHEN 2 THEN '294247-01-10T04:00:54Z' ELSE 'infinity' END::TIMESTAMPTZ"
            " WHERE ingest_run_id = ? AND sequence_no IN (2, 3)",
            [result.run_id],
        )
    finally:
        con.close()
    return result.run_id


def _assert_clean_batch_went_through(
    db_path: Path, summary: RunSummary, clean_file: Path, snapshots: Path
) -> None:
    assert summary.ok, summary.describe()
    for step in ("validate", "detect_rules", "report", "publish"):
        assert summary.step(step) is not None, step
    assert summary.step("publish").status == "ok"  # type: ignore[union-attr]
    con = connect(db_path)
    try:
        [(batch,)] = con.execute(
            "SELECT run_id FROM ingest_runs WHERE source_file = ? AND status = 'loaded'",
            [str(clean_file)],
        ).fetchall()
        validated = con.execute(
            "SELECT count(*), count(*) FILTER (WHERE expectation = 'validation_could_not_run')"
            " FROM validation_results WHERE ingest_run_id = ?",
            [batch],
        ).fetchone()
        judged = con.execute(
            "SELECT judged_by_run_id FROM run_batches WHERE ingest_run_id = ?", [batch]
        ).fetchone()
        status = con.execute(
            "SELECT status FROM runs WHERE run_id = ?", [summary.run_id]
        ).fetchone()
    finally:
        con.close()
    assert validated is not None and validated[0] > 0 and validated[1] == 0
    assert judged == (summary.run_id,)
    assert status is not None and status[0] in ("succeeded", "partial")
    assert (snapshots / "current.duckdb").exists()
    assert (
        summary.counts.get("snapshot_path") and Path(str(summary.counts["snapshot_path"])).exists()
    )


@pytest.mark.parametrize("with_plan_failure", [False, True])
def test_poisoned_batch_and_clean_batch_then_a_clean_run(
    tmp_path: Path,
    db_path: Path,
    config: PipelineConfig,
    monkeypatch: pytest.MonkeyPatch,
    with_plan_failure: bool,
) -> None:
    poisoned = _old_store_with_poisoned_batch(db_path, tmp_path / "old")
    if with_plan_failure:
        # Whatever else a batch holds that planning cannot take: only that batch waits.
        real = dwatch.watermark._open_windows_of

        def fails_on_poisoned(con, run_id, batches):  # type: ignore[no-untyped-def]
            if poisoned in batches:
                raise RuntimeError("cannot plan this batch")
            return real(con, run_id, batches)

        monkeypatch.setattr(dwatch.watermark, "_open_windows_of", fails_on_poisoned)
    inbox = tmp_path / "inbox"
    days = [(f"2026-01-{d:02d}", 10) for d in range(3, 8)]
    first_file = write_events(inbox / "a.csv", ledger_rows("ca-ftb-fti-log", days))
    first = run_pipeline(db_path, [inbox], config=config, trigger="test")
    _assert_clean_batch_went_through(db_path, first, first_file, config.snapshot_dir)
    assert (config.reports_dir / "report.html").exists()

    more = [(f"2026-01-{d:02d}", 10) for d in range(8, 11)]
    second_file = write_events(inbox / "b.csv", ledger_rows("ca-ftb-fti-log", more, 6))
    second = run_pipeline(db_path, [inbox], config=config, trigger="test")
    _assert_clean_batch_went_through(db_path, second, second_file, config.snapshot_dir)

    con = connect(db_path)
    try:
        moved = con.execute(
            "SELECT source_row, reason_code, field, stage FROM quarantine"
            " WHERE ingest_run_id = ? ORDER BY source_row",
            [poisoned],
        ).fetchall()
        counts = con.execute(
            "SELECT rows_read, rows_loaded, rows_quarantined FROM ingest_runs WHERE run_id = ?",
            [poisoned],
        ).fetchone()
        kept = con.execute(
            "SELECT count(*) FROM disclosure_events WHERE ingest_run_id = ?", [poisoned]
        ).fetchone()
    finally:
        con.close()
    assert moved == [
        (2, "out_of_range", "occurred_at", "validate"),
        (3, "out_of_range", "occurred_at", "validate"),
    ]
    assert counts == (3, 1, 2) and kept == (1,)
    if with_plan_failure:
        plan = first.step("plan")
        assert plan is not None and plan.status == "warning"
        assert (
            poisoned in plan.detail["failed"] and "cannot plan" in plan.detail["failed"][poisoned]
        )
