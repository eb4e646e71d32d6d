"""`benchmarks scale` cuts each log into its first 99% (history) and last 1% (new), in order."""

from __future__ import annotations

from pathlib import Path

import duckdb

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
