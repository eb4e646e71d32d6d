"""The entries each log keeps as behind an earlier one (``rule_log_behind``, with the latest
time before them, and each tail's latest time) over several runs equal one ordered pass
over every log; ``out_of_order_timestamps``, which pairs those entries alone with the
starts, judged over those runs equals a judgement from scratch and the plain pairing of
every entry of a log with every start of it.

Randomised: long logs with habits (entries minutes late), isolated entries days late,
replayed runs a day behind, a reused number, numbers far apart and quarantined entries
holding their number are cut into batches at random (each a stretch of every log's order,
so most continue from the log's tail), with a stretch of one log held back and delivered
last (it reopens that log). The first batch is judged in full, each next one by
:func:`detectors.scoped.judge_new`; after every run the kept rows equal one pass and the
alerts a copy judged from scratch, and at the end the plain pairing's. One seed deletes an old row between runs (the ledger
rebuilds the state) and one moves an old row to quarantine.
"""

from __future__ import annotations

import importlib.util
import json
import random
import shutil
import zlib
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pytest

from detectors import rule_state
from detectors.engine import Rule, load_rules, run_rules
from detectors.scoped import judge_new
from dwatch.policy import load_registry
from dwatch.store import connect, transaction
from tests.rules.test_out_of_order_spans import _log, _plain
from tests.rules.test_rule_state import _kept, _one_pass

REGISTRY = load_registry()
RULE = next(r for r in load_rules() if r.id == "out_of_order_timestamps")


def _logs(seed: int) -> list[dict[str, Any]]:
    """Three logs' entries in each log's order (see the module doc)."""
    rng = np.random.default_rng(seed)
    reused = list(range(1, 501))
    reused[300] = reused[299]
    far = list(range(-200, 200)) + [10**12 + n for n in range(200)]
    return (
        _log(rng, "log-a", list(range(1, 701)), runs=[150, 520, 690])
        + _log(rng, "log-b", far, runs=[180, 450])
        + _log(rng, "log-c", reused, runs=[80, 296])
    )


