"""The kept request-chain links (detectors.chain_state) over several runs equal the links
read from every event at once, and the alerts they name equal a from-scratch judgement's.

Randomised: each seed cuts the generated logs at its own points into increments (a stretch
of rows held back and delivered last), judges the first in full and each next one by
:func:`detectors.scoped.judge_new`, comparing the kept links after every run with the links
read from every event then; at the end the store is copied and judged from scratch (alerts,
evidence, subjects and every kept state table). One seed also deletes an old row between
runs (as a quarantine after judging does), which DuckDB may compact away, moving row ids:
the kept links must be rebuilt, and still equal the links read from scratch.
"""

from __future__ import annotations

import random
import shutil
from collections import Counter
from itertools import pairwise
from pathlib import Path
from typing import Any

import duckdb
import pytest

from detectors import chain_state
from detectors.engine import load_rules, run_rules
from detectors.evidence import CHAIN_EVENT_TYPES, CHAIN_ROWS_SELECT
from detectors.scoped import judge_new
from dwatch.policy import load_registry
from dwatch.store import connect, transaction
from tests.rules.test_incremental_judging import _cut, _load, _state


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from dwatch.generate import generate

    folder = tmp_path_factory.mktemp("chain-raw")
    generate(folder, events=1200, seed=29)
    return folder


def _spans(rng: random.Random) -> list[tuple[float, float]]:
    """Three or four increments at random cuts, with a random stretch held back to the end."""
    cuts = sorted(rng.sample(range(30, 95), rng.choice((2, 3))))
    bounds = [0.0, *(c / 100 for c in cuts), 1.0]
    spans = list(pairwise(bounds))
    n = rng.randrange(1, len(spans))  # a stretch of a later increment arrives last
    lo, hi = spans[n]
    held = (lo, lo + (hi - lo) * rng.uniform(0.1, 0.4))
    return [*spans[:n], (held[1], hi), *spans[n + 1 :], held]


def _links(con: duckdb.DuckDBPyConnection, sql: str) -> Counter[tuple[Any, ...]]:
    params = {"chain_types": list(CHAIN_EVENT_TYPES)} if "$chain_types" in sql else None
    return Counter(con.execute(sql, params).fetchall())


def _from_scratch(store: Path, copy: Path) -> tuple[dict[str, Any], Counter[tuple[Any, ...]]]:
    """A copy of the store judged in full now: its alerts and the links read from all events."""
    shutil.copy(store, copy)
    con = connect(copy)
    try:
        with transaction(con):
            run_rules(con, load_registry(), run_id="scratch", rules=load_rules())
        return _state(con), _links(con, "FROM rule_chain_rows")
    finally:
        con.close()
        copy.unlink()


@pytest.mark.parametrize("seed", [17, 41])
def test_kept_links_over_random_increments_equal_a_judgement_from_scratch(
    raw: Path, tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    spans = _spans(rng)
    (tmp_path / "parts").mkdir()
    increments = _cut(raw, tmp_path / "parts", spans)
    store, registry, rules = tmp_path / "store.duckdb", load_registry(), load_rules()
    delete_before = rng.randrange(1, len(increments)) if seed == 41 else None
    con = connect(store)
    try:
        _load(con, increments[0])
        with transaction(con):
            run_rules(con, registry, run_id="run-0", rules=rules)
        for n, increment in enumerate(increments[1:], start=1):
            if n == delete_before:  # an old row leaves the store after it was judged
                con.execute(
                    "DELETE FROM disclosure_events WHERE rowid = (SELECT min(rowid)"
                    " FROM disclosure_events WHERE event_type = 'request')"
                )
                con.execute("CHECKPOINT")
            batches = _load(con, increment)
            with transaction(con):
                result = judge_new(con, registry, rules, run_id=f"run-{n}", batches=batches)
            chains = [line for line in result.revisits if line.startswith("chains: ")]
            expected = "chains: kept links rebuilt" if n == delete_before else "chains: "
            assert chains and chains[0].startswith(expected), (seed, spans, result.revisits)
            if n != delete_before:
                assert "added to the kept links" in chains[0], (seed, spans, chains)
            kept = _links(con, "FROM rule_chain_rows")
            assert kept == _links(con, CHAIN_ROWS_SELECT.format(where="true")), (seed, spans, n)
            assert kept, "the generated logs hold request chains"
        incremental = _state(con)
    finally:
        con.close()
    scratch, scratch_links = _from_scratch(store, tmp_path / "scratch.duckdb")
    assert scratch_links == _links_of(store), (seed, spans)
    if delete_before is None:
        # (an old row deleted is not new data: the pipeline judges all history then)
        for part in ("alerts", "subjects", "events", "kept"):
            assert incremental[part] == scratch[part], (seed, spans, part)


def _links_of(store: Path) -> Counter[tuple[Any, ...]]:
    con = connect(store)
    try:
        return _links(con, "FROM rule_chain_rows")
    finally:
        con.close()


def test_links_rebuilt_without_a_recorded_registry_are_not_trusted(
    raw: Path, tmp_path: Path
) -> None:
    """A judgement that rebuilds the links but records no registry (rules evaluated on
    their own) leaves them untrusted: the next run rebuilds them and says why."""
    from detectors.engine import evaluate_rules

    increments = _cut(raw, tmp_path, [(0.0, 0.7), (0.7, 1.0)])
    registry, rules = load_registry(), load_rules()
    con = connect(tmp_path / "store.duckdb")
    try:
        _load(con, increments[0])
        with transaction(con):
            run_rules(con, registry, run_id="run-0", rules=rules)
            evaluate_rules(con, registry, rules)
        family = con.execute(
            "SELECT count(*) FROM rule_state WHERE family = $f", {"f": chain_state.FAMILY}
        ).fetchone()
        assert family == (0,)
        batches = _load(con, increments[1])
        with transaction(con):
            result = judge_new(con, registry, rules, run_id="run-1", batches=batches)
        assert any(
            line == "chains: kept links rebuilt from all history: no state kept yet"
            for line in result.revisits
        ), result.revisits
        assert _links(con, "FROM rule_chain_rows") == _links(
            con, CHAIN_ROWS_SELECT.format(where="true")
        )
    finally:
        con.close()
