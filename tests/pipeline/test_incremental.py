"""Incremental and gap-free: only new files are read, late events and backfills re-open
windows, work a failed or abandoned run left is taken up by the next one."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pipeline_helpers import fingerprint, ledger_rows, make_config, write_events

import dwatch.ingest
import dwatch.ingest.group
import dwatch.ingest.write
import dwatch.pipeline
from dwatch.pipeline import PipelineConfig, run_pipeline
from dwatch.pipeline_config import parse_backfill
from dwatch.store import connect
from dwatch.watermark import missed_schedules


def _jan(
    days: range, source: str = "ca-ftb-fti-log", start_seq: int = 1
) -> list[dict[str, object]]:
    return ledger_rows(source, [(f"2026-01-{d:02d}", 10) for d in days], start_seq=start_seq)


@pytest.fixture
def spy_ingest(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Records which files each run hands to ingest."""
    calls: list[list[str]] = []
    real = dwatch.ingest.ingest_paths

    def spy(con, paths, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(sorted(Path(p).name for p in paths))
        return real(con, paths, **kwargs)

    monkeypatch.setattr(dwatch.ingest, "ingest_paths", spy)
    return calls


def test_incremental_run_reads_only_new_files(
    tmp_path: Path, db_path: Path, config: PipelineConfig, spy_ingest: list[list[str]]
) -> None:
    inbox = tmp_path / "inbox"
    write_events(inbox / "a.csv", _jan(range(1, 6)))
    first = run_pipeline(db_path, [inbox], config=config, trigger="test")
    assert first.ok, first.describe()
    assert first.counts["files_new"] == 1 and first.counts["events_loaded"] == 5

    write_events(inbox / "b.csv", _jan(range(6, 9), start_seq=6))
    second = run_pipeline(db_path, [inbox], config=config, trigger="test")
    assert second.ok, second.describe()
    assert spy_ingest == [["a.csv"], ["b.csv"]]  # a.csv was not opened again
    assert second.counts["files_new"] == 1 and second.counts["files_unchanged"] == 1
    assert second.counts["events_loaded"] == 3
    assert second.counts["late_events"] == 0

    third = run_pipeline(db_path, [inbox], config=config, trigger="test")
    assert spy_ingest[-1:] == [["a.csv"], ["b.csv"]][-1:] and len(spy_ingest) == 2  # nothing new
    assert third.step("detect_rules").status == "skipped"  # type: ignore[union-attr]

    con = connect(db_path)
    try:
        rows = con.execute(
            "SELECT files_new, files_unchanged, events_loaded, status FROM runs ORDER BY started_at"
        ).fetchall()
        marks = con.execute(
            "SELECT source_system, events_through FROM source_watermarks"
        ).fetchall()
        still_open = con.execute(
            "SELECT count(*) FROM run_windows WHERE closed_by_run_id IS NULL"
        ).fetchone()
    finally:
        con.close()
    assert [r[:3] for r in rows] == [(1, 0, 5), (1, 1, 3), (0, 2, 0)]
    assert marks == [("ca-ftb-fti-log", datetime(2026, 1, 8, 10, 15, tzinfo=UTC))]
    assert still_open == (0,)


def test_changed_file_is_read_again_but_same_content_is_not_reloaded(
    tmp_path: Path, db_path: Path, config: PipelineConfig, spy_ingest: list[list[str]]
) -> None:
    inbox = tmp_path / "inbox"
    write_events(inbox / "a.csv", _jan(range(1, 4)))
    run_pipeline(db_path, [inbox], config=config, trigger="test")
    copy = inbox / "copy-of-a.csv"
    copy.write_bytes((inbox / "a.csv").read_bytes())
    summary = run_pipeline(db_path, [inbox], config=config, trigger="test")
    assert spy_ingest[-1] == ["copy-of-a.csv"]
    assert summary.counts["events_loaded"] == 0  # same content: ingest skipped it
    con = connect(db_path)
    try:
        status = con.execute(
            "SELECT status, ingest_run_id IS NOT NULL FROM source_files WHERE path LIKE '%copy-of-a.csv'"
        ).fetchone()
    finally:
        con.close()
    assert status == ("duplicate_content", True)


def test_late_events_reopen_the_windows_they_touch(
    tmp_path: Path, db_path: Path, config: PipelineConfig
) -> None:
    inbox = tmp_path / "inbox"
    write_events(inbox / "jan-10-20.csv", _jan(range(10, 21)))
    run_pipeline(db_path, [inbox], config=config, trigger="test")
    # Two events from days already judged arrive later (a recipient's log caught up).
    write_events(
        inbox / "late.csv",
        ledger_rows("ca-ftb-fti-log", [("2026-01-03", 9), ("2026-01-12", 9)], start_seq=100),
    )
    summary = run_pipeline(db_path, [inbox], config=config, trigger="test")
    assert summary.counts["late_events"] == 2
    assert any("late event" in n for n in summary.notes)
    con = connect(db_path)
    try:
        windows = con.execute(
            "SELECT strftime(window_start, '%Y-%m-%d'), reason, closed_by_run_id FROM run_windows"
            " WHERE opened_by_run_id = ? ORDER BY 1",
            [summary.run_id],
        ).fetchall()
    finally:
        con.close()
    assert windows == [
        ("2026-01-03", "late_events", summary.run_id),
        ("2026-01-12", "late_events", summary.run_id),
    ]


def test_backfill_reprocesses_a_range(
    tmp_path: Path, db_path: Path, config: PipelineConfig
) -> None:
    inbox = tmp_path / "inbox"
    write_events(inbox / "a.csv", _jan(range(1, 11)))
    run_pipeline(db_path, [inbox], config=config, trigger="test")
    quiet = run_pipeline(db_path, [inbox], config=config, trigger="test")
    assert quiet.step("detect_rules").status == "skipped"  # type: ignore[union-attr]

    window = parse_backfill("2026-01-03", "2026-01-05")
    assert window == (datetime(2026, 1, 3, tzinfo=UTC), datetime(2026, 1, 6, tzinfo=UTC))
    summary = run_pipeline(db_path, [inbox], config=config, backfill=window, trigger="test")
    assert summary.ok
    assert summary.step("detect_rules").status == "ok"  # type: ignore[union-attr]
    assert summary.counts["windows_processed"] == 1
    con = connect(db_path)
    try:
        row = con.execute(
            "SELECT source_system, reason, events, closed_by_run_id FROM run_windows WHERE reason = 'backfill'"
        ).fetchone()
        bounds = con.execute(
            "SELECT backfill_from, backfill_to FROM runs WHERE run_id = ?", [summary.run_id]
        ).fetchone()
    finally:
        con.close()
    assert row == ("*", "backfill", 3, summary.run_id)
    assert bounds == window


def test_backfill_bounds_are_checked() -> None:
    from dwatch.errors import InputError

    with pytest.raises(InputError, match="empty"):
        parse_backfill("2026-02-01", "2026-01-01")
    with pytest.raises(InputError, match="without a time zone"):
        parse_backfill("2026-01-01T00:00:00", "2026-02-01")
    with pytest.raises(InputError, match="not a date"):
        parse_backfill("yesterday", "2026-02-01")


KILLED_RUN = """
import os, sys
from pathlib import Path
import dwatch.pipeline as p
p.STEPS["validate"] = lambda ctx: os._exit(9)  # the process dies mid-run: no handler runs
p.run_pipeline(Path(sys.argv[1]), [sys.argv[2]], config=p.load_pipeline_config(sys.argv[3]), trigger="test")
"""


def test_a_killed_run_is_marked_abandoned_and_its_work_taken_up(
    tmp_path: Path, db_path: Path, config: PipelineConfig
) -> None:
    inbox = tmp_path / "inbox"
    write_events(inbox / "a.csv", _jan(range(1, 4)))
    settings = tmp_path / "pipeline.yaml"
    settings.write_text(
        f"reports_dir: {tmp_path / 'reports'}\nsnapshots: {{dir: {tmp_path / 'snapshots'}}}\nnotify: false\n",
        encoding="utf-8",
    )
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_RUN, str(db_path), str(inbox), str(settings)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == 9, killed.stderr
    con = connect(db_path)
    try:
        assert con.execute("SELECT status FROM runs").fetchall() == [("running",)]
    finally:
        con.close()

    summary = run_pipeline(db_path, [inbox], config=config, trigger="test")
    assert summary.ok, summary.describe()
    assert summary.counts["gaps_filled"] == 3  # the three days the dead run opened
    assert summary.counts["files_new"] == 0  # its file was read by the dead run
    assert any("abandoned" in n for n in summary.notes)
    con = connect(db_path)
    try:
        statuses = con.execute("SELECT status FROM runs ORDER BY started_at").fetchall()
        open_windows = con.execute(
            "SELECT count(*) FROM run_windows WHERE closed_by_run_id IS NULL"
        ).fetchone()
        validated = con.execute(
            "SELECT count(DISTINCT ingest_run_id) FROM validation_results WHERE ingest_run_id IS NOT NULL"
        ).fetchone()
        judged = con.execute("SELECT judged_by_run_id FROM run_batches").fetchall()
    finally:
        con.close()
    assert statuses == [("abandoned",), (summary.status,)]
    assert open_windows == (0,)
    assert validated == (1,)
    assert judged == [(summary.run_id,)]


def test_missed_scheduled_runs_are_noticed(db_path: Path) -> None:
    con = connect(db_path)
    try:
        con.execute(
            "INSERT INTO runs (run_id, trigger, status, started_at) VALUES"
            " ('r1', 'schedule', 'succeeded', TIMESTAMPTZ '2026-03-01 02:00:10+00'),"
            " ('r2', 'schedule', 'failed', TIMESTAMPTZ '2026-03-02 02:00:05+00')"
        )
        now = datetime(2026, 3, 4, 2, 0, 30, tzinfo=UTC)
        # fires on 03-02 (failed) and 03-03 (did not run) were missed; 03-04 is this run
        assert missed_schedules(con, "0 2 * * *", now=now) == (
            2,
            datetime(2026, 3, 1, 2, 0, 10, tzinfo=UTC),
        )
        assert (
            missed_schedules(con, "0 2 * * *", now=datetime(2026, 3, 2, 2, 0, 30, tzinfo=UTC))[0]
            == 0
        )
    finally:
        con.close()


def test_a_step_that_is_not_installed_is_recorded_not_faked(
    tmp_path: Path, db_path: Path, config: PipelineConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox = tmp_path / "inbox"
    write_events(inbox / "a.csv", _jan(range(1, 4)))
    monkeypatch.setitem(sys.modules, "dwatch.validate", None)  # import now fails
    summary = run_pipeline(db_path, [inbox], config=config, trigger="test")
    assert summary.status == "partial"
    assert summary.step("validate").status == "not_available"  # type: ignore[union-attr]
    assert summary.report_path is not None
    assert "validation incomplete" in summary.report_path.read_text(encoding="utf-8")
    con = connect(db_path)
    try:
        row = con.execute("SELECT status, validation_incomplete, steps FROM runs").fetchone()
    finally:
        con.close()
    assert row[0] == "partial" and row[1] is True
    assert '"step": "validate", "status": "not_available"' in row[2]


def test_settings_file_errors_name_the_setting(tmp_path: Path) -> None:
    from dwatch.errors import ConfigError
    from dwatch.pipeline import load_pipeline_config

    bad = tmp_path / "p.yaml"
    bad.write_text("schedule:\n  cron: '61 * * * *'\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"schedule\.cron"):
        load_pipeline_config(bad)
    bad.write_text("schedul: {}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="unknown setting"):
        load_pipeline_config(bad)
    good = tmp_path / "ok.yaml"
    good.write_text(
        "schedule: {cron: '*/15 * * * *', timezone: America/New_York}\ninputs: [in]\n",
        encoding="utf-8",
    )
    cfg = load_pipeline_config(good)
    assert (cfg.cron, cfg.timezone, cfg.keep_snapshots) == ("*/15 * * * *", "America/New_York", 3)
    assert cfg.inputs[0].endswith("/in")


def test_make_config_helper_points_outputs_into_tmp(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    assert cfg.reports_dir == tmp_path / "reports" and cfg.notify is False


@pytest.mark.parametrize(
    ("grouped", "crash_at", "left", "reloaded"),
    [
        (False, 2, 3, 6),  # one transaction per file: the crash is in the second file's
        (True, 1, 0, 9),  # the three small CSVs are one group: one transaction, nothing left
    ],
)
def test_a_crash_mid_ingest_then_a_rerun_ends_like_a_clean_run(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    grouped: bool,
    crash_at: int,
    left: int,
    reloaded: int,
) -> None:
    inbox = tmp_path / "inbox"
    write_events(inbox / "a.csv", _jan(range(1, 4)))
    write_events(inbox / "b.csv", _jan(range(4, 7), start_seq=4))
    # sent by e-mail: real findings (unapproved_channel) for the comparison below
    emailed = [{**r, "channel": "email"} for r in _jan(range(2, 5), source="ny-dtf-fti-log")]
    write_events(inbox / "c.csv", emailed)
    clean_db = tmp_path / "clean" / "store.duckdb"
    clean = run_pipeline(clean_db, [inbox], config=make_config(tmp_path / "clean"), trigger="test")
    assert clean.status == "succeeded"

    commits = []

    def crash_at_commit() -> None:
        commits.append(1)
        if len(commits) == crash_at:
            raise RuntimeError("injected crash inside an ingest transaction")

    db = tmp_path / "crash" / "store.duckdb"
    config = make_config(tmp_path / "crash")
    if not grouped:
        monkeypatch.setattr(dwatch.ingest.group, "GROUP_FILE_BYTES", 0)
    monkeypatch.setattr(dwatch.ingest.write, "_before_commit", crash_at_commit)
    with pytest.raises(RuntimeError, match="injected crash"):
        run_pipeline(db, [inbox], config=config, trigger="test")
    monkeypatch.setattr(dwatch.ingest.write, "_before_commit", None)
    con = connect(db)
    try:
        assert con.execute(
            "SELECT status, error LIKE 'ingest: RuntimeError%' FROM runs"
        ).fetchall() == [("failed", True)]
        assert con.execute("SELECT count(*) FROM disclosure_events").fetchone() == (left,)
    finally:
        con.close()

    rerun = run_pipeline(db, [inbox], config=config, trigger="test")
    assert rerun.status == "succeeded", rerun.describe()
    assert (
        rerun.counts["events_loaded"] == reloaded
    )  # what the crash left; loaded files are not reloaded
    expected = fingerprint(clean_db)
    assert expected["alerts"]  # the comparison covers real findings
    assert fingerprint(db) == expected


def test_a_scheduled_run_notices_the_schedules_missed_since_the_last_success(
    tmp_path: Path, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    con = connect(db_path)
    try:
        con.execute(
            "INSERT INTO runs (run_id, trigger, status, started_at)"
            " VALUES ('run_earlier', 'schedule', 'succeeded', now() - INTERVAL 20 MINUTE)"
        )
    finally:
        con.close()
    config = make_config(tmp_path, cron="* * * * *", train_when_missing=False)
    summary = run_pipeline(db_path, [], config=config, trigger="schedule")
    # Fires every minute; a run up to 5 minutes late still counts as its fire, and this run
    # is the current fire: about 14 were missed since the success 20 minutes ago.
    assert 13 <= summary.counts["missed_schedules"] <= 15
    assert any("scheduled run(s) since the last successful run" in n for n in summary.notes)
    con = connect(db_path)
    try:
        recorded = con.execute(
            "SELECT missed_schedules FROM runs WHERE run_id = ?", [summary.run_id]
        ).fetchone()
    finally:
        con.close()
    assert recorded == (summary.counts["missed_schedules"],)