def _batches(rng: random.Random, entries: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Every log cut at the same random shares into stretches, stretch n of each log into
    batch n; a piece of one log's stretch is held back into a last batch."""
    cuts = sorted(rng.sample(range(20, 95), 3))
    bounds = [0.0, *(c / 100 for c in cuts), 1.0]
    batches: list[list[dict[str, Any]]] = [[] for _ in range(len(bounds))]
    logs = sorted({e["source_system"] for e in entries})
    held_log, held_in = rng.choice(logs), rng.randrange(1, len(bounds) - 1)
    for log in logs:
        rows = [e for e in entries if e["source_system"] == log]
        for n in range(len(bounds) - 1):
            part = rows[round(len(rows) * bounds[n]) : round(len(rows) * bounds[n + 1])]
            if log == held_log and n == held_in:
                cut = rng.randrange(1, len(part) // 2)
                batches[-1] += part[:cut]
                part = part[cut:]
            batches[n] += part
    return batches


def _insert(con: duckdb.DuckDBPyConnection, batch: str, rows: list[dict[str, Any]]) -> None:
    """The batch's entries; about one in 60 is quarantined for its time and holds its number."""
    for n, row in enumerate(rows, start=1):
        if zlib.crc32(f"{batch}/{n}".encode()) % 60 == 0:
            raw = {k: str(row[k]) for k in ("source_system", "sequence_no", "event_id")}
            con.execute(
                "INSERT INTO quarantine (ingest_run_id, source_file, source_row, reason_code,"
                " message, raw_row, stage) VALUES (?, 'f.csv', ?, 'bad_timestamp', 'test', ?,"
                " 'ingest')",
                [batch, n, json.dumps(raw)],
            )
            continue
        con.execute(
            "INSERT INTO disclosure_events (source_system, sequence_no, event_id, occurred_at,"
            " event_type, disclosing_agency, recipient_agency, actor_id, data_elements,"
            " record_count, ingest_run_id, source_row)"
            " VALUES (?, ?, ?, ?::TIMESTAMPTZ, 'access', 'IRS', 'CA-FTB', 'a.1', ['name'], 1,"
            " ?, ?)",
            [row["source_system"], row["sequence_no"], row["event_id"], row["occurred_at"],
             batch, n],
        )  # fmt: skip


def _alerts(con: duckdb.DuckDBPyConnection) -> list[tuple[Any, ...]]:
    return sorted(
        con.execute(
            "SELECT alert_id, event_count, list_sort(event_ids), window_start, window_end,"
            " CAST(evidence AS VARCHAR), explanation FROM alerts"
            " WHERE status = 'open' AND detector_id = $rule",
            {"rule": RULE.id},
        ).fetchall(),
        key=repr,
    )


def _from_scratch(store: Path, copy: Path, rule: Rule) -> list[tuple[Any, ...]]:
    shutil.copy(store, copy)
    con = connect(copy)
    try:
        with transaction(con):
            run_rules(con, REGISTRY, run_id="scratch", rules=[rule])
        return _alerts(con)
    finally:
        con.close()
        copy.unlink()


@pytest.mark.parametrize("seed", [2, 7, 11])
def test_kept_entries_behind_over_random_batches_equal_a_judgement_from_scratch(
    tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    batches = _batches(rng, _logs(seed))
    change_before = rng.randrange(2, len(batches) - 1)  # before the held-back stretch
    store = tmp_path / "store.duckdb"
    con = connect(store)
    reopened = rebuilt = 0
    try:
        _insert(con, "b0", batches[0])
        with transaction(con):
            run_rules(con, REGISTRY, run_id="run-0", rules=[RULE])
        assert _kept(con) == _one_pass(con)
        for n in range(1, len(batches)):
            if n == change_before and seed == 7:  # an old row leaves the store
                con.execute(
                    "DELETE FROM disclosure_events WHERE rowid = (SELECT min(rowid)"
                    " FROM disclosure_events WHERE occurred_at < (SELECT max(latest_before)"
                    " FROM rule_log_behind))"
                )
            if n == change_before and seed == 11:  # an old row quarantined after judging
                con.execute(
                    "INSERT INTO quarantine (ingest_run_id, source_file, source_row,"
                    " reason_code, message, raw_row, stage) SELECT ingest_run_id, 'f.csv',"
                    " source_row, 'bad_timestamp', 'test', json_object('source_system',"
                    " source_system, 'sequence_no', sequence_no, 'event_id', event_id),"
                    " 'validate' FROM disclosure_events WHERE event_id = 'log-b-300'"
                )
                con.execute("DELETE FROM disclosure_events WHERE event_id = 'log-b-300'")
            _insert(con, f"b{n}", batches[n])
            with transaction(con):
                result = judge_new(con, REGISTRY, [RULE], run_id=f"run-{n}", batches=[f"b{n}"])
            reopened += any("read whole" in line for line in result.revisits)
            rebuilt += any(line.startswith("log order: state rebuilt") for line in result.revisits)
            assert _kept(con) == _one_pass(con), (seed, n, result.revisits)
            con.execute("CHECKPOINT")
            incremental = _alerts(con)
            assert incremental == _from_scratch(store, tmp_path / "scratch.duckdb", RULE), (
                seed,
                n,
            )
        kept = con.execute("SELECT count(*) FROM rule_log_behind").fetchone()
        events = con.execute("SELECT count(*) FROM disclosure_events").fetchone()
        assert kept and events and 0 < kept[0] < events[0] // 5, "few entries are kept"
    finally:
        con.close()
    assert incremental == _from_scratch(store, tmp_path / "plain.duckdb", _plain(RULE))
    assert incremental, "the logs raise out-of-order alerts"
    assert reopened, "the held-back stretch reopened its log"
    assert rebuilt == (seed in (7, 11)), "an old row changed after judging rebuilds the state"


def _migration() -> Any:
    path = Path(__file__).resolve().parents[2] / "dwatch/migrations/0057_rule_log_behind.py"
    spec = importlib.util.spec_from_file_location("dwatch_migration_57", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_state_kept_before_entries_behind_were_is_backfilled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Migration 0057 on a store whose log-order state the code before it kept: the entries
    behind and each tail's latest time from the batches that state covers (a batch loaded
    but not judged yet is left to the run judging it), and the state marked as this code's,
    so the next run continues from it and judges as from scratch."""
    migration = _migration()
    monkeypatch.setattr(migration, "_FOR", rule_state.LOG_CODE_VERSION)
    batches = _batches(random.Random(3), _logs(3))
    store = tmp_path / "store.duckdb"
    con = connect(store)
    try:
        _insert(con, "b0", batches[0])
        with transaction(con):
            run_rules(con, REGISTRY, run_id="run-0", rules=[RULE])
        _insert(con, "b1", batches[1])
        with transaction(con):
            judge_new(con, REGISTRY, [RULE], run_id="run-1", batches=["b1"])
        kept = _kept(con)
        assert kept[2], "entries behind are kept"

        def as_before() -> None:
            con.execute("DELETE FROM rule_log_behind")
            con.execute("UPDATE rule_log_tail SET latest_at = NULL")
            con.execute(
                "UPDATE rule_state SET code_version = $v WHERE family = $f",
                {"v": migration._BEFORE, "f": rule_state.LOG_ORDER},
            )

        as_before()
        with transaction(con):
            migration.apply(con)
        assert _kept(con) == kept
        as_before()
        _insert(con, "b2", batches[2])  # loaded, not judged yet: not the state's
        with transaction(con):
            migration.apply(con)
        assert _kept(con) == kept
        with transaction(con):
            result = judge_new(con, REGISTRY, [RULE], run_id="run-2", batches=["b2"])
        assert not any("state rebuilt" in line for line in result.revisits), result.revisits
        assert _kept(con) == _one_pass(con)
        con.execute("CHECKPOINT")
        assert _alerts(con) == _from_scratch(store, tmp_path / "scratch.duckdb", RULE)
        # a state other code kept is left to the next run to rebuild
        con.execute("DELETE FROM rule_log_behind")
        con.execute("UPDATE rule_state SET code_version = 'other' WHERE family = 'log_order'")
        with transaction(con):
            migration.apply(con)
        assert not _kept(con)[2]
        _insert(con, "b3", batches[3])
        with transaction(con):
            result = judge_new(con, REGISTRY, [RULE], run_id="run-3", batches=["b3"])
        assert any("state rebuilt" in line for line in result.revisits), result.revisits
        assert _kept(con) == _one_pass(con)
    finally:
        con.close()
