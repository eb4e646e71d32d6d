"""Custody keeps no use between runs (migration 0050): receipts and disposals, each holder's
reach, and the uses after an emptying read back from the store (detectors.custody_state).

Randomised over several runs: a holder's receipts, disposals and uses under two requests
and an agreement (no request id, its id spelled as logs spell it), failed acts among them,
are cut into batches at random, so a disposal can arrive after the uses it empties and a
use long after its disposal. The first batch is judged in full, each next one by
:func:`detectors.scoped.judge_new`; after every run the alerts, their events, the emptied
uses and the kept custody state equal a copy of the store judged from scratch, and the
alerts and emptied uses equal those of a copy judged with every use held as a row (a store
without the state tables, :func:`detectors.custody.prepare_custody`).
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import duckdb
import pytest

from detectors.engine import load_rules, run_rules
from detectors.scoped import judge_new
from dwatch.policy import load_registry
from dwatch.store import connect, transaction
from tests.rules.test_custody_full import _without_state

REGISTRY = load_registry()
CUSTODY_RULES = [
    r for r in load_rules() if any(name in (r.query or "") for name in ("dw_custody", "dw_recon"))
]
# request ids, else an agreement id as logs write it (folded to a registry agreement)
KEYS = [("F-1", None), ("F-2", None), (None, "irs/ice mou"), (None, "IRS-DHS  MOU")]


def _events(rng: random.Random) -> list[dict[str, Any]]:
    """A holder's custody history: per key a receipt, then uses, a disposal, more uses."""
    events: list[dict[str, Any]] = []
    for request, agreement in KEYS:
        start = rng.uniform(0, 48)
        disposed = start + rng.uniform(1, 72)
        acts = [("receipt", start, 5), ("disposal", disposed, rng.choice((5, 5, 3)))]
        if rng.random() < 0.5:  # a second delivery: emptied only when both are destroyed
            acts.append(("receipt", start + rng.uniform(0, 200), 5))
        acts += [("access", start + rng.uniform(0, 300), 1) for _ in range(rng.randint(3, 9))]
        acts.append(("access", disposed + 1 / 60, 1))  # a minute after the disposal
        for event_type, hour, count in acts:
            events.append(
                {
                    "event_type": event_type,
                    "hour": hour,
                    "record_count": count,
                    "request_id": request,
                    "agreement_id": agreement,
                    "outcome": "failure" if rng.random() < 0.1 else "success",
                    "actor_id": f"ftb.{rng.randint(1, 3)}",
                }
            )
    rng.shuffle(events)
    return events


def _insert(con: duckdb.DuckDBPyConnection, batch: str, events: list[dict[str, Any]]) -> None:
    for n, event in enumerate(events, start=1):
        con.execute(
            "INSERT INTO disclosure_events (event_id, source_system, sequence_no, occurred_at,"
            " event_type, disclosing_agency, recipient_agency, actor_id, request_id,"
            " agreement_id, record_count, outcome, data_elements, ingest_run_id, source_row)"
            " VALUES (?, 'ftb-log', ?, TIMESTAMPTZ '2025-03-01 00:00:00+00'"
            " + to_microseconds(CAST(? * 3600e6 AS BIGINT)), ?, 'IRS', 'CA-FTB', ?, ?, ?, ?, ?,"
            " ['name'], ?, ?)",
            [
                f"{batch}-{n}", event["seq"], event["hour"], event["event_type"],
                event["actor_id"], event["request_id"], event["agreement_id"],
                event["record_count"], event["outcome"], batch, n,
            ],
        )  # fmt: skip


def _state(
    con: duckdb.DuckDBPyConnection, *, kept: bool = True
) -> dict[str, list[tuple[Any, ...]]]:
    def rows(sql: str) -> list[tuple[Any, ...]]:
        return sorted(con.execute(sql).fetchall(), key=repr)

    return {
        "alerts": rows(
            "SELECT alert_id, detector_id, status, entity_id, event_count, window_start,"
            " window_end, list_sort(event_ids), explanation FROM alerts"
            " WHERE status = 'open'"
        ),
        "events": rows(
            "SELECT e.alert_id, e.source_system, e.event_id, e.role FROM alert_events e"
            " JOIN alerts a USING (alert_id) WHERE a.status = 'open'"
        ),
    } | (
        {"custody": rows("FROM rule_custody_events"), "reach": rows("FROM rule_custody_reach")}
        if kept
        else {}
    )


def _from_scratch(store: Path, copy: Path, *, kept: bool) -> dict[str, list[tuple[Any, ...]]]:
    """A copy judged in full now; ``kept``: from the kept state (uses read back from the
    store), else as a store without the state tables (every use held as a row)."""
    shutil.copy(store, copy)
    con = connect(copy)
    try:
        with transaction(con if kept else _without_state(con)):
            run_rules(con, REGISTRY, run_id="scratch", rules=CUSTODY_RULES)
            emptied = sorted(con.execute("FROM dw_custody_emptied").fetchall(), key=repr)
        return {**_state(con, kept=kept), "emptied": emptied}
    finally:
        con.close()
        copy.unlink()


@pytest.mark.parametrize("seed", [3, 5, 8, 13])
def test_custody_over_random_batches_equals_a_judgement_from_scratch(
    tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    events = _events(rng)
    for seq, event in enumerate(sorted(events, key=lambda e: e["hour"]), start=1):
        event["seq"] = seq
    batches: list[list[dict[str, Any]]] = [[], [], []]
    for event in events:
        batches[rng.randrange(3)].append(event)
    store = tmp_path / "store.duckdb"
    con = connect(store)
    emptied_uses = 0
    try:
        _insert(con, "b0", batches[0])
        with transaction(con):
            run_rules(con, REGISTRY, run_id="run-0", rules=CUSTODY_RULES)
        for n in (1, 2):
            _insert(con, f"b{n}", batches[n])
            with transaction(con):
                result = judge_new(
                    con, REGISTRY, CUSTODY_RULES, run_id=f"run-{n}", batches=[f"b{n}"]
                )
            assert any("added to the kept rows" in line for line in result.revisits), (
                result.revisits
            )
            emptied = sorted(con.execute("FROM dw_custody_emptied").fetchall(), key=repr)
            emptied_uses += len(emptied)
            con.execute("CHECKPOINT")
            judged = {**_state(con), "emptied": emptied}
            scratch = _from_scratch(store, tmp_path / "scratch.duckdb", kept=True)
            assert judged == scratch, (seed, n)
            # every use held as a row, as before the state kept none: the same judgement
            held = _from_scratch(store, tmp_path / "held.duckdb", kept=False)
            assert {k: judged[k] for k in held} == held, (seed, n)
        kept = con.execute(
            "SELECT count(*) FILTER (event_type NOT IN ('receipt', 'disposal')),"
            " count(DISTINCT custody_key) FROM rule_custody_events"
        ).fetchone()
        assert kept == (0, len(KEYS) - 1), "no use kept; the two spellings are one agreement"
    finally:
        con.close()
    assert emptied_uses, "some use came after its data was emptied"
