"""The per-source validation state gives exactly the verdicts of reading every source's history."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb

from dwatch.schema import load_schema
from dwatch.store import connect
from dwatch.validate import ValidationConfig, ValidationReport, validate_batches
from dwatch.validate.state import update
from tests.validate.conftest import T0, event_row

RESULTS = (
    "SELECT coalesce(ingest_run_id, '-'), coalesce(source_system, '-'), suite, expectation,"
    " success, unexpected_count, window_start, window_end, observed, message"
    " FROM validation_results ORDER BY ALL"
)
STATE = (
    "SELECT source_system, first_at, last_at, timed_events, top_gaps, last_seq, last_seq_at"
    " FROM validation_source_state ORDER BY source_system"
)


def _at(hours: float) -> Any:
    return T0 + timedelta(hours=hours)


def _rows(source: str, hours: list[float], first_no: int = 1) -> list[dict[str, Any]]:
    return [
        event_row(
            first_no + i,
            source_system=source,
            occurred_at=_at(h),
            event_id=f"{source}-{h:g}",
        )
        for i, h in enumerate(hours)
    ]


# A steady hourly log with a few longer pauses (its quiet spells), a late log, a log that
# stops after the first increment while the others go on.
LATER = (
    300.0  # hours: these logs start later (the store's newest events stay ahead of stopping-log)
)
STEADY = [float(h) for h in range(0, 150)] + [170.0, 190.0, 215.0, 240.0, 241.0, 242.0]
FIRST = {
    "steady-log": STEADY,
    "late-log": [float(h) for h in range(0, 243, 2)],
    "stopping-log": [float(h) for h in range(0, 240, 3)],
    "renumbered-log": [LATER + h for h in range(0, 101)],
    # 25 quiet spells of 5 h, then hourly: a late event in its last hours reads its tail.
    "jittery-log": [LATER + 5 * i for i in range(26)] + [LATER + h for h in range(126, 201)],
    # Three gaps only (all of them kept): a late event splits one of them.
    "short-log": [LATER + h for h in (0, 10, 20, 30)],
    # A silence inside its first batch (an open gap): new rows of it check that batch again.
    "gappy-log": [LATER + h for h in [*range(0, 51), *range(300, 341)]],
}
SILENCE = 240.0  # ten days, beyond the seven-day window and the log's own quiet spells
SECOND = [
    # A silence straddling the increments' boundary.
    ("steady-log", [242.0 + SILENCE + h for h in range(0, 40)], 300),
    # Two events inside its history (a late file) and one after it.
    ("late-log", [101.0, 131.5, 500.0], 400),
    ("new-log", [float(h) for h in range(450, 550)], 1),
    ("steady-log", [242.0 + SILENCE + 40 + h for h in range(0, 30)], 340),
    # Later in time, but numbered from 50 again (its first increment ran to 101).
    ("renumbered-log", [LATER + h for h in range(101, 111)], 50),
    ("jittery-log", [LATER + h for h in [199.5, *range(201, 211)]], 300),
    ("short-log", [LATER + 25, LATER + 40], 10),
    ("gappy-log", [LATER + h for h in range(341, 351)], 93),
]


class Store:
    """A store filled batch by batch with run ids of its own (the same in every store)."""

    def __init__(self, path: Path) -> None:
        self.con = connect(path)
        self.n = 0

    def insert(self, rows: list[dict[str, Any]]) -> str:
        self.n += 1
        run_id = f"ing_state_{self.n:03d}"
        table = load_schema().events
        self.con.execute(
            "INSERT INTO ingest_runs (run_id, source_file, kind, rows_read, rows_loaded,"
            " rows_quarantined, started_at, finished_at, status)"
            " VALUES (?, ?, 'events', ?, ?, 0, ?, ?, 'loaded')",
            [run_id, f"/logs/{run_id}.csv", len(rows), len(rows), _at(self.n), _at(self.n)],
        )
        names = table.names
        self.con.executemany(
            f"INSERT INTO {table.name} ({', '.join(names)}, ingest_run_id, source_row)"
            f" VALUES ({', '.join('?' for _ in names)}, ?, ?)",
            [[r.get(c) for c in names] + [run_id, i] for i, r in enumerate(rows, 1)],
        )
        return run_id


def _two_increments(
    path: Path, config: ValidationConfig, *, use_state: bool
) -> tuple[Store, list[ValidationReport]]:
    store = Store(path)
    reports = []
    for source, hours in FIRST.items():
        store.insert(_rows(source, hours))
    reports.append(
        validate_batches(store.con, config=config, build_docs=False, use_state=use_state)
    )
    for source, hours, first_no in SECOND:
        store.insert(_rows(source, hours, first_no))
    reports.append(
        validate_batches(store.con, config=config, build_docs=False, use_state=use_state)
    )
    return store, reports


def _results(con: duckdb.DuckDBPyConnection) -> list[tuple[Any, ...]]:
    return con.execute(RESULTS).fetchall()


def test_state_verdicts_equal_history_verdicts(tmp_path: Path, vconfig: ValidationConfig) -> None:
    by_state, reports = _two_increments(tmp_path / "state.duckdb", vconfig, use_state=True)
    by_history, _ = _two_increments(tmp_path / "history.duckdb", vconfig, use_state=False)
    found = _results(by_state.con)
    assert found == _results(by_history.con)
    failed = {(r[1], r[3]) for r in found if not r[4]}
    # The scenario shows what it is for: the straddling silence, the trailing one.
    assert ("steady-log", "expect_source_not_silent(occurred_at)") in failed
    assert ("stopping-log", "expect_source_not_silent_until_now(occurred_at)") in failed
    # The second run read the state, and history only for the late log, saying why.
    notes = reports[1].state_notes
    assert any(n.startswith("late-log: history read (event out of order") for n in notes), notes
    assert any(n.startswith("renumbered-log: history read (number out of order") for n in notes), (
        notes
    )
    assert not any(n.startswith(("steady-log", "new-log")) for n in notes), notes
    # The old batch with open gaps is checked again from what its check kept, without
    # reading its source's history.
    assert not any(n.startswith("gappy-log") for n in notes), notes
    gappy = [b for b in reports[1].batches if b.revisit_reason and "gappy-log" in b.sources]
    assert gappy, reports[1].batches
    assert f"old batch {gappy[0].ingest_run_id} checked again from what its last check kept" in (
        " ".join(notes)
    )
    for source in ("jittery-log", "short-log"):
        assert any(n.startswith(f"{source}: stored events from") for n in notes), notes
    # The sequence gap straddling the increments, reported by the new batch.
    assert ("steady-log", "expect_sequence_no_without_gaps(sequence_no)") in failed
    # Reading history leaves no state behind.
    assert by_history.con.execute("SELECT count(*) FROM validation_source_state").fetchone() == (0,)


def test_state_kept_by_increments_equals_state_rebuilt(
    tmp_path: Path, vconfig: ValidationConfig
) -> None:
    store, _ = _two_increments(tmp_path / "s.duckdb", vconfig, use_state=True)
    kept = store.con.execute(STATE).fetchall()
    assert {r[0] for r in kept} == set(FIRST) | {"new-log"}
    from dwatch.validate.state import StatePlan

    update(store.con, StatePlan(False), "rebuild")
    assert store.con.execute(STATE).fetchall() == kept
    steady = next(r for r in kept if r[0] == "steady-log")
    # Every event; the straddling silence is the longest gap, from the first increment's end.
    assert steady[3] == len(STEADY) + 70
    assert steady[4][0] == SILENCE * 3600.0
    assert len(steady[4]) == 20
    assert steady[5] == 369  # its highest sequence number, from the last batch


def test_wrong_state_changes_verdicts(tmp_path: Path, vconfig: ValidationConfig) -> None:
    """The checks do read the state: a state claiming long quiet spells lets the straddling
    silence pass (so the equality above is not vacuous)."""
    store = Store(tmp_path / "s.duckdb")
    for source, hours in FIRST.items():
        store.insert(_rows(source, hours))
    validate_batches(store.con, config=vconfig, build_docs=False)
    store.con.execute(
        "UPDATE validation_source_state SET top_gaps = list_transform(top_gaps, lambda g: g * 1000)"
        " WHERE source_system = 'steady-log'"
    )
    for source, hours, first_no in SECOND:
        store.insert(_rows(source, hours, first_no))
    validate_batches(store.con, config=vconfig, build_docs=False)
    silent = store.con.execute(
        "SELECT count(*) FROM validation_results WHERE source_system = 'steady-log'"
        " AND expectation = 'expect_source_not_silent(occurred_at)' AND NOT success"
    ).fetchone()
    assert silent == (0,)


def test_state_missing_or_stale_is_rebuilt_with_the_reason(
    tmp_path: Path, vconfig: ValidationConfig
) -> None:
    store = Store(tmp_path / "s.duckdb")
    for source, hours in FIRST.items():
        store.insert(_rows(source, hours))
    validate_batches(store.con, config=vconfig, build_docs=False, use_state=False)
    # A store from before the state was kept: the next run reads history and builds it.
    store.insert(_rows("steady-log", [400.0, 401.0], 500))
    report = validate_batches(store.con, config=vconfig, build_docs=False)
    assert any("no state yet" in n for n in report.state_notes), report.state_notes
    built = store.con.execute(STATE).fetchall()
    assert {r[0] for r in built} == set(FIRST)
    # Rows removed outside validation: the state no longer describes the store.
    store.con.execute("DELETE FROM disclosure_events WHERE event_id = 'late-log-4'")
    store.insert(_rows("steady-log", [402.0], 600))
    report = validate_batches(store.con, config=vconfig, build_docs=False)
    assert any("rebuilt" in n and "events where" in n for n in report.state_notes)
    late = next(r for r in store.con.execute(STATE).fetchall() if r[0] == "late-log")
    assert late[3] == len(FIRST["late-log"]) - 1
