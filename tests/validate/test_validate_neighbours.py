"""The sequence gap and silence checks, found from buckets, equal reading every row in order.

The reference below is the row-by-row formulation the checks had before
(dwatch.validate.neighbours replaced it): each batch's span widened by correlated
lookups to its nearest rows in batches loaded no later, every row in between, and each
row joined with the one before it. Random stores with interleaved batches (whose values
straddle each other's spans), equal load times, duplicate and negative numbers, rows
held in quarantine and long silences are judged both ways.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

import duckdb
import pytest

from dwatch.validate.checks import BatchFacts, for_duckdb
from dwatch.validate.coverage import (
    _LOADED,
    _quiet_spell_cte,
    _rhythm_cte,
    _sequence_gap_check,
    _silence_check,
    _span_cte,
    _window_case,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TABLE = "disclosure_events"
COLUMNS = "ingest_run_id, source_system, window_start, window_end, observed::VARCHAR, message"


def _old_bounds(rows: str, column: str) -> str:
    earlier = "(l.run_at < s.run_at OR (l.run_at = s.run_at AND l.run_id <= s.ingest_run_id))"
    side = (
        f"(SELECT {{agg}}(e.{column}) FROM {rows} e JOIN loaded l ON l.run_id = e.ingest_run_id"
        f" WHERE e.source_system = s.source_system AND e.{column} {{op}} s.{{edge}} AND {earlier})"
    )
    lo = side.format(agg="max", op="<", edge="lo")
    hi = side.format(agg="min", op=">", edge="hi")
    return (
        f" bounds AS (SELECT s.ingest_run_id, s.source_system, coalesce({lo}, s.lo) AS lo,"
        f" coalesce({hi}, s.hi) AS hi FROM span s),"
    )


def _reference_sequence(new_query: str) -> str:
    """The row-by-row query: the new query's ``held`` relation, every row in order."""
    held = new_query[new_query.index(" held AS (") : new_query.index(" numbered AS (")]
    return (
        "WITH b AS (SELECT * FROM __batch__),"
        + _LOADED
        + _span_cte("sequence_no")
        + _old_bounds(TABLE, "sequence_no")
        + held
        + " known AS (SELECT bd.ingest_run_id, e.source_system, e.sequence_no, e.occurred_at"
        f" FROM {TABLE} e JOIN bounds bd ON e.source_system = bd.source_system"
        " AND e.sequence_no BETWEEN bd.lo AND bd.hi"
        " UNION ALL SELECT bd.ingest_run_id, h.source_system, h.sequence_no, h.occurred_at"
        " FROM held h JOIN bounds bd ON h.source_system = bd.source_system"
        " AND h.sequence_no BETWEEN bd.lo AND bd.hi),"
        " found AS (SELECT * FROM (SELECT ingest_run_id, source_system, sequence_no,"
        " occurred_at, lag(sequence_no) OVER w AS prev_no, lag(occurred_at) OVER w AS prev_at"
        " FROM known WINDOW w AS (PARTITION BY ingest_run_id, source_system"
        " ORDER BY sequence_no)) WHERE sequence_no - prev_no > 1)"
        + new_query[new_query.index(" SELECT ingest_run_id, source_system, prev_at AS") :]
    )


def _reference_silence(new_query: str, windows: dict[str, timedelta]) -> str:
    rhythm = _rhythm_cte(TABLE, None, _window_case(windows), 8.0)
    return (
        "WITH b AS (SELECT * FROM __batch__),"
        + _LOADED
        + _span_cte("occurred_at")
        + _old_bounds(TABLE, "occurred_at")
        + rhythm
        + " known AS (SELECT bd.ingest_run_id, e.source_system, e.occurred_at"
        f" FROM {TABLE} e JOIN bounds bd ON e.source_system = bd.source_system"
        " AND e.occurred_at BETWEEN bd.lo AND bd.hi),"
        " every AS (SELECT DISTINCT source_system FROM span),"
        + _quiet_spell_cte("spells", TABLE, "every")
        + ", lim AS (SELECT r.source_system, r.mean_gap_s, s.spell_s,"
        " s.spread_s, s.spreads, s.tail_s, greatest(r.limit_s, coalesce(s.tail_s, 0)) AS limit_s"
        " FROM rhythm r LEFT JOIN spells s USING (source_system)),"
        " found AS (SELECT ingest_run_id, source_system, occurred_at, lag(occurred_at) OVER"
        " (PARTITION BY ingest_run_id, source_system ORDER BY occurred_at) AS prev_at FROM known)"
        + new_query[new_query.index(" SELECT o.ingest_run_id, o.source_system, o.prev_at") :]
    )


