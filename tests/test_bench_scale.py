"""`benchmarks scale` cuts each log into its first 99% (history) and last 1% (new), in order."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from benchmarks.bench_scale import _split


def test_split_keeps_every_row_once_and_the_last_percent_new(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    con = duckdb.connect()
    logs = (("events-a.parquet", 1000), ("events-b.parquet", 250), ("request_items.parquet", 1))
    for name, n in (*logs, ("ground_truth_labels.parquet", 5)):
        con.execute(
            f"COPY (SELECT i, 'e' || i AS event_id FROM range({n}) t(i)) TO '{raw / name}' (FORMAT parquet)"
        )
    files, history_rows, new_rows = _split(raw, tmp_path / "history", tmp_path / "new")
    assert (files, history_rows + new_rows) == (3, 1251)
    # the generator's answer key is not a log: it stays out of both inputs
    for folder in ("history", "new"):
        assert sorted(p.name for p in (tmp_path / folder).iterdir()) == sorted(n for n, _ in logs)
    history = con.execute(
        f"SELECT max(i), count(*) FROM read_parquet('{tmp_path / 'history' / 'events-a.parquet'}')"
    ).fetchone()
    new = con.execute(
        f"SELECT min(i), count(*) FROM read_parquet('{tmp_path / 'new' / 'events-a.parquet'}')"
    ).fetchone()
    assert history == (989, 990) and new == (990, 10)
    assert con.execute(
        f"SELECT count(*) FROM read_parquet('{tmp_path / 'new' / 'events-b.parquet'}')"
    ).fetchone() == (2,)


def test_the_table_prints_cpu_seconds_beside_wall_seconds(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from benchmarks.bench_scale import _print

    def child(seconds: float, cpu: float, steps: dict[str, float]) -> dict[str, object]:
        return {
            "seconds": seconds,
            "cpu_seconds": cpu,
            "peak_rss_mb": 100.0,
            "steps": steps,
            "step_cpu": {k: v / 2 for k, v in steps.items()},
            "step_status": {k: "ok" for k in steps},
        }

    full = child(40.0, 60.0, {"ingest": 10.0, "validate": 2.0, "publish": 4.0})
    _print(
        [
            {
                "size": 1_000_000,
                "duckdb": {"seconds": 4.0, "cpu_seconds": 6.0, "peak_rss_mb": 50.0},
                "full": full,
                "duckdb_new": {"seconds": 0.5, "cpu_seconds": 0.6},
                "incremental": child(2.0, 3.0, {"ingest": 1.0}),
                "store_mb": 10.0,
                "snapshots_mb": 5.0,
                "snapshots_after_mb": 6.0,
                "docs_after_full_s": 0.0,
                "docs_after_new_s": 0.0,
            }
        ]
    )
    out = capsys.readouterr().out
    assert "10.0x" in out  # wall: 40 s against DuckDB's 4 s
    assert "1,000,000 CPU seconds: DuckDB's load 6.0, run 60.0 (10.0x)" in out
    assert '"ingest": 5.0' in out and "1% run 3.0 (5.0% of the full run's)" in out
