"""The state's longest gaps found from buckets are those of sorting every event."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import duckdb

from dwatch.validate import ValidationConfig, validate_batches
from dwatch.validate.state import _summary_sql
from dwatch.validate.state_build import summarize
from tests.validate.conftest import InsertBatch, event_row

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _events(seed: int) -> list[tuple[str, datetime | None, str, int | None]]:
    """Logs of every shape: bursts with many long pauses (buckets), an even rhythm (no
    gap six times its mean: sorted), repeated instants, a few events, missing times."""
    rnd = random.Random(seed)
    rows: list[tuple[str, datetime | None, str, int | None]] = []

    def add(source: str, seconds: list[float]) -> None:
        for i, s in enumerate(seconds):
            at = T0 + timedelta(seconds=s, microseconds=rnd.randrange(1_000_000))
            rows.append((source, at, f"run-{source}-{i % 3}", i + 1))

    bursts: list[float] = []
    t = 0.0
    for _ in range(60):
        t += rnd.uniform(3_600, 200_000)  # a pause: hours to days
        for _ in range(rnd.randrange(20, 80)):
            t += rnd.expovariate(1 / 30)
            bursts.append(t)
    add("bursty-log", bursts)
    add("even-log", [60.0 * i for i in range(2_000)])
    add("poisson-log", [sum(rnd.expovariate(1 / 90) for _ in range(3)) * i for i in range(3_000)])
    add("few-log", [5.0, 500.0, 50_000.0])
    add("one-log", [7.0])
    rows += [("bursty-log", None, "run-x", None), ("none-log", None, "run-y", 3)]
    twin = rows[10]
    rows += [twin, (twin[0], twin[1], "run-twin", 10_000)]
    rnd.shuffle(rows)
    return rows


def test_buckets_find_the_longest_gaps_of_sorting() -> None:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for seed in (1, 2, 3):
        con.execute(
            "CREATE OR REPLACE TABLE ev (source_system VARCHAR, occurred_at TIMESTAMPTZ,"
            " ingest_run_id VARCHAR, sequence_no BIGINT)"
        )
        con.executemany("INSERT INTO ev VALUES (?, ?, ?, ?)", _events(seed))
        rows = "SELECT source_system, occurred_at, ingest_run_id, sequence_no FROM ev"
        wide = summarize(con, rows, "built")
        assert "bursty-log" in wide and "even-log" not in wide
        sorted_sql = _summary_sql(f"SELECT *, FALSE AS seed FROM ({rows})", None)
        # last_run_id / last_seq_run / last_seq_at: ties broken alike (one row per instant
        # and number here but the twin, whose source's last event it is not).
        cols = "source_system, first_at, last_at, timed_events, top_gaps, gaps_kept, last_seq"
        got = con.execute(f"SELECT {cols} FROM built ORDER BY 1").fetchall()
        expected = con.execute(f"SELECT {cols} FROM ({sorted_sql}) ORDER BY 1").fetchall()
        assert got == expected
        assert [len(r[4]) for r in got if r[0] == "bursty-log"] == [20]


def test_a_late_event_reads_its_tail_from_the_stored_event_before_it(
    con: duckdb.DuckDBPyConnection, insert_batch: InsertBatch, vconfig: ValidationConfig
) -> None:
    """The tail is looked for at most the source's longest gap before the late event
    (the stored events either side of it are consecutive): found there, not reopened."""
    hours = [0, 10, 20, 30, 31, 32, 100, 101]  # longest gap 68 h, the one before it 10 h

    def rows(at: list[float], first_no: int) -> list[dict[str, object]]:
        return [
            event_row(first_no + i, source_system="short-log", occurred_at=T0 + timedelta(hours=h))
            for i, h in enumerate(at)
        ]

    insert_batch(rows(hours, 1))
    validate_batches(con, config=vconfig, build_docs=False)
    # An event 9 h after the stored one at 20 h: its tail is 20 h, 30 h, ... (gaps 10, 1,
    # 1, 68, 1): the longest gap lies in it, so only a short list would stand; this one
    # holds all 7 gaps, so the tail's are taken out of it.
    insert_batch(rows([29.0], 20))
    report = validate_batches(con, config=vconfig, build_docs=False)
    since = (T0 + timedelta(hours=20)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert any(
        n.startswith(f"short-log: stored events from {since} on read") for n in report.state_notes
    ), report.state_notes
