"""The background import of what scoring and the report load (dwatch/prefetch.py): started
only when a run has new files, waited for before the steps that use it, harmless when an
import fails."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from pipeline_helpers import make_config

from dwatch.pipeline import STEP_NAMES, begin_run
from dwatch.prefetch import MODULES, Prefetch

KEY = "prefetch-test-key-0123456789abcdef"


def test_a_failed_import_is_recorded_not_raised() -> None:
    p = Prefetch(("json", "dwatch_no_such_module_here", "csv"))
    p.wait()
    assert p.done
    assert set(p.failed) == {"dwatch_no_such_module_here"}
    assert "ModuleNotFoundError" in p.failed["dwatch_no_such_module_here"]


def test_the_modules_named_exist() -> None:
    # A renamed module would make the prefetch a silent no-op: every name must import.
    p = Prefetch(MODULES)
    p.wait()
    assert p.failed == {}


def test_started_by_new_files_only(generated_logs: Path, tmp_path: Path) -> None:
    os.environ.setdefault("DWATCH_PSEUDONYM_KEY", KEY)
    db = tmp_path / "store.duckdb"
    ctx = begin_run(db, [generated_logs], config=make_config(tmp_path), trigger="test")
    try:
        ctx.run("ingest")
        assert ctx.prefetch is not None  # new files: the thread started
        for name in STEP_NAMES[1:]:
            ctx.run(name)
        assert ctx.prefetch.done
        assert ctx.steps["detect_ml"].status == "ok"
    finally:
        ctx.close()
    again = begin_run(db, [generated_logs], config=make_config(tmp_path), trigger="test")
    try:
        again.run("ingest")
        assert again.prefetch is None  # nothing new: nothing loaded ahead
    finally:
        again.close()


def test_a_run_with_new_files_loads_the_ml_stack_before_scoring(
    generated_logs: Path, tmp_path: Path
) -> None:
    """In a fresh process: by the end of the rules step, scikit-learn and skops are loaded
    (by the thread, since nothing before scoring imports them itself)."""
    script = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "sys.path.insert(0, sys.argv[3])\n"
        "from pipeline_helpers import make_config\n"
        "from dwatch.pipeline import begin_run\n"
        "db = Path(sys.argv[1])\n"
        "ctx = begin_run(db, [sys.argv[2]], config=make_config(db.parent), trigger='test')\n"
        "before = sorted(m for m in ('sklearn', 'skops.io') if m in sys.modules)\n"
        "for name in ('ingest', 'plan', 'validate', 'detect_rules'):\n"
        "    ctx.run(name)\n"
        "ctx.prefetch.wait()\n"
        "after = sorted(m for m in ('sklearn', 'skops.io') if m in sys.modules)\n"
        "ctx.close()\n"
        "print(json.dumps({'before': before, 'after': after, 'failed': ctx.prefetch.failed}))\n"
    )
    env = {**os.environ, "DWATCH_PSEUDONYM_KEY": KEY}
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            str(tmp_path / "store.duckdb"),
            str(generated_logs),
            str(Path(__file__).parent),
        ],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got == {"before": [], "after": ["sklearn", "skops.io"], "failed": {}}
