"""Old batches checked again for open coverage gaps from what their last check kept give the
verdicts of reading them whole (dwatch.validate.revisits), on random logs."""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import dwatch.validate.revisits as revisits
from dwatch.validate import ValidationConfig, ValidationReport, validate_batches
from tests.validate.conftest import T0, event_row
from tests.validate.test_validate_state import Store

RESULTS = (
    "SELECT coalesce(ingest_run_id, '-'), coalesce(source_system, '-'), suite, expectation,"
    " scope, success, element_count, unexpected_count, window_start, window_end,"
    " observed::VARCHAR, message FROM validation_results ORDER BY ALL"
)
QUARANTINE = (
    "SELECT ingest_run_id, source_row, reason_code, field, message, raw_row, stage"
    " FROM quarantine ORDER BY ALL"
)
COUNTS = "SELECT run_id, rows_loaded, rows_quarantined FROM ingest_runs ORDER BY ALL"
GAPS = (
    "SELECT source_system, window_start, window_end, expectation, message, ingest_run_id"
    " FROM coverage_gaps ORDER BY ALL"
)
QUICK = "checked again from what its last check kept"


def _log(rng: random.Random, source: str) -> list[dict[str, Any]]:
    """A whole log: numbered from 1, an event every few hours, with one true silence."""
    rows, at = [], T0 - timedelta(days=70, hours=rng.randint(0, 48))
    pause = rng.randint(20, 100)
    for n in range(1, rng.randint(150, 260)):
        at += timedelta(hours=rng.choice([1, 2, 3, 5, 7]), minutes=rng.randint(0, 59))
        if n == pause:
            at += timedelta(days=rng.choice([6, 9, 12]))
        rows.append(event_row(n, source_system=source, occurred_at=at, event_id=f"{source}-{n}"))
    return rows


