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
from dwatch.policy import Registry, load_registry, sync_registry, with_entries
from dwatch.store import connect, transaction

KEY = "incremental-judging-test-key-0123456789"
# Where each log is cut: the increments hold rows [0, 55%), [55%, 85%), [85%, 100%).
CUTS = (0.55, 0.85)


# Late rows: the second increment lacks rows [60%, 62%) of every log; they come last.
LATE = ((0.0, 0.55), (0.55, 0.60), (0.62, 0.85), (0.85, 1.0), (0.60, 0.62))


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from dwatch.generate import generate

    folder = tmp_path_factory.mktemp("incr-raw")
    generate(folder, events=3000, seed=13)
    return folder


def _cut(raw: Path, out: Path, spans: list[tuple[float, float]]) -> list[list[Path]]:
    """Every generated file cut by row position into increments (sequence numbers go on);
    increment n holds rows [spans[n][0], spans[n][1]) of each log."""
    increments: list[list[Path]] = [[] for _ in spans]
    for source in sorted(raw.glob("*.csv")):
        with source.open(newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            header = next(reader)
            rows = list(reader)
        for n, (start, end) in enumerate(spans):
            lo, hi = round(len(rows) * start), round(len(rows) * end)
            if lo == hi:
                continue
            target = out / f"{source.stem}.part{n}.csv"
            with target.open("w", newline="", encoding="utf-8") as fh:
                writer = csv.writer(fh)
                writer.writerow(header)
                writer.writerows(rows[lo:hi])
            increments[n].append(target)
    return increments


@pytest.fixture(scope="module")
def parts(raw: Path, tmp_path_factory: pytest.TempPathFactory) -> list[list[Path]]:
    bounds = [0.0, *CUTS, 1.0]
    return _cut(raw, tmp_path_factory.mktemp("incr-parts"), list(pairwise(bounds)))


@pytest.fixture(scope="module")
def late_parts(raw: Path, tmp_path_factory: pytest.TempPathFactory) -> list[list[Path]]:
    return _cut(raw, tmp_path_factory.mktemp("incr-late"), list(LATE))


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
        # the state kept for the next run, as one full judgement derives it (batch ids and
        # row numbers in a file differ between stores loaded apart: compared without them)
        "kept": {
            table: rows(f"SELECT * EXCLUDE ({drop}) FROM {table}" if drop else f"FROM {table}")
            for table, drop in (
                ("rule_log_breaks", "ingest_run_id, source_row, next_run, next_row"),
                ("rule_log_tail", "ingest_run_id, source_row, updated_by_run_id"),
                ("rule_log_behind", "ingest_run_id, source_row, updated_by_run_id"),
                ("rule_recon_sides", ""),
                ("rule_state_batches", "ingest_run_id, updated_by_run_id"),  # counts
                ("rule_log_sizes", "updated_by_run_id"),
                ("rule_chain_rows", ""),
            )
        }
        | {  # receipts and disposals (no use is kept), and how far each holder's log reaches
            "rule_custody_events": rows("FROM rule_custody_events"),
            "rule_custody_reach": rows("FROM rule_custody_reach"),
        },
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


def _judge_increments(
    increments: list[list[Path]], store: Path, registry: Registry | None = None
) -> tuple[dict[str, Any], list[list[str]]]:
    """Load the first increment and judge it in full, then each next one by judge_new."""
    registry, rules = registry or load_registry(), load_rules()
    con = connect(store)
    revisits = []
    try:
        _load(con, increments[0])
        with transaction(con):
            run_rules(con, registry, run_id="run-0", rules=rules)
        for n, increment in enumerate(increments[1:], start=1):
            batches = _load(con, increment)
            with transaction(con):
                result = judge_new(con, registry, rules, run_id=f"run-{n}", batches=batches)
            assert result.revisits[0].startswith(f"new: {len(batches)} batch(es)")
            revisits.append(result.revisits)
        return _state(con), revisits
    finally:
        con.close()


# rules judged from kept state or through reads that the generated logs make fire (the
# 3000-event world raises no out-of-order, late-receipt or retention alert: those states
# are compared whole below, and tests/rules/test_rule_state.py covers log order)
STATE_RULES = ("duplicate_events", "sequence_gap", "transfer_not_received",
               "receipt_without_disclosure", "record_count_mismatch", "use_after_disposal",
               "implausible_attestation", "redisclosure_forbidden")  # fmt: skip


def test_increments_judged_alone_equal_one_full_judgement(
    parts: list[list[Path]], judged_at_once: dict[str, Any], tmp_path: Path
) -> None:
    """Every increment touches every log: the log-order and custody rules are judged from
    the kept state, which must end as one full judgement derives it."""
    state, revisits = _judge_increments(parts, tmp_path / "store.duckdb")
    assert judged_at_once["alerts"], "the generated logs raise rule alerts"
    found = {a[1] for a in judged_at_once["alerts"]}
    assert set(STATE_RULES) <= found, f"stateful rules the data does not exercise: {found}"
    for lines in revisits:
        assert any(line.startswith("custody: ") and "added to the kept rows" in line
                   for line in lines), lines  # fmt: skip
        assert any(line.startswith("log order: ") and "continued" in line for line in lines)
        assert not any("read whole" in line or "rebuilt" in line for line in lines), lines
    for part in ("alerts", "subjects", "events", "kept"):
        assert state[part] == judged_at_once[part], part


def test_late_rows_reopen_their_logs_and_still_equal_one_full_judgement(
    late_parts: list[list[Path]], judged_at_once: dict[str, Any], tmp_path: Path
) -> None:
    """Rows held back and delivered after later ones are numbered before every log's last
    judged entry: each log is read whole again and the result is a full judgement's."""
    state, revisits = _judge_increments(late_parts, tmp_path / "store.duckdb")
    late = [line for line in revisits[-1] if "read whole, a new entry reaching back" in line]
    assert late, revisits[-1]
    for part in ("alerts", "subjects", "events"):
        assert state[part] == judged_at_once[part], part
    for table, rows in judged_at_once["kept"].items():
        if table != "rule_state_batches":  # the files were cut otherwise
            assert state["kept"][table] == rows, table


def test_state_kept_under_another_registry_is_rebuilt(
    parts: list[list[Path]], tmp_path: Path
) -> None:
    """Custody rows hold registry-resolved keys: judged under another registry version,
    the state is rebuilt from all history (said so) and the alerts are a full judgement's."""
    registry, rules = load_registry(), load_rules()
    [recon] = [r.model_dump(by_alias=True) for r in registry.reconciliations][:1]
    other = with_entries(
        registry, {"reconciliations": [{**recon, "match_on": []}]}, label="match on the agencies"
    )
    con = connect(tmp_path / "store.duckdb")
    try:
        _load(con, parts[0])
        with transaction(con):
            run_rules(con, registry, run_id="run-0", rules=rules)
        batches = _load(con, parts[1])
        with transaction(con):
            sync_registry(con, other)
            result = judge_new(con, other, rules, run_id="run-1", batches=batches)
        incremental = _state(con)
        with transaction(con):
            run_rules(con, other, run_id="run-2", rules=rules)
        full = _state(con)
    finally:
        con.close()
    assert any(
        line.startswith("custody: state rebuilt from all history: it was derived under registry")
        for line in result.revisits
    ), result.revisits

    # the rules judged from state are judged whole; other rules' alerts outside what the
    # new batches touch keep the registry they were judged under (a registry change makes
    # the pipeline judge all history: dwatch.pipeline._judge_all_because)
    def from_state(state: dict[str, Any]) -> list[Any]:
        return [a for a in state["alerts"] if a[1] in STATE_RULES]

    assert from_state(full), "the changed reconciliation still raises alerts"
    assert from_state(incremental) == from_state(full)
    assert incremental["kept"] == full["kept"]


def test_scoped_rules_read_only_the_partitions_new_data_touches(
    parts: list[list[Path]], tmp_path: Path
) -> None:
    """A new batch of one log re-reads that log's partitions, not the other logs; the
    log-order rules read no log whole."""
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
    # the log-order rules read the kept state and the new entries, no log whole
    assert any(
        line.startswith("log order: 1 log(s) continued from their last judged entry")
        for line in result.revisits
    ), result.revisits
    assert not [r for r in result.revisits if r.startswith("source_system:")], result.revisits
    assert logs and logs[0] > 1


@pytest.mark.parametrize("rule", load_rules(), ids=lambda r: r.id)
def test_every_rule_says_what_new_data_can_change(rule: Rule) -> None:
    """A rule declares the partition its findings rest on, or says why it needs history."""
    assert (rule.scope is None) != (rule.history is None), (
        f"{rule.id}: give exactly one of scope (see detectors/scoped.py) or history (why)"
    )
    assert rule.reads is None or rule.history is not None, "reads narrows history rules only"
    if rule.scope is not None and rule.scope.touched_by == "findings":
        assert rule.scope.touches is None, "touches narrows touched_by: rows only"
