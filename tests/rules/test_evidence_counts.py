"""A finding's logs and chain sizes (``detectors.evidence.SOURCES_AND_CHAIN``) counted from
distinct (alert, log, event id, type) rows equal the distinct count of (log, event id)
pairs per type it replaced, on random evidence rows: ids repeated across logs, types and
both tables, an id of two types in one log, and NULL logs, ids and types."""

from __future__ import annotations

import random

import duckdb
import pytest

from detectors.evidence import SOURCES_AND_CHAIN

# The form it replaced: a distinct count of (log, event id) pairs per type.
BY_PAIRS = """
SELECT alert_id, list_sort(list(DISTINCT source_system)) AS sources,
       {'requests': count(DISTINCT (source_system, event_id)) FILTER (WHERE event_type = 'request'),
        'disclosures': count(DISTINCT (source_system, event_id)) FILTER (WHERE event_type = 'disclosure'),
        'receipts': count(DISTINCT (source_system, event_id)) FILTER (WHERE event_type = 'receipt')} AS chain
FROM (SELECT alert_id, source_system, event_id, event_type FROM _fe
      UNION ALL SELECT alert_id, source_system, event_id, event_type FROM _chain)
GROUP BY alert_id
"""


def _rows(rng: random.Random, n: int) -> list[tuple[object, ...]]:
    def pick(values: list[object]) -> object:
        return rng.choice(values)

    return [
        (
            pick(["al_a", "al_b", "al_c"]),
            pick(["log-a", "log-b", "log-c", None]),
            pick([f"E{k}" for k in range(12)] + [None]),
            pick(["request", "disclosure", "receipt", "access", None]),
        )
        for _ in range(n)
    ]


@pytest.mark.parametrize("seed", range(8))
def test_counted_from_distinct_rows_as_by_distinct_pairs(seed: int) -> None:
    rng = random.Random(seed)
    con = duckdb.connect()
    for table, n in (("_fe", rng.randrange(0, 40)), ("_chain", rng.randrange(1, 400))):
        con.execute(
            f"CREATE TABLE {table} (alert_id VARCHAR, source_system VARCHAR, event_id VARCHAR,"
            " event_type VARCHAR)"
        )
        con.executemany(f"INSERT INTO {table} VALUES (?, ?, ?, ?)", _rows(rng, n))
    counted = con.execute(f"{SOURCES_AND_CHAIN} ORDER BY alert_id").fetchall()
    assert counted == con.execute(f"{BY_PAIRS} ORDER BY alert_id").fetchall()
    assert any(c[2]["disclosures"] > 1 for c in counted)
