"""The alerts' evidence rows kept between reports (dwatch.report.evidence_rows) are always
the rows a search of every event would find now, row id included, whatever changed in
between: alerts added, changed or gone, events appended, deleted or renumbered by a
compacting checkpoint. And a report built on kept rows is the report built from scratch."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import duckdb
import pytest

from dwatch.report import evidence_rows
from dwatch.report.cases import alert_rows
from dwatch.report.citations import CitationDirectory
from dwatch.report.render import build_report

# What every report found before rows were kept: each alert's listed events over all rows.
_EVERY_EVENT = """
SELECT a.alert_id, e.source_system, e.event_id, e.occurred_at, e.rowid AS row_id,
       e.data_elements
FROM alerts a, unnest(a.event_ids) AS u(event_id)
JOIN disclosure_events e ON e.event_id = u.event_id
 AND (a.source_system IS NULL OR e.source_system = a.source_system)
"""


def _sorted(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return sorted(rows, key=repr)


def _kept(con: duckdb.DuckDBPyConnection) -> list[tuple[Any, ...]]:
    return _sorted(con.execute(f"SELECT * FROM {alert_rows(con)}").fetchall())


def _searched(con: duckdb.DuckDBPyConnection) -> list[tuple[Any, ...]]:
    return _sorted(con.execute(_EVERY_EVENT).fetchall())


def _add_event(con: duckdb.DuckDBPyConnection, source: str, event_id: str, element: str) -> None:
    con.execute(
        "INSERT INTO disclosure_events (event_id, source_system, occurred_at, event_type,"
        " disclosing_agency, recipient_agency, actor_id, data_elements, record_count)"
        " VALUES (?, ?, TIMESTAMPTZ '2025-09-01 10:00:00+00', 'disclosure', 'IRS', 'XX-LATE',"
        " 'late.actor', [?], 1)",
        [event_id, source, element],
    )


def _an_alert(con: duckdb.DuckDBPyConnection) -> tuple[str, str | None, list[str]]:
    row = con.execute(
        "SELECT alert_id, source_system, event_ids FROM alerts"
        " WHERE len(event_ids) > 0 ORDER BY alert_id LIMIT 1"
    ).fetchone()
    assert row
    return row[0], row[1], list(row[2])


def test_the_first_search_finds_what_a_search_of_every_event_finds(
    con: duckdb.DuckDBPyConnection, seeded: dict[str, Any]
) -> None:
    kept = _kept(con)
    assert kept and kept == _searched(con)
    assert _kept(con) == kept  # and the next report, on kept rows, the same


def test_rows_seen_are_not_read_again(
    con: duckdb.DuckDBPyConnection, seeded: dict[str, Any]
) -> None:
    """What the kept rows save: a report on an unchanged store does not search old rows.
    (Nothing updates an event's time in place: a changed one shows where rows came from.)"""
    _kept(con)
    alert_id, _source, event_ids = _an_alert(con)
    con.execute(
        "UPDATE disclosure_events SET occurred_at = TIMESTAMPTZ '1999-01-01 00:00:00+00'"
        " WHERE event_id = ?",
        [event_ids[0]],
    )
    kept = con.execute(
        f"SELECT occurred_at FROM {alert_rows(con)} WHERE alert_id = ? AND event_id = ?",
        [alert_id, event_ids[0]],
    ).fetchall()
    assert kept and all(r[0].year != 1999 for r in kept)


def test_an_event_rewritten_as_a_new_row_is_read_again(
    con: duckdb.DuckDBPyConnection, seeded: dict[str, Any]
) -> None:
    """DuckDB updates a list column by deleting the row and inserting it anew: a row the
    kept rows saw is gone, so every alert is searched again."""
    _kept(con)
    alert_id, _source, event_ids = _an_alert(con)
    con.execute(
        "UPDATE disclosure_events SET data_elements = ['marker'] WHERE event_id = ?",
        [event_ids[0]],
    )
    kept = _kept(con)
    assert kept == _searched(con)
    assert any(r[0] == alert_id and r[5] == ["marker"] for r in kept)


def test_a_changed_or_new_or_removed_alert_is_searched_again(
    con: duckdb.DuckDBPyConnection, seeded: dict[str, Any]
) -> None:
    _kept(con)
    alert_id, source, event_ids = _an_alert(con)
    other = con.execute(
        "SELECT event_id FROM disclosure_events WHERE source_system IS NOT DISTINCT FROM"
        " coalesce(?, source_system) AND event_id <> ALL(?::VARCHAR[]) ORDER BY event_id LIMIT 1",
        [source, event_ids],
    ).fetchone()
    assert other
    con.execute(
        "UPDATE alerts SET event_ids = list_append(event_ids, ?) WHERE alert_id = ?",
        [other[0], alert_id],
    )
    assert _kept(con) == _searched(con)
    # a new alert, a copy of another under a new id and with no log named
    con.execute(
        "INSERT INTO alerts SELECT * REPLACE ('al_copy' AS alert_id, NULL AS source_system)"
        " FROM alerts WHERE alert_id = ?",
        [alert_id],
    )
    assert _kept(con) == _searched(con)
    assert any(r[0] == "al_copy" for r in _kept(con))
    con.execute("DELETE FROM alerts WHERE alert_id = ?", [alert_id])
    kept = _kept(con)
    assert kept == _searched(con)
    assert alert_id not in {r[0] for r in kept}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_alerts_changed_together_over_many_logs_find_what_every_event_finds(
    con: duckdb.DuckDBPyConnection, seeded: dict[str, Any], seed: int
) -> None:
    """Changed alerts are searched log by log between the smallest and largest id each log's
    alerts list: lists mixing logs' ids, ids no row holds, NULL ids, empty lists, alerts
    naming no log, one event id in two logs, round after round."""
    import random

    rng = random.Random(seed)
    _add_event(con, "second-log", "EV-SHARED-1", "ssn")  # an id in two logs
    _add_event(con, "ledger-a", "EV-SHARED-1", "name")
    events = con.execute(
        "SELECT DISTINCT source_system, event_id FROM disclosure_events"
    ).fetchall()
    sources = sorted({s for s, _e in events if s is not None})
    ids = sorted({e for _s, e in events})
    _kept(con)
    for _round in range(4):
        alerts = [r[0] for r in con.execute("SELECT alert_id FROM alerts ORDER BY 1").fetchall()]
        for alert_id in rng.sample(alerts, k=max(1, len(alerts) // 2)):
            listed: list[str | None] = rng.sample(ids, k=rng.randint(0, min(6, len(ids))))
            listed += rng.choice([[], ["EV-NOWHERE"], [None], ["EV-SHARED-1"]])
            con.execute(
                "UPDATE alerts SET event_ids = ?::VARCHAR[], source_system = ? WHERE alert_id = ?",
                [listed, rng.choice([None, *sources]), alert_id],
            )
        _add_event(con, rng.choice(sources), f"EV-LATER-{_round}", "address")
        kept = _kept(con)
        assert kept == _searched(con)
    assert any(r[2] == "EV-SHARED-1" for r in kept)


def test_appended_events_are_found_for_old_alerts(
    con: duckdb.DuckDBPyConnection, seeded: dict[str, Any]
) -> None:
    _kept(con)
    alert_id, source, event_ids = _an_alert(con)
    # the same event id delivered again by another log: an alert naming no log lists it too
    con.execute("UPDATE alerts SET source_system = NULL WHERE alert_id = ?", [alert_id])
    _kept(con)
    _add_event(con, f"{source}-replay", event_ids[0], "late_element")
    kept = _kept(con)
    assert kept == _searched(con)
    assert any(r[0] == alert_id and r[5] == ["late_element"] for r in kept)


def test_deleted_events_are_not_shown_from_kept_rows(
    con: duckdb.DuckDBPyConnection, seeded: dict[str, Any]
) -> None:
    _kept(con)
    alert_id, _source, event_ids = _an_alert(con)
    # validation quarantines a row an alert lists, and the next day's rows arrive
    con.execute("DELETE FROM disclosure_events WHERE event_id = ?", [event_ids[0]])
    _add_event(con, "another-log", "EV-NEW-1", "name")
    kept = _kept(con)
    assert kept == _searched(con)
    assert event_ids[0] not in {r[2] for r in kept if r[0] == alert_id}


ROWS = 400_000  # a few row groups


def test_rows_renumbered_by_a_compacting_checkpoint_are_found_again(
    tmp_path: Path, directory: CitationDirectory
) -> None:
    from dwatch.store import connect

    con = connect(tmp_path / "store.duckdb")
    con.execute(
        "INSERT INTO disclosure_events (source_system, event_id, occurred_at, event_type,"
        " disclosing_agency, recipient_agency, actor_id, data_elements, record_count,"
        " source_row) SELECT 'log-a', 'E' || i, TIMESTAMPTZ '2025-03-03 00:00:00+00'"
        " + to_seconds(i), 'disclosure', 'IRS', 'CA-FTB', 'a.1', ['name'], 1, i"
        f" FROM range({ROWS}) t(i)"
    )
    con.execute(
        "INSERT INTO alerts (alert_id, detector_id, detector_kind, detector_version, severity,"
        " entity_type, entity_id, source_system, event_ids, explanation, status,"
        " first_detected_at, last_detected_at)"
        " VALUES ('al_far', 'd', 'rule', '1', 'high', 'event', 'E390000', 'log-a',"
        " ['E390000', 'E390010'], 'x', 'open', now(), now())"
    )
    con.execute("CHECKPOINT")
    before = _kept(con)
    assert [r[4] for r in before] == [390_000, 390_010]
    # 90% of every row group deleted (but the alert's rows), then the last rows of the day
    con.execute("DELETE FROM disclosure_events WHERE source_row % 10 <> 0 AND source_row < 380000")
    _add_event(con, "log-b", "EV-NEW-1", "name")
    con.execute("CHECKPOINT")
    moved = con.execute("SELECT rowid FROM disclosure_events WHERE event_id = 'E390000'").fetchone()
    assert moved and moved[0] < 390_000  # DuckDB gave the rows new row ids
    kept = _kept(con)
    assert kept == _searched(con)
    assert [r[4] for r in kept] == [moved[0], moved[0] + 10]
    con.close()


_GENERATED = re.compile(r"Generated \d{4}-\d\d-\d\d \d\d:\d\d UTC|<title>[^<]*</title>")


def _report_files(out: Path) -> dict[str, str]:
    return {
        p.name: _GENERATED.sub("", p.read_text(encoding="utf-8"))
        for p in sorted(out.iterdir())
        if p.is_file() and not p.name.startswith(".")
    }


def _same_as_from_scratch(
    con: duckdb.DuckDBPyConnection, directory: CitationDirectory, tmp_path: Path, name: str
) -> dict[str, str]:
    kept_out, fresh_out = tmp_path / f"{name}-kept", tmp_path / f"{name}-fresh"
    build_report(con, kept_out, directory=directory)
    con.execute(f"DELETE FROM {evidence_rows.STATE}")  # the next build searches every event
    build_report(con, fresh_out, directory=directory)
    kept, fresh = _report_files(kept_out), _report_files(fresh_out)
    assert kept == fresh
    return kept


def test_reports_on_kept_rows_equal_reports_from_scratch_after_each_change(
    con: duckdb.DuckDBPyConnection,
    seeded: dict[str, Any],
    directory: CitationDirectory,
    tmp_path: Path,
) -> None:
    first = _same_as_from_scratch(con, directory, tmp_path, "first")
    alert_id, source, event_ids = _an_alert(con)
    con.execute("UPDATE alerts SET status = 'retracted' WHERE alert_id = ?", [alert_id])
    retracted = _same_as_from_scratch(con, directory, tmp_path, "status")
    assert retracted != first
    con.execute(
        "INSERT INTO alerts SELECT * REPLACE ('al_added' AS alert_id, 'open' AS status)"
        " FROM alerts WHERE alert_id = ?",
        [alert_id],
    )
    added = _same_as_from_scratch(con, directory, tmp_path, "added")
    assert "al_added" in added["report.html"]
    con.execute("DELETE FROM disclosure_events WHERE event_id = ?", [event_ids[-1]])
    _add_event(con, source or "log", "EV-NEW-2", "name")
    _same_as_from_scratch(con, directory, tmp_path, "deleted")


@pytest.mark.parametrize("policy", ["registry", "masking"])
def test_what_the_rows_are_shown_with_is_never_kept(
    con: duckdb.DuckDBPyConnection,
    seeded: dict[str, Any],
    directory: CitationDirectory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    policy: str,
) -> None:
    """Kept rows are store rows, not output: a new registry version or masking policy shows
    in the next report as in one built from scratch."""
    from dwatch.report import safety

    before = _same_as_from_scratch(con, directory, tmp_path, "before")
    if policy == "registry":
        monkeypatch.setattr(directory, "version", "test-2026.03")
    else:  # a policy that also masks the disclosing agency
        # both forms of the policy (safety masks values with mask_document)
        for name in ("mask_text", "mask_document"):
            policy_now = getattr(safety.masking, name)
            monkeypatch.setattr(
                safety.masking,
                name,
                lambda v, policy=policy_now: policy(v).replace("IRS", "[MASKED]"),
            )
    safety._masked.cache_clear()
    try:
        after = _same_as_from_scratch(con, directory, tmp_path, "after")
    finally:
        safety._masked.cache_clear()
    assert after != before
    assert ("test-2026.03" if policy == "registry" else "[MASKED]") in after["report.html"]
