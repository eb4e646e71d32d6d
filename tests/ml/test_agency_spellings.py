"""Agency time zones from the kept spellings (detectors/ml/spellings.py, migration 0054):
the zones ``registry_recipient_resolution`` gives, without reading every event; kept
across runs, brought up to date by new batches (late events), standing after rows are
removed, following registry changes, and set aside when the ledger does not account for
every event."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from detectors.ml import spellings
from detectors.ml.features import prepare_zones
from dwatch.ingest import ingest_paths
from dwatch.policy import load_registry, sync_registry
from dwatch.store import connect
from tests.pipeline.pipeline_helpers import ledger_rows, write_events

VIEW = (
    'SELECT upper("agency"), "time_zone" FROM registry_recipient_resolution'
    ' WHERE "time_zone" IS NOT NULL AND "agency" IS NOT NULL'
)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    con = connect(tmp_path / "spellings.duckdb")
    sync_registry(con, load_registry())
    yield con
    con.close()


def _load(con: duckdb.DuckDBPyConnection, path: Path, day: str, agencies: list[str]) -> str:
    rows = ledger_rows(path.stem, [(day, 9 + i) for i in range(len(agencies))])
    for row, agency in zip(rows, agencies, strict=True):
        row["recipient_agency"] = agency
    [result] = ingest_paths(con, [write_events(path, rows)])
    return result.run_id


def _zones(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    prepare_zones(con, {})
    return dict(con.execute("SELECT agency, tz FROM _ml_agency_zone").fetchall())


def _view(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
    return sorted(con.execute(VIEW).fetchall())


def test_kept_spellings_resolve_as_the_view(
    store: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    _load(store, tmp_path / "a-log.csv", "2026-02-02", ["US ICE", "ca-ftb", "CA FTB", "ZZ-NONE"])
    kept = spellings.resolved_zones(store)
    assert kept is not None and sorted(kept) == _view(store)
    assert dict(kept)["US ICE"] == "America/New_York"
    assert dict(kept)["CA-FTB"] == "America/Los_Angeles"
    # Kept: one row per spelling and a marker per batch; the next call reads no event.
    listed = store.execute(f"SELECT count(*), count(agency) FROM {spellings.TABLE}").fetchall()
    assert listed == [(6, 5)]  # US ICE, ca-ftb, CA FTB, ZZ-NONE, IRS and the marker
    store.execute("UPDATE disclosure_events SET recipient_agency = 'NOT READ'")
    assert sorted(spellings.resolved_zones(store) or []) == sorted(kept)


def test_a_new_batch_brings_its_spellings(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    _load(store, tmp_path / "a-log.csv", "2026-02-02", ["CA-FTB"])
    before = _zones(store)
    assert "US ICE" not in before
    # A late file: events on an old day, a spelling not seen before.
    late = _load(store, tmp_path / "b-log.csv", "2026-01-05", ["us ice"])
    after = _zones(store)
    assert after["US ICE"] == "America/New_York"
    assert sorted(spellings.resolved_zones(store) or []) == _view(store)
    assert store.execute(
        f"SELECT count(*) FROM {spellings.TABLE} WHERE ingest_run_id = ?", [late]
    ).fetchall() == [(3,)]  # us ice, IRS, marker


def test_removed_rows_leave_spellings_no_event_holds(
    store: duckdb.DuckDBPyConnection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = _load(store, tmp_path / "a-log.csv", "2026-02-02", ["CA-FTB", "US ICE"])
    _zones(store)
    # Validation's quarantine: the row leaves, the ledger count follows.
    store.execute(
        "DELETE FROM disclosure_events WHERE recipient_agency = 'US ICE' AND ingest_run_id = ?",
        [run],
    )
    store.execute("UPDATE ingest_runs SET rows_loaded = rows_loaded - 1 WHERE run_id = ?", [run])
    zones = _zones(store)
    monkeypatch.setattr(spellings, "resolved_zones", lambda _con: None)
    read = _zones(store)  # the view, over the events held now
    assert "US ICE" not in read and zones["US ICE"] == "America/New_York"
    # The zones of the view, and one more for a spelling no event holds.
    assert {a: zones[a] for a in read} == read
    assert set(zones) - set(read) == {"US ICE"}


def test_registry_changes_are_read_each_time(
    store: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    _load(store, tmp_path / "a-log.csv", "2026-02-02", ["CA FTB"])
    assert _zones(store)["CA FTB"] == "America/Los_Angeles"
    store.execute(
        "UPDATE registry_recipients SET time_zone = 'America/Denver' WHERE code = 'CA-FTB'"
    )
    assert _zones(store)["CA FTB"] == "America/Denver"
    assert sorted(spellings.resolved_zones(store) or []) == _view(store)


def test_events_outside_the_ledger_read_the_view(
    store: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    run = _load(store, tmp_path / "a-log.csv", "2026-02-02", ["CA-FTB"])
    _zones(store)
    # A row no ingest batch accounts for (written around ingest): the kept list cannot
    # stand for the events, so the view is read and the spelling is found.
    store.execute(
        "INSERT INTO disclosure_events SELECT * REPLACE ('x1' AS event_id,"
        " 'us ice' AS recipient_agency) FROM disclosure_events WHERE ingest_run_id = ? LIMIT 1",
        [run],
    )
    assert spellings.resolved_zones(store) is None
    assert _zones(store)["US ICE"] == "America/New_York"


def test_a_read_only_store_reads_pending_batches_without_keeping_them(tmp_path: Path) -> None:
    db = tmp_path / "ro.duckdb"
    con = connect(db)
    sync_registry(con, load_registry())
    _load(con, tmp_path / "a-log.csv", "2026-02-02", ["US ICE"])
    expected = _view(con)
    con.close()
    ro = connect(db, read_only=True)
    try:
        assert sorted(spellings.resolved_zones(ro) or []) == expected
        assert ro.execute(f"SELECT count(*) FROM {spellings.TABLE}").fetchall() == [(0,)]
    finally:
        ro.close()
