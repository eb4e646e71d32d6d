"""A run with nothing new costs seconds: steps that can change nothing say so without
loading their libraries (the ML stack is scikit-learn and skops)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from pipeline_helpers import make_config

from dwatch.pipeline import _ml_idle, run_pipeline
from dwatch.store import connect

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
        ctx.windows = [object()]
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
