"""The per-source flow state kept across batches equals the flow state built from scratch,
and the store-wide silence check reads it."""

from __future__ import annotations

from pathlib import Path

from dwatch.store import MIGRATIONS_DIR
from dwatch.validate import ValidationConfig, validate_batches
from dwatch.validate.flow_state import FLOWS, flows_sql
from tests.validate.test_validate_state import FIRST, _rows, _two_increments

KEPT = f"SELECT * FROM {FLOWS} ORDER BY ALL"
SCRATCH = f"SELECT * FROM ({flows_sql('disclosure_events')}) ORDER BY ALL"
STOPPED = (
    "SELECT observed ->> 'judged_against' FROM validation_results"
    " WHERE source_system = 'stopping-log' AND NOT success"
    " AND expectation = 'expect_source_not_silent_until_now(occurred_at)'"
    " AND validated_at = (SELECT max(validated_at) FROM validation_results)"
)


def test_flow_state_kept_by_increments_equals_flow_state_from_scratch(
    tmp_path: Path, vconfig: ValidationConfig
) -> None:
    store, reports = _two_increments(tmp_path / "s.duckdb", vconfig, use_state=True)
    # The second run merged new rows, and recomputed late-log (events inside its history).
    assert any(n.startswith("late-log: history read") for n in reports[1].state_notes)
    kept = store.con.execute(KEPT).fetchall()
    assert kept == store.con.execute(SCRATCH).fetchall()
    assert {r[0] for r in kept} == set(FIRST) | {"new-log"}
    # A third batch: a new flow with uses only (no transfer), a newer transfer of a known
    # flow, an event out of order, and the newest transfer of a flow quarantined by the
    # checks (record_count 0): the kept flow state holds what stays in the store.
    new_flow = {"recipient_agency": "NY-DTF", "event_type": "access"}
    store.insert(
        _rows("steady-log", [600.0, 601.0], 700)
        + [row | new_flow for row in _rows("steady-log", [602.0], 710)]
        + _rows("late-log", [90.5], 800)
        + [row | {"record_count": 0} for row in _rows("new-log", [900.0], 900)]
    )
    report = validate_batches(store.con, config=vconfig, build_docs=False)
    assert report.rows_quarantined == 1
    kept = store.con.execute(KEPT).fetchall()
    assert kept == store.con.execute(SCRATCH).fetchall()
    assert ("steady-log", "IRS", "NY-DTF", None) in kept


def test_store_wide_silence_reads_the_flow_state(tmp_path: Path, vconfig: ValidationConfig) -> None:
    """A kept flow state saying no other log records stopping-log's flows makes it judged
    against every source instead (so the equality above is not vacuous)."""
    verdicts = []
    for name, wrong in (("right", False), ("wrong", True)):
        store, _ = _two_increments(tmp_path / f"{name}.duckdb", vconfig, use_state=True)
        if wrong:
            store.con.execute(f"DELETE FROM {FLOWS} WHERE source_system <> 'stopping-log'")
        # A batch of a log of its own flow: the state is read, not rebuilt.
        other = {"source_system": "extra-log", "recipient_agency": "XX-DOR"}
        store.insert([row | other for row in _rows("extra-log", [500.0, 501.0])])
        validate_batches(store.con, config=vconfig, build_docs=False)
        verdicts.append(store.con.execute(STOPPED).fetchall())
    assert verdicts == [[("its flows in other logs",)], [("any source",)]]


def test_migration_fills_the_flow_state_of_a_store_kept_before_it(
    tmp_path: Path, vconfig: ValidationConfig
) -> None:
    """A store validated before migration 0035 gets the flow state its batches hold."""
    store, _ = _two_increments(tmp_path / "s.duckdb", vconfig, use_state=True)
    kept = store.con.execute(KEPT).fetchall()
    store.con.execute(f"DELETE FROM {FLOWS}")
    sql = (MIGRATIONS_DIR / "0035_validation_flow_state.sql").read_text(encoding="utf-8")
    store.con.execute(sql[sql.index("INSERT INTO") :])
    assert store.con.execute(KEPT).fetchall() == kept