def _store(seed: int) -> tuple[duckdb.DuckDBPyConnection, list[str]]:
    """A random store; returns the connection and the batches being validated."""
    rnd = random.Random(seed)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(
        f"CREATE TABLE {TABLE} (ingest_run_id VARCHAR, source_system VARCHAR,"
        " sequence_no BIGINT, occurred_at TIMESTAMPTZ)"
    )
    con.execute("CREATE TABLE ingest_runs (run_id VARCHAR, started_at TIMESTAMPTZ)")
    con.execute("CREATE TABLE quarantine (canonical_row JSON, stage VARCHAR, raw_row VARCHAR)")
    runs = [f"run-{i:02d}" for i in range(rnd.randint(2, 7))]
    for run in runs:  # equal load times now and then: then the run id orders them
        at = None if rnd.random() < 0.1 else T0 + timedelta(hours=rnd.choice([1, 2, 2, 3, 5]))
        con.execute("INSERT INTO ingest_runs VALUES (?, ?)", [run, at])
    rows: list[tuple[str, str | None, int | None, datetime | None]] = []
    for source in ("log-a", "log-b", "log-c")[: rnd.randint(1, 3)]:
        start = rnd.randint(-300, 300)
        numbers = [n for n in range(start, start + rnd.randint(5, 400)) if rnd.random() > 0.03]
        at, times = T0, []
        for _ in numbers:  # hourly, with silences of days now and then
            at += timedelta(minutes=rnd.choice([30, 60, 61, 90]))
            if rnd.random() < 0.02:
                at += timedelta(days=rnd.randint(2, 40))
            times.append(at)
        if rnd.random() < 0.5:  # batches in number order, else interleaved
            cuts = sorted(rnd.sample(range(len(numbers)), k=min(len(runs) - 1, len(numbers))))
            owner = [sum(i >= c for c in cuts) for i in range(len(numbers))]
        else:
            owner = [rnd.randrange(len(runs)) for _ in numbers]
        for n, t, o in zip(numbers, times, owner, strict=True):
            if rnd.random() < 0.02:  # held in quarantine, not stored
                row = {"source_system": source, "sequence_no": n, "occurred_at": t.isoformat()}
                con.execute(
                    "INSERT INTO quarantine VALUES (?, 'validate', NULL)", [json.dumps(row)]
                )
                continue
            rows.append((runs[o], source, n, t))
            if rnd.random() < 0.01:  # a copy in another batch
                rows.append((rnd.choice(runs), source, n, t))
    rows.append((runs[0], None, 5, T0))
    rows.append((runs[-1], "log-a", None, None))
    con.executemany(f"INSERT INTO {TABLE} VALUES (?, ?, ?, ?)", rows)
    chosen = sorted(rnd.sample(runs, k=rnd.randint(1, len(runs))))
    return con, chosen


def _run(con: duckdb.DuckDBPyConnection, query: str, runs: list[str]) -> list[tuple]:
    batch = f"SELECT * FROM {TABLE} WHERE ingest_run_id IN ({', '.join(repr(r) for r in runs)})"
    sql = for_duckdb(query, batch).replace("__batch__", f"({batch}) AS subselect")
    return sorted(con.execute(f"SELECT {COLUMNS} FROM ({sql})").fetchall(), key=str)


@pytest.mark.parametrize("seed", range(40))
def test_buckets_find_the_gaps_reading_every_row_finds(seed: int) -> None:
    con, runs = _store(seed)
    windows = {"*": timedelta(hours=6 + seed % 5 * 20)}
    facts = BatchFacts(None, None, T0, silence_windows=windows, run_ids=tuple(runs))
    seq = _sequence_gap_check(TABLE, facts).gap_query
    silence = _silence_check(TABLE, facts).gap_query
    assert seq is not None and silence is not None
    assert _run(con, seq, runs) == _run(con, _reference_sequence(seq), runs)
    assert _run(con, silence, runs) == _run(con, _reference_silence(silence, windows), runs)


def test_the_random_stores_hold_what_the_checks_look_for() -> None:
    """The comparison above is not empty: gaps, silences and straddling batches occur."""
    gaps = silences = straddles = 0
    for seed in range(40):
        con, runs = _store(seed)
        windows = {"*": timedelta(hours=6 + seed % 5 * 20)}
        facts = BatchFacts(None, None, T0, silence_windows=windows, run_ids=tuple(runs))
        gaps += len(_run(con, _sequence_gap_check(TABLE, facts).gap_query or "", runs))
        silences += len(_run(con, _silence_check(TABLE, facts).gap_query or "", runs))
        straddles += con.execute(
            f"SELECT count(*) FROM (SELECT source_system, ingest_run_id, min(sequence_no) lo,"
            f" max(sequence_no) hi FROM {TABLE} GROUP BY ALL) x JOIN (SELECT source_system,"
            f" ingest_run_id, min(sequence_no) lo, max(sequence_no) hi FROM {TABLE}"
            " GROUP BY ALL) y ON x.source_system = y.source_system"
            " AND x.ingest_run_id < y.ingest_run_id AND x.lo < y.hi AND y.lo < x.hi"
        ).fetchall()[0][0]
    assert gaps > 40 and silences > 10 and straddles > 10
