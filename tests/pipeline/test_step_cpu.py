"""Each step records the CPU the process spent on it beside its wall seconds (runs.steps)."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from pipeline_helpers import make_config

from dwatch.pipeline import RunContext, StepResult, begin_run


def _busy(ctx: RunContext) -> StepResult:
    digest = b""
    for i in range(200_000):
        digest = hashlib.sha256(digest + i.to_bytes(4, "little")).digest()
    return StepResult("ingest", "ok", message=digest.hex()[:8])


def _idle(ctx: RunContext) -> StepResult:
    time.sleep(0.3)
    return StepResult("plan", "ok")


def test_cpu_seconds_are_recorded_per_step(tmp_path: Path) -> None:
    ctx = begin_run(tmp_path / "store.duckdb", [], config=make_config(tmp_path))
    try:
        busy = ctx.run("ingest", _busy)
        idle = ctx.run("plan", _idle)
        steps = ctx.con.execute("SELECT steps FROM runs WHERE run_id = ?", [ctx.run_id]).fetchone()
    finally:
        ctx.close()
    assert busy.cpu_seconds > 0
    # Sleeping costs no CPU: the idle step's CPU is far below its wall time.
    assert idle.seconds >= 0.3 and idle.cpu_seconds < idle.seconds / 2
    recorded = {s["step"]: s for s in json.loads(steps[0])}
    assert recorded["ingest"]["cpu_seconds"] == round(busy.cpu_seconds, 3)
    assert recorded["plan"]["cpu_seconds"] == round(idle.cpu_seconds, 3)
