"""Judging only new batches (detectors.scoped) gives the alerts a full re-judgement gives.

The key test: the same generated logs (every scenario, custody cases included) loaded in
several increments, each judged by :func:`detectors.scoped.judge_new`, against one store
loaded at once and judged in full. Alert ids, subjects, events, counts and windows of the
open rule alerts must be identical.
"""

from __future__ import annotations

import csv
from itertools import pairwise
from pathlib import Path
from typing import Any

import duckdb
import pytest

from detectors.engine import Rule, load_rules, run_rules
from detectors.scoped import judge_new
from dwatch.ingest import ingest_paths
from dwatch.policy import load_registry
from dwatch.store import connect, transaction

KEY = "incremental-judging-test-key-0123456789"
# Where each log is cut: the increments hold rows [0, 55%), [55%, 85%), [85%, 100%).
CUTS = (0.55, 0.85)


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> list[list[Path]]:
    """Every generated file cut by row position into increments (sequence numbers go on)."""
    from dwatch.generate import generate

    raw = tmp_path_factory.mktemp("incr-raw")
    generate(raw, events=3000, seed=13)
    out = tmp_path_factory.mktemp("incr-parts")
    increments: list[list[Path]] = [[] for _ in range(len(CUTS) + 1)]
    for source in sorted(raw.glob("*.csv")):
        with source.open(newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            header = next(reader)
            rows = list(reader)
        bounds = [0, *(round(len(rows) * c) for c in CUTS), len(rows)]
        for n, (lo, hi) in enumerate(pairwise(bounds)):
            if lo == hi:
                continue
            target = out / f"{source.stem}.part{n}.csv"
            with target.open("w", newline="", encoding="utf-8") as fh:
                writer = csv.writer(fh)
                writer.writerow(header)
                writer.writerows(rows[lo:hi])
            increments[n].append(target)
    return increments


def _load(con: duckdb.DuckDBPyConnection, files: list[Path]) -> list[str]:
    # one key for both stores (tests may each set their own in the environment)
    results = ingest_paths(con, files, key=KEY.encode())
    return [r.run_id for r in results if r.status == "loaded"]


def _state(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    def rows(sql: str) -> list[tuple[Any, ...]]:
        return sorted(con.execute(sql).fetchall(), key=repr)

    rule_open = "SELECT alert_id FROM alerts WHERE detector_kind = 'rule' AND status = 'open'"
    return {
        "alerts": rows(
            "SELECT alert_id, detector_id, entity_id, event_count, subjects_affected,"
            " records_affected, window_start, window_end, list_sort(event_ids),"
            " list_sort(citations), round(score, 9), coverage_incomplete, registry_version,"
            " explanation, CAST(evidence AS VARCHAR)"
            f" FROM alerts WHERE alert_id IN ({rule_open})"
        ),
        "subjects": rows(
            "SELECT alert_id, taxpayer_ref, reason, request_id, event_id, item_no, source_system"
            f" FROM alert_subjects WHERE alert_id IN ({rule_open})"
        ),
        "events": rows(
            "SELECT alert_id, source_system, event_id, event_type, request_id, role"
            f" FROM alert_events WHERE alert_id IN ({rule_open})"
        ),
    }


@pytest.fixture(scope="module")
def judged_at_once(parts: list[list[Path]], tmp_path_factory: pytest.TempPathFactory) -> dict:
    con = connect(tmp_path_factory.mktemp("at-once") / "store.duckdb")
    try:
        _load(con, [f for increment in parts for f in increment])
        with transaction(con):
            run_rules(con, load_registry(), run_id="full", rules=load_rules())
        return _state(con)
    finally:
        con.close()


def test_increments_judged_alone_equal_one_full_judgement(
    parts: list[list[Path]], judged_at_once: dict[str, Any], tmp_path: Path
) -> None:
    registry, rules = load_registry(), load_rules()
    con = connect(tmp_path / "store.duckdb")
    try:
        _load(con, parts[0])
        with transaction(con):
            run_rules(con, registry, run_id="run-0", rules=rules)
        for n, increment in enumerate(parts[1:], start=1):
            batches = _load(con, increment)
            with transaction(con):
                result = judge_new(con, registry, rules, run_id=f"run-{n}", batches=batches)
            assert result.revisits[0].startswith(f"new: {len(batches)} batch(es)")
        state = _state(con)
    finally:
        con.close()
    assert judged_at_once["alerts"], "the generated logs raise rule alerts"
    for part in ("alerts", "subjects", "events"):
        assert state[part] == judged_at_once[part], part


def test_scoped_rules_read_only_the_partitions_new_data_touches(
    parts: list[list[Path]], tmp_path: Path
) -> None:
    """A new batch of one log re-reads that log's partitions, not the other logs."""
    registry, rules = load_registry(), load_rules()
    con = connect(tmp_path / "store.duckdb")
    try:
        _load(con, [f for increment in parts[:2] for f in increment])
        with transaction(con):
            run_rules(con, registry, run_id="run-0", rules=rules)
        one_log = [f for f in parts[2] if f.name.startswith("events-irs-")][:1]
        batches = _load(con, one_log)
        with transaction(con):
            result = judge_new(con, registry, rules, run_id="run-1", batches=batches)
        logs = con.execute("SELECT count(DISTINCT source_system) FROM disclosure_events").fetchone()
    finally:
        con.close()
    source_line = [r for r in result.revisits if r.startswith("source_system:")]
    assert source_line and source_line[0].startswith("source_system: re-read 1 whole"), (
        result.revisits
    )
    assert logs and logs[0] > 1


@pytest.mark.parametrize("rule", load_rules(), ids=lambda r: r.id)
def test_every_rule_says_what_new_data_can_change(rule: Rule) -> None:
    """A rule declares the partition its findings rest on, or says why it needs history."""
    assert (rule.scope is None) != (rule.history is None), (
        f"{rule.id}: give exactly one of scope (see detectors/scoped.py) or history (why)"
    )
    if rule.scope is not None and rule.scope.touched_by == "findings":
        assert rule.scope.touches is None, "touches narrows touched_by: rows only"
