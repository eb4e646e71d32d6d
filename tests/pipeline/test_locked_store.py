"""A run that cannot open the store says where its attempt is recorded, and it is there."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner
from pipeline_helpers import make_config

from dwatch.cli import main
from dwatch.failed_starts import failed_starts_path
from dwatch.pipeline import run_pipeline
from dwatch.store import connect

HOLD = (
    "import sys, time, duckdb\n"
    "con = duckdb.connect(sys.argv[1])\n"
    "print('holding', flush=True)\n"
    "time.sleep(120)\n"
)


def test_locked_store_message_is_true_and_the_attempt_reaches_the_runs_table(
    tmp_path: Path, db_path: Path
) -> None:
    connect(db_path).close()  # a migrated store
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(db_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        result = CliRunner().invoke(main, ["--db", str(db_path), "run"])
    finally:
        holder.kill()
        holder.wait()
    assert result.exit_code == 1
    side = failed_starts_path(db_path)
    assert "recorded in the runs table" not in result.output
    assert f"recorded in {side}" in result.output, result.output
    assert "the run could not start" in side.read_text(encoding="utf-8")

    summary = run_pipeline(db_path, [], config=make_config(tmp_path), trigger="test")
    assert summary.ok, summary.describe()
    con = connect(db_path)
    try:
        rows = con.execute(
            "SELECT trigger, status, error FROM runs WHERE run_id <> ? ORDER BY started_at",
            [summary.run_id],
        ).fetchall()
    finally:
        con.close()
    [(trigger, status, error)] = rows
    assert (trigger, status) == ("cli", "failed")
    assert "could not start" in error and "lock" in error.lower()
    assert not side.exists()
    assert any("could not open the store" in note for note in summary.notes)
