"""Analysts and the single-writer rule: a run publishes a read-only snapshot; an analyst
session holding one open never blocks a run and never sees a half-written state."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from pipeline_helpers import ledger_rows, make_config, write_events

import dwatch.snapshot
from dwatch.errors import StoreError
from dwatch.pipeline import run_pipeline
from dwatch.snapshot import current_snapshot, open_snapshot, prune, publish_snapshot
from dwatch.store import connect

ANALYST = """
import sys, duckdb
path = sys.argv[1]
con = duckdb.connect(path, read_only=True)
def state(c):
    return c.execute("SELECT (SELECT count(*) FROM runs), (SELECT count(*) FROM disclosure_events),"
                     " (SELECT max(run_id) FROM runs)").fetchone()
print("opened", *state(con), flush=True)
sys.stdin.readline()          # the test runs the pipeline meanwhile
print("still", *state(con), flush=True)
con.close()
again = duckdb.connect(path, read_only=True)
print("reopened", *state(again), flush=True)
"""


def test_a_run_while_an_analyst_holds_the_snapshot_open(tmp_path: Path, db_path: Path) -> None:
    # keep=1: the analyst's snapshot is even deleted by the second run's pruning.
    config = make_config(tmp_path, keep_snapshots=1, train_when_missing=False)
    inbox = tmp_path / "inbox"
    write_events(
        inbox / "a.csv",
        ledger_rows("ca-ftb-fti-log", [("2026-01-02", 9), ("2026-01-03", 9), ("2026-01-04", 9)]),
    )
    first = run_pipeline(db_path, [inbox], config=config, trigger="test")
    assert first.ok and first.current_snapshot is not None
    current = first.current_snapshot

    analyst = subprocess.Popen(
        [sys.executable, "-c", ANALYST, str(current)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert analyst.stdout is not None and analyst.stdin is not None
        opened = analyst.stdout.readline().split()
        assert opened == ["opened", "1", "3", first.run_id]

        write_events(
            inbox / "b.csv",
            ledger_rows("ca-ftb-fti-log", [("2026-01-05", 9), ("2026-01-06", 9)], start_seq=4),
        )
        second = run_pipeline(db_path, [inbox], config=config, trigger="test")
        assert second.ok, second.describe()
        assert second.step("publish").status == "ok"  # type: ignore[union-attr]

        analyst.stdin.write("go\n")
        analyst.stdin.flush()
        still = analyst.stdout.readline().split()
        reopened = analyst.stdout.readline().split()
        assert analyst.wait(timeout=60) == 0, analyst.stderr.read() if analyst.stderr else ""
    finally:
        if analyst.poll() is None:
            analyst.kill()
    # The open session kept its consistent state; reopening shows the new run.
    assert still == ["still", "1", "3", first.run_id]
    assert reopened == ["reopened", "2", "5", second.run_id]
    snapshots = sorted(p.name for p in (tmp_path / "snapshots").glob("dwatch-*.duckdb"))
    assert snapshots == [f"dwatch-{second.run_id}.duckdb"]


def test_the_snapshot_is_read_only_and_complete(tmp_path: Path, db_path: Path) -> None:
    config = make_config(tmp_path, train_when_missing=False)
    inbox = tmp_path / "inbox"
    write_events(inbox / "a.csv", ledger_rows("ca-ftb-fti-log", [("2026-01-02", 9)]))
    summary = run_pipeline(db_path, [inbox], config=config, trigger="test")
    snap_dir = tmp_path / "snapshots"
    assert (snap_dir / "current.duckdb").is_symlink()
    pointer = json.loads((snap_dir / "current.json").read_text(encoding="utf-8"))
    assert pointer["run_id"] == summary.run_id
    assert current_snapshot(snap_dir) == summary.snapshot_path
    assert not os.access(summary.snapshot_path, os.W_OK) or os.geteuid() == 0
    assert (summary.snapshot_path.stat().st_mode & 0o222) == 0  # type: ignore[union-attr]
    con = open_snapshot(snap_dir)
    try:
        run = con.execute("SELECT status, snapshot_path, steps FROM runs").fetchone()
        with pytest.raises(duckdb.Error):
            con.execute("CREATE TABLE scratch (x INTEGER)")
    finally:
        con.close()
    # the snapshot's own row already says how the run ended and where it was published
    assert run[0] == summary.status and run[1] == str(summary.snapshot_path)
    assert '"step": "publish", "status": "ok"' in run[2]


def test_a_failed_copy_leaves_the_previous_snapshot_current(
    tmp_path: Path, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = make_config(tmp_path, train_when_missing=False)
    inbox = tmp_path / "inbox"
    write_events(inbox / "a.csv", ledger_rows("ca-ftb-fti-log", [("2026-01-02", 9)]))
    first = run_pipeline(db_path, [inbox], config=config, trigger="test")

    def disk_full(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(dwatch.snapshot, "_write_copy", disk_full)
    with pytest.raises(StoreError, match="could not publish"):
        run_pipeline(db_path, [inbox], config=config, trigger="test")
    snap_dir = tmp_path / "snapshots"
    assert current_snapshot(snap_dir) == first.snapshot_path
    assert not list(snap_dir.glob(".*partial"))
    con = connect(db_path)
    try:
        row = con.execute(
            "SELECT status, error LIKE 'publish:%', snapshot_path FROM runs ORDER BY started_at DESC LIMIT 1"
        ).fetchone()
    finally:
        con.close()
    assert row == ("failed", True, None)


def test_prune_keeps_the_newest_and_never_the_current(tmp_path: Path) -> None:
    snap_dir = tmp_path / "snaps"
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    con.execute("CREATE TABLE runs (run_id VARCHAR)")
    ids = ["run_20260101T000000_a", "run_20260102T000000_b", "run_20260103T000000_c"]
    for run_id in ids:
        con.execute("INSERT INTO runs VALUES (?)", [run_id])
        publish_snapshot(con, tmp_path / "w.duckdb", snap_dir, run_id, keep=5)
    con.close()
    # point current back at the oldest (as if newer publishes were rolled back by hand)
    dwatch.snapshot.switch_current(snap_dir, snap_dir / f"dwatch-{ids[0]}.duckdb", ids[0])
    removed = prune(snap_dir, keep=1)
    left = sorted(p.name for p in snap_dir.glob("dwatch-*.duckdb"))
    assert [p.name for p in removed] == [f"dwatch-{ids[1]}.duckdb"]
    assert left == [f"dwatch-{ids[0]}.duckdb", f"dwatch-{ids[2]}.duckdb"]


def test_no_snapshot_yet_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="dwatch run"):
        open_snapshot(tmp_path / "nothing")


def test_the_snapshot_leaves_out_the_detectors_kept_state(tmp_path: Path, db_path: Path) -> None:
    config = make_config(tmp_path, train_when_missing=False)
    inbox = tmp_path / "inbox"
    write_events(inbox / "a.csv", ledger_rows("ca-ftb-fti-log", [("2026-01-02", 9)]))
    summary = run_pipeline(db_path, [inbox], config=config, trigger="test")
    with connect(db_path) as store:
        in_store = {
            r[0] for r in store.execute("SELECT table_name FROM duckdb_tables()").fetchall()
        }
        kept = store.execute("SELECT count(*) FROM rule_state_batches").fetchone()[0]
    assert in_store >= dwatch.snapshot.WORK_STATE and kept > 0  # the state exists and was used
    con = open_snapshot(tmp_path / "snapshots")
    try:
        in_snapshot = {
            r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()
        }
        events = con.execute("SELECT count(*) FROM disclosure_events").fetchone()[0]
    finally:
        con.close()
    assert not in_snapshot & dwatch.snapshot.WORK_STATE
    assert in_store - dwatch.snapshot.WORK_STATE - {"disclosure_events", "request_items"} <= (
        in_snapshot | {"accounting_keys"}
    )
    assert events == summary.counts["events_loaded"] > 0


def test_publish_reports_the_accounting_index_apart_from_the_snapshot(
    tmp_path: Path, db_path: Path
) -> None:
    """The publish step's time holds the accounting index's refresh; it says how much."""
    config = make_config(tmp_path, train_when_missing=False)
    inbox = tmp_path / "inbox"
    write_events(inbox / "a.csv", ledger_rows("ca-ftb-fti-log", [("2026-01-02", 9)]))
    first = run_pipeline(db_path, [inbox], config=config, trigger="test")
    second = run_pipeline(db_path, [inbox], config=config, trigger="test")  # nothing new
    for summary, says in ((first, "from 1 batch(es)"), (second, "accounting index: up to date")):
        step = summary.step("publish")
        assert step is not None and step.status == "ok", summary.describe()
        assert says in step.message
        index_s, bookkeeping_s = (
            step.detail["accounting_index_seconds"],
            step.detail["bookkeeping_seconds"],
        )
        assert 0 <= index_s <= bookkeeping_s <= step.seconds
