"""A run with nothing new costs seconds: steps that can change nothing say so without
loading their libraries (the ML stack is scikit-learn and skops)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import duckdb
import pytest
from pipeline_helpers import make_config

from dwatch.pipeline import _ml_idle, run_pipeline
from dwatch.store import connect
from dwatch.watermark import Window

KEY = "idle-run-test-key-0123456789abcdef"


@pytest.fixture(scope="module")
def judged_store(generated_logs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store after one full run (models trained and scored)."""
    root = tmp_path_factory.mktemp("idle")
    os.environ.setdefault("DWATCH_PSEUDONYM_KEY", KEY)
    summary = run_pipeline(
        root / "store.duckdb", [generated_logs], config=make_config(root), trigger="test"
    )
    assert summary.ok, summary.describe()
    assert summary.step("detect_ml").status == "ok"  # type: ignore[union-attr]
    return root / "store.duckdb"


def _ctx(db: Path, windows: list[object]) -> SimpleNamespace:
    return SimpleNamespace(
        con=connect(db), windows=windows, config=make_config(db.parent, train_when_missing=True)
    )


def _transfer_day_window(
    con: duckdb.DuckDBPyConnection, *, opened_by: str | None = None, days_later: int = 0
) -> Window:
    """A window on a UTC day the store holds transfers on (``days_later``: that many days
    after it), opened by the run that loaded them unless ``opened_by`` says otherwise."""
    source, day, run = con.execute(
        "SELECT e.source_system, CAST(timezone('UTC', e.occurred_at) AS DATE), b.claimed_by_run_id"
        " FROM disclosure_events e JOIN run_batches b USING (ingest_run_id)"
        " WHERE e.event_type = 'disclosure' ORDER BY e.occurred_at DESC LIMIT 1"
    ).fetchone()
    start = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=days_later)
    return Window(0, source, start, start + timedelta(days=1), "test", opened_by or run)


def test_an_idle_run_skips_ml_without_importing_it(
    judged_store: Path, generated_logs: Path
) -> None:
    script = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "sys.path.insert(0, sys.argv[3])\n"
        "from pipeline_helpers import make_config\n"
        "from dwatch.pipeline import run_pipeline\n"
        "db = Path(sys.argv[1])\n"
        "s = run_pipeline(db, [sys.argv[2]], config=make_config(db.parent), trigger='test')\n"
        "print(json.dumps({'status': s.step('detect_ml').status,"
        " 'message': s.step('detect_ml').message,"
        " 'loaded': sorted(m for m in ('sklearn', 'skops') if m in sys.modules)}))\n"
    )
    env = {**os.environ, "DWATCH_PSEUDONYM_KEY": os.environ.get("DWATCH_PSEUDONYM_KEY", KEY)}
    out = subprocess.run(
        [sys.executable, "-c", script, str(judged_store), str(generated_logs),
         str(Path(__file__).parent)],
        capture_output=True, text=True, env=env, check=True, timeout=600,
    )  # fmt: skip
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["status"] == "skipped", seen
    assert seen["loaded"] == [], seen  # neither scikit-learn nor skops was imported


def test_ml_is_not_idle_with_a_window_open_or_a_newer_model(
    judged_store: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "store.duckdb"
    shutil.copy(judged_store, copy)
    ctx = _ctx(copy, [])
    try:
        assert _ml_idle(ctx) is not None  # type: ignore[arg-type]
        ctx.windows = [_transfer_day_window(ctx.con)]
        assert _ml_idle(ctx) is None  # type: ignore[arg-type]
        ctx.windows = []
        ctx.con.execute(
            "CREATE TEMP TABLE newer AS SELECT * REPLACE (model_id || '-b' AS model_id,"
            " version || '-b' AS version, created_at + INTERVAL 1 DAY AS created_at)"
            " FROM models LIMIT 1"
        )
        ctx.con.execute("INSERT INTO models SELECT * FROM newer")
        assert _ml_idle(ctx) is None  # type: ignore[arg-type]
        ctx.con.execute("DELETE FROM models WHERE model_id IN (SELECT model_id FROM newer)")
        # A detector enabled but never trained is trained by a run that trains when missing.
        ctx.con.execute(
            "DELETE FROM models WHERE detector_id = (SELECT min(detector_id) FROM models)"
        )
        assert _ml_idle(ctx) is None  # type: ignore[arg-type]
    finally:
        ctx.con.close()


def test_windows_holding_nothing_the_detectors_read_skip_ml_without_importing_it(
    judged_store: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "store.duckdb"
    shutil.copy(judged_store, copy)
    ctx = _ctx(copy, [])
    try:
        # The transfers of that day, newly arrived: the detectors have rows to score.
        ctx.windows = [_transfer_day_window(ctx.con)]
        assert _ml_idle(ctx) is None  # type: ignore[arg-type]
        # The same day opened by a run whose batches held none of its events (request
        # items arriving after their events), or a day after the last event: nothing.
        ctx.windows = [_transfer_day_window(ctx.con, opened_by="run-without-batches")]
        assert _ml_idle(ctx) is not None  # type: ignore[arg-type]
        ctx.windows = [_transfer_day_window(ctx.con, days_later=3)]
        assert _ml_idle(ctx) is not None  # type: ignore[arg-type]
    finally:
        ctx.con.close()
    # The step, in a fresh process: skipped, and scikit-learn, SciPy and skops not imported.
    script = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from types import SimpleNamespace\n"
        "sys.path.insert(0, sys.argv[2])\n"
        "from pipeline_helpers import make_config\n"
        "from test_idle_run import _transfer_day_window\n"
        "from dwatch.pipeline import step_detect_ml\n"
        "from dwatch.store import connect\n"
        "db = Path(sys.argv[1])\n"
        "con = connect(db)\n"
        "ctx = SimpleNamespace(con=con, config=make_config(db.parent), versions={},\n"
        "    wait_prefetch=lambda: None,\n"
        "    windows=[_transfer_day_window(con, days_later=3)])\n"
        "step = step_detect_ml(ctx)\n"
        "print(json.dumps({'status': step.status, 'models': sorted(ctx.versions['models']),\n"
        "    'loaded': sorted(m for m in ('sklearn', 'scipy', 'skops') if m in sys.modules)}))\n"
    )
    env = {**os.environ, "DWATCH_PSEUDONYM_KEY": os.environ.get("DWATCH_PSEUDONYM_KEY", KEY)}
    out = subprocess.run(
        [sys.executable, "-c", script, str(copy), str(Path(__file__).parent)],
        capture_output=True, text=True, env=env, check=True, timeout=600,
    )  # fmt: skip
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["status"] == "skipped", seen
    assert seen["models"], seen
    assert seen["loaded"] == [], seen
