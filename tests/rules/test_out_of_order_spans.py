"""``out_of_order_timestamps`` finds the entries behind each start of a log through spans
of numbers (each entry matched to the one span it lies in), not by pairing every entry
with every start: on long logs with habits, replayed runs, isolated entries days late,
reused numbers and numbers far apart, its alerts are those the plain pairing gives."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pytest

from detectors.engine import Rule, RuleCase, evaluate_rules, load_case, load_rules
from dwatch.policy import load_registry
from dwatch.store import connect

START = datetime(2025, 3, 1, tzinfo=UTC)
RULE = next(r for r in load_rules() if r.id == "out_of_order_timestamps")
REGISTRY = load_registry()


def _plain(rule: Rule) -> Rule:
    """The rule pairing every entry of a log with every start of it."""
    query = rule.query or ""
    assert query.count("FROM near e") == 1
    return rule.model_copy(
        update={"query": query.replace("FROM near e", "FROM disclosure_events e")}
    )


def _log(
    rng: np.random.Generator, log: str, numbers: list[int], runs: list[int]
) -> list[dict[str, Any]]:
    """Entries 10 minutes apart, 1 in 25 minutes late (the log's habit), 1 in 400 days
    late, and from each of ``runs`` 6 entries replayed 30 hours behind."""
    times = [START + timedelta(minutes=10 * i) for i in range(len(numbers))]
    for i in range(1, len(times) - 1):
        draw = rng.random()
        if draw < 1 / 25:
            times[i] -= timedelta(minutes=float(rng.uniform(2, 15)))
        elif draw < 1 / 25 + 1 / 400:
            times[i] -= timedelta(days=float(rng.uniform(3.5, 6)))
    for at in runs:
        base = times[at - 1] - timedelta(hours=30)
        for j in range(6):
            times[at + j] = base + timedelta(minutes=j)
    return [
        {
            "event_id": f"{log}-{i}",
            "source_system": log,
            "sequence_no": n,
            "occurred_at": t.isoformat(),
        }
        for i, (n, t) in enumerate(zip(numbers, times, strict=True))
    ]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    rng = np.random.default_rng(18)
    plain = list(range(1, 901))
    far = list(range(-300, 300)) + [10**12 + n for n in range(300)]  # numbers 10^12 apart
    reused = list(range(1, 601))
    reused[400] = reused[399]  # one number held by two entries
    events = (
        _log(rng, "log-a", plain, runs=[200, 650, 890])  # the last run ends the log
        + _log(rng, "log-b", far, runs=[250, 310, 700])
        + _log(rng, "log-c", reused, runs=[100, 398])
    )
    con = connect(tmp_path / "store.duckdb")
    load_case(con, RuleCase(name="long logs", alerts=0, events=events))
    yield con
    con.close()


def _alerts(con: duckdb.DuckDBPyConnection, rule: Rule) -> list[Any]:
    evaluate_rules(con, REGISTRY, [rule])
    return con.execute(
        "SELECT alert_id, event_count, list_sort(event_ids), window_start, window_end,"
        " CAST(evidence AS VARCHAR), explanation FROM dw_candidates ORDER BY alert_id"
    ).fetchall()


def test_entries_behind_are_found_through_spans_as_by_pairing_every_entry(
    store: duckdb.DuckDBPyConnection,
) -> None:
    spans = _alerts(store, RULE)
    assert spans == _alerts(store, _plain(RULE))
    logs = {alert[0] for alert in spans}
    assert len(spans) >= 3 and len(logs) >= 3
    found = {e for alert in spans for e in alert[2]}
    # a run ending a log, runs among numbers 10^12 apart, a run over a reused number
    assert {"log-a-895", "log-b-312", "log-b-705", "log-c-400"} <= found