def _withheld(rng: random.Random, log: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Blocks of consecutive events left out of the first batch (sequence gaps, and a
    silence where a block spans days), delivered later in pieces."""
    blocks = []
    for _ in range(rng.randint(1, 3)):
        start = rng.randint(5, len(log) - 60)
        blocks.append(log[start : start + rng.choice([1, 3, 40, 70])])
    return blocks


def _scenario(seed: int) -> list[list[list[dict[str, Any]]]]:
    """Runs, each a list of batches: first every log's history (less what is withheld),
    then late pieces of what was withheld (some numbers reused with other times, some rows
    failing a row check) and each log's next events."""
    rng = random.Random(seed)
    sources = [f"log-{c}" for c in "abcd"[: rng.randint(2, 4)]]
    logs = {s: _log(rng, s) for s in sources}
    held = {s: _withheld(rng, logs[s]) for s in sources}
    out = {id(r) for blocks in held.values() for b in blocks for r in b}
    history = [[r for r in logs[s][:-40] if id(r) not in out] for s in sources]
    pieces = [r for blocks in held.values() for b in blocks for r in b]
    rng.shuffle(pieces)
    tails = {s: logs[s][-40:] for s in sources}
    runs: list[list[list[dict[str, Any]]]] = [history]
    for k in range(3):
        batch: list[list[dict[str, Any]]] = []
        late = [dict(r) for r in pieces[k::3] if rng.random() < 0.7]
        for r in late:
            roll = rng.random()
            if roll < 0.15:  # a number used again, later (its first copy stays)
                r["occurred_at"] += timedelta(minutes=rng.randint(1, 300))
                r["event_id"] += "-again"
            elif roll < 0.3 and k == 1:  # fails a row check: quarantined, its number counts
                r["record_count"] = 0
        if late:
            batch.append(late)
        for s in sources:
            if rng.random() < 0.6:
                batch.append(tails[s][k * 13 : (k + 1) * 13])
        runs.append([b for b in batch if b])
    return runs


def _play(
    path: Path, runs: list[list[list[dict[str, Any]]]], configs: list[ValidationConfig], seed: int
) -> tuple[Store, list[ValidationReport]]:
    store, reports, rng = Store(path), [], random.Random(seed)
    for run, config in zip(runs, configs, strict=True):
        if rng.random() < 0.2:  # a store from before anything was kept
            store.con.execute(f"DELETE FROM {revisits.KEPT}")
        for batch in run:
            store.insert(batch)
        reports.append(validate_batches(store.con, config=config, build_docs=False))
    return store, reports


def _quick_changes(reports: list[ValidationReport]) -> tuple[int, int]:
    """Revisits that read only what was kept, and how many of them changed the batch's gaps."""
    quick = changed = 0
    before: dict[str, set[Any]] = {}
    for r in reports:
        notes = " ".join(r.state_notes)
        for b in r.batches:
            gaps = {(o.expectation, o.window_start, o.window_end) for o in b.coverage_gaps}
            if b.revisit_reason and f"old batch {b.ingest_run_id} {QUICK}" in notes:
                quick += 1
                changed += gaps != before.get(b.ingest_run_id or "")
            before[b.ingest_run_id or ""] = gaps
    return quick, changed


@pytest.mark.parametrize("seed", range(6))
def test_revisits_from_kept_equal_reading_batches_whole(
    seed: int, tmp_path: Path, vconfig: ValidationConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = _scenario(seed)
    rng = random.Random(seed)
    # The silence window changes between runs now and then (a shorter one can make a
    # stretch that passed fail: those batches are read whole).
    configs = [
        vconfig.with_overrides(silence_window=timedelta(days=rng.choice([7, 7, 7, 5, 9])))
        for _ in runs
    ]
    kept, reports = _play(tmp_path / "kept.duckdb", runs, configs, seed)
    monkeypatch.setattr(revisits, "split", lambda con, again, *_: ([], again))
    whole, _ = _play(tmp_path / "whole.duckdb", runs, configs, seed)
    for sql in (RESULTS, QUARANTINE, COUNTS, GAPS):
        assert kept.con.execute(sql).fetchall() == whole.con.execute(sql).fetchall(), sql
    # Not vacuous: old batches were checked from what was kept, and gaps closed or split.
    quick, changed = _quick_changes(reports)
    assert quick >= 2, quick
    assert changed >= 1, changed


def test_coverage_gaps_view_reads_only_files_with_unnumbered_rows(
    con: Any, insert_batch: Any
) -> None:
    """Migration 0036's coverage_gaps gives the rows of 0013's (which read every event)."""
    text = (
        Path(__file__).parents[2] / "dwatch/migrations/0013_quarantine_canonical.sql"
    ).read_text()
    start = text.index("CREATE OR REPLACE VIEW coverage_gaps AS")
    old = text[start : text.index(";", start)].replace("VIEW coverage_gaps", "VIEW gaps_0013")
    con.execute(old)
    first = insert_batch([event_row(i, source_system="log-a") for i in range(1, 6)])
    insert_batch([event_row(i, source_system="log-b", sequence_no=None) for i in range(7, 9)])
    insert_batch([event_row(i, source_system="log-c") for i in range(10, 12)])
    for n, run_id in enumerate([first, first]):
        con.execute(
            "INSERT INTO quarantine (ingest_run_id, source_file, source_row, kind, reason_code,"
            " message, raw_row, stage) VALUES (?, 'f.csv', ?, 'events', 'bad_value', 'x',"
            ' \'{"source_system": "log-a", "sequence_no": "?"}\', \'ingest\')',
            [run_id, 90 + n],
        )
    sql = "SELECT * FROM {} ORDER BY ALL"
    rows = con.execute(sql.format("coverage_gaps")).fetchall()
    assert rows == con.execute(sql.format("gaps_0013")).fetchall()
    kinds = {r[3] for r in rows}
    assert {"quarantined_unnumbered", "sequence_not_checkable"} <= kinds, rows


def test_revisit_reads_whole_when_new_rows_moved_below_their_bound(
    tmp_path: Path, vconfig: ValidationConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """New rows no longer all above the run's rowid bound (rows renumbered by a compacting
    checkpoint): the old batches are read whole, with the same verdicts."""
    runs = _scenario(1)
    monkeypatch.setattr(revisits, "_new_rows_in_place", lambda *_: False)
    moved, reports = _play(tmp_path / "moved.duckdb", runs, [vconfig] * len(runs), 1)
    assert not any(QUICK in n for r in reports for n in r.state_notes)
    assert any(n.endswith("read whole") for r in reports for n in r.state_notes)
    monkeypatch.undo()
    kept, reports = _play(tmp_path / "kept.duckdb", runs, [vconfig] * len(runs), 1)
    assert any(QUICK in n for r in reports for n in r.state_notes)
    for sql in (RESULTS, QUARANTINE, COUNTS, GAPS):
        assert kept.con.execute(sql).fetchall() == moved.con.execute(sql).fetchall(), sql
