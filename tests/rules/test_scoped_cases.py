"""Every rule's firing cases, cut into an old batch judged in full and a new batch judged
by :func:`detectors.scoped.judge_new`, give the alerts one full judgement of the whole case
gives. Each rule reads as little of history as it may (a recipient's new rows and its
alerts' events, a holder's uses after a disposal): a cut leaving an old finding event out
of what is read changes an alert's events, counts or window here."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import duckdb
import pytest

from detectors.engine import Rule, RuleCase, load_case, load_rules, run_rules
from detectors.scoped import judge_new
from dwatch.policy import Registry, load_registry, with_entries
from dwatch.store import connect, transaction

RULES = load_rules()
REGISTRY = load_registry()


def _cuts(case: RuleCase) -> list[int]:
    """Where the events are cut: the last event new, and the second half new."""
    n = len(case.events)
    return sorted({k for k in (n - 1, n // 2) if 0 < k < n})


CASES = [
    pytest.param(rule, case, cut, id=f"{rule.id}::{case.name}::cut{cut}")
    for rule in RULES
    for case in rule.cases
    if case.alerts > 0
    for cut in _cuts(case)
]


@pytest.fixture(scope="module")
def migrated_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.duckdb"
    connect(path).close()
    return path


def _batch(case: RuleCase, events: list[dict[str, Any]], batch: str) -> RuleCase:
    """The case's events ``events`` as batch ``batch``, with the items they carry."""
    ids = {e.get("event_id") for e in events}
    items = [
        {**i, "ingest_run_id": batch}
        for i in case.request_items
        if (i.get("event_id") in ids) == (batch == "new")
        or (batch == "old" and i.get("event_id") is None)
    ]
    return case.model_copy(
        update={
            "events": [{**e, "ingest_run_id": batch} for e in events],
            "request_items": items,
            "quarantine": case.quarantine if batch == "old" else [],
        }
    )


def _numbered(case: RuleCase) -> list[dict[str, Any]]:
    """Events with the ids and sequence numbers load_case would give them in one go."""
    seq: dict[str, int] = {}
    out = []
    for n, raw in enumerate(case.events, start=1):
        event = dict(raw)
        event.setdefault("event_id", f"E{n}")
        source = str(event.get("source_system", "case-log"))
        seq[source] = seq.get(source, 0) + 1
        event.setdefault("sequence_no", seq[source])
        out.append(event)
    return out


def _alerts(con: duckdb.DuckDBPyConnection, rule: Rule) -> dict[str, list[Any]]:
    rows = {
        "alerts": "SELECT alert_id, entity_id, event_count, subjects_affected, records_affected,"
        " window_start, window_end, list_sort(event_ids), explanation, citations,"
        " CAST(evidence AS VARCHAR) FROM alerts"
        " WHERE detector_id = $r AND status = 'open'",
        "events": "SELECT ae.alert_id, ae.source_system, ae.event_id, ae.role FROM alert_events ae"
        " JOIN alerts a USING (alert_id) WHERE a.detector_id = $r AND a.status = 'open'",
        "subjects": "SELECT s.alert_id, s.taxpayer_ref, s.event_id FROM alert_subjects s"
        " JOIN alerts a USING (alert_id) WHERE a.detector_id = $r AND a.status = 'open'",
    }
    return {k: sorted(con.execute(q, {"r": rule.id}).fetchall(), key=repr) for k, q in rows.items()}


def _store(migrated: Path, path: Path) -> duckdb.DuckDBPyConnection:
    shutil.copy(migrated, path)
    return connect(path)


@pytest.mark.parametrize(("rule", "case", "cut"), CASES)
def test_a_new_batch_judged_alone_equals_a_full_judgement(
    rule: Rule, case: RuleCase, cut: int, tmp_path: Path, migrated_store: Path
) -> None:
    registry: Registry = (
        with_entries(REGISTRY, case.registry, label=f"case:{case.name}")
        if case.registry
        else REGISTRY
    )
    events = _numbered(case)
    con = _store(migrated_store, tmp_path / "full.duckdb")
    try:
        load_case(con, _batch(case, events[:cut], "old"))
        load_case(con, _batch(case, events[cut:], "new"))
        with transaction(con):
            run_rules(con, registry, run_id="full", rules=[rule])
        full = _alerts(con, rule)
    finally:
        con.close()
    assert full["alerts"], "the case fires when judged whole"

    con = _store(migrated_store, tmp_path / "scoped.duckdb")
    try:
        load_case(con, _batch(case, events[:cut], "old"))
        with transaction(con):
            run_rules(con, registry, run_id="old", rules=[rule])
        load_case(con, _batch(case, events[cut:], "new"))
        with transaction(con):
            judge_new(con, registry, [rule], run_id="new", batches=["new"])
        scoped = _alerts(con, rule)
    finally:
        con.close()
    for part in ("alerts", "events", "subjects"):
        assert scoped[part] == full[part], part
