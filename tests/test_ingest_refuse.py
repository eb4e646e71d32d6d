"""A file whose columns fit no export layout is refused whole with one message (file,
columns, layouts tried, what to do), recorded as one failed file: not every row quarantined."""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl

from dwatch.ingest import ingest_paths
from dwatch.mapping import available_mappings
from dwatch.store import connect

KEY = b"unit-test-pseudonym-key"


def _answer_key(path: Path, rows: int) -> Path:
    """Shaped as the generator's ground_truth_labels.parquet."""
    pl.DataFrame(
        {
            "instance_id": [f"i{n}" for n in range(rows)],
            "scenario": ["after_hours"] * rows,
            "kind": ["event"] * rows,
            "source_system": ["irs-disclosure-ledger"] * rows,
            "event_id": [f"e{n}" for n in range(rows)],
            "request_id": [None if n % 2 else f"r{n}" for n in range(rows)],
            "item_no": [None if n % 2 else n for n in range(rows)],
        }
    ).write_parquet(path)
    return path


def _items(path: Path) -> Path:
    path.write_text(
        "request_id,event_id,item_no,taxpayer_tin,supplied_name\nr1,e1,1,123-45-6789,A. Person\n"
    )
    return path


def test_a_file_fitting_no_layout_is_refused_whole_with_one_message(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    labels = _answer_key(inbox / "ground_truth_labels.parquet", 50)
    (inbox / "ids.csv").write_text("item_no,colour\n1,red\n2,blue\n")
    _items(inbox / "items.csv")
    con = connect(tmp_path / "store.duckdb")
    results = {Path(r.source_file).name: r for r in ingest_paths(con, [inbox], key=KEY)}

    refused = results[labels.name]
    assert refused.status == "failed"
    assert (refused.rows_read, refused.rows_loaded, refused.rows_quarantined) == (0, 0, 0)
    message = refused.message
    assert str(labels) in message and "refused whole" in message
    for column in ("instance_id", "scenario", "kind", "event_id", "item_no"):
        assert column in message
    assert "canonical request_items layout" in message
    assert all(name in message for name in available_mappings())
    assert "fix:" in message and "source mapping" in message
    assert message.count("refused whole") == 1
    assert results["ids.csv"].status == "failed" and "colour" in results["ids.csv"].message

    loaded = results["items.csv"]  # beside them, a real items export loads
    assert (loaded.status, loaded.rows_read, loaded.rows_loaded) == ("loaded", 1, 1)
    assert _quarantined_from(con, labels) == 0
    assert con.execute(
        "SELECT status, rows_read, rows_quarantined FROM ingest_runs WHERE source_file LIKE ?",
        ["%ground_truth_labels.parquet"],
    ).fetchall() == [("failed", 0, 0)]


def _quarantined_from(con: duckdb.DuckDBPyConnection, path: Path) -> int:
    return con.execute(
        "SELECT count(*) FROM quarantine WHERE source_file LIKE ?", [f"%{path.name}"]
    ).fetchone()[0]


def test_an_items_file_with_one_field_beyond_the_names_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "items.csv"
    path.write_text("request_id,event_id,item_no,statute\nr1,e1,1,IRC 6103(d)\nr1,e1,,x\n")
    con = connect(tmp_path / "store.duckdb")
    [result] = ingest_paths(con, [path], key=KEY)
    assert (result.status, result.rows_read, result.rows_loaded, result.rows_quarantined) == (
        "loaded",
        2,
        1,
        1,
    )
