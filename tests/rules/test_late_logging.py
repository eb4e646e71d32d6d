"""``out_of_order_timestamps`` on logs long enough to have habits (issue 14 item 3): the
tolerance for a row logged behind its neighbours comes from the log's own late rows, and
the finding quotes it. A contiguous run of 30 rows 51 hours behind is found in a log whose
late rows are minutes late and in one that uploads in batches with rows hours late; the
batch-uploading log's own isolated late rows are not findings."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from detectors.engine import RuleCase, evaluate_rules, load_case, load_rules
from dwatch.policy import load_registry
from dwatch.store import connect

START = datetime(2025, 3, 1, tzinfo=UTC)
RULE = next(r for r in load_rules() if r.id == "out_of_order_timestamps")


def _log(
    late_hours: tuple[float, float], run_at: int | None, every: float = 40, rows: int = 1200
) -> list[datetime]:
    """Timestamps in sequence order: entries ``every`` minutes, 1 in 25 logged late (timed
    a random amount in ``late_hours`` before its place in the schedule: a step back, then
    in order again; now and then two neighbours are both late); from ``run_at``, 30 entries
    in a row timed 51 hours behind the entry before them (a replayed batch)."""
    rng = np.random.default_rng(5)
    times = [START + timedelta(minutes=every * i) for i in range(rows)]
    for i in range(1, rows - 1):
        if rng.random() < 1 / 25:
            times[i] -= timedelta(hours=float(rng.uniform(*late_hours)))
    if run_at is not None:
        base = times[run_at - 1] - timedelta(hours=51)
        for j in range(30):
            times[run_at + j] = base + timedelta(minutes=2 * j)
    return times


def _alerts(tmp_path: Path, times: list[datetime]) -> list[dict[str, Any]]:
    case = RuleCase(
        name="long log",
        alerts=0,
        events=[{"event_id": f"E{i}", "occurred_at": t.isoformat()} for i, t in enumerate(times)],
    )
    path = tmp_path / "case.duckdb"
    con = connect(path)
    try:
        load_case(con, case)
        evaluate_rules(con, load_registry(), [RULE])
        cursor = con.execute("SELECT * FROM dw_candidates ORDER BY window_start")
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    finally:
        con.close()
        shutil.rmtree(tmp_path, ignore_errors=True)


def _evidence(alert: dict[str, Any]) -> dict[str, Any]:
    ev = alert["evidence"]
    return json.loads(ev) if isinstance(ev, str) else ev


@pytest.mark.parametrize(
    ("late_hours", "every", "usual_below"),
    [((1 / 60, 10 / 60), 2, 0.2), ((2.0, 20.0), 40, 20.0)],
    ids=["busy log, rows minutes late", "batch-uploading log, rows hours late"],
)
def test_a_run_51_hours_behind_is_found_with_the_learned_tolerance(
    tmp_path: Path, late_hours: tuple[float, float], every: float, usual_below: float
) -> None:
    [alert] = _alerts(tmp_path, _log(late_hours, run_at=900, every=every))
    ev = _evidence(alert)
    assert ev["longest_run"] == 30 and alert["event_count"] == 30
    assert ev["max_hours_behind"] == pytest.approx(51.0, abs=1.0)
    # The tolerance is the log's own: its usual lateness, quoted in the finding.
    assert 0 < ev["usual_late_hours"] <= usual_below
    assert ev["run_tolerance_hours"] == pytest.approx(max(6.0, ev["usual_late_hours"]), abs=0.1)
    assert f"up to {ev['usual_late_hours']} hour(s) late" in alert["explanation"]


def test_isolated_rows_hours_late_on_a_batch_uploading_log_are_its_habit(tmp_path: Path) -> None:
    assert _alerts(tmp_path, _log((2.0, 20.0), run_at=None)) == []


def test_two_neighbours_each_late_on_their_own_are_not_a_batch(tmp_path: Path) -> None:
    """Two adjacent rows of the batch-uploading log both near the top of its own lateness
    (above its 99th percentile, below its single-row tolerance): 1 row in 25 is late, so
    such pairs line up by chance; judged as two late rows, not as a replayed batch."""
    times = _log((2.0, 20.0), run_at=None)
    for i in (600, 601):
        times[i] = START + timedelta(minutes=40 * i) - timedelta(hours=19.9)
    assert _alerts(tmp_path, times) == []
