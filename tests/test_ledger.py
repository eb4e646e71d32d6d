"""The ingest-record chain: every load is chained; a changed or deleted record is named."""

from __future__ import annotations

from pathlib import Path

import duckdb
from click.testing import CliRunner
from test_ingest import KEY, event, write_csv

from dwatch import ledger
from dwatch.cli import main
from dwatch.ingest import ingest_paths


def _load_three(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> list[str]:
    paths = [
        write_csv(tmp_path / f"ledger-{n}.csv", [event(event_id=f"e{n}", sequence_no=n)])
        for n in (1, 2, 3)
    ]
    results = ingest_paths(con, [str(p) for p in paths], key=KEY)
    return [r.run_id for r in results]


def test_each_ingest_record_is_chained_and_the_chain_holds(con, tmp_path):
    run_ids = _load_three(con, tmp_path)
    rows = con.execute(
        "SELECT run_id, chain_seq, chain_prev, chain_hash FROM ingest_runs ORDER BY chain_seq"
    ).fetchall()
    assert [r[0] for r in rows] == run_ids
    assert [r[1] for r in rows] == [1, 2, 3]
    assert rows[0][2] == ledger.GENESIS
    assert rows[1][2] == rows[0][3] and rows[2][2] == rows[1][3]
    assert ledger.verify_store(con) == []
    assert ledger.chain_head(con).chain_hash == rows[2][3]


def test_a_changed_record_is_named(con, tmp_path):
    run_ids = _load_three(con, tmp_path)
    con.execute("UPDATE ingest_runs SET rows_read = 99 WHERE run_id = ?", [run_ids[1]])
    problems = ledger.verify_store(con)
    assert len(problems) == 1 and run_ids[1] in problems[0] and "rows_read" in problems[0]


def test_a_deleted_record_breaks_the_chain_at_the_next_one(con, tmp_path):
    run_ids = _load_three(con, tmp_path)
    con.execute("DELETE FROM ingest_runs WHERE run_id = ?", [run_ids[1]])
    problems = ledger.verify_store(con)
    assert any(run_ids[2] in p and "deleted" in p for p in problems)
    assert any(run_ids[2] in p and "link broken" in p for p in problems)


def test_a_rewritten_hash_does_not_hide_a_change(con, tmp_path):
    run_ids = _load_three(con, tmp_path)
    # Someone edits a record and recomputes its own hash: the next record no longer follows it.
    row = con.execute(
        "SELECT chain_prev, chain_record FROM ingest_runs WHERE run_id = ?", [run_ids[0]]
    ).fetchone()
    forged = row[1].replace('"rows_read":1', '"rows_read":7')
    con.execute(
        "UPDATE ingest_runs SET rows_read = 7, chain_record = ?, chain_hash = ? WHERE run_id = ?",
        [forged, ledger.link(row[0], forged), run_ids[0]],
    )
    problems = ledger.verify_store(con)
    assert any(run_ids[1] in p and "link broken" in p for p in problems)


def test_validation_moving_rows_to_quarantine_is_not_tampering(con, tmp_path):
    run_ids = _load_three(con, tmp_path)
    con.execute(
        "UPDATE ingest_runs SET rows_loaded = rows_loaded - 1,"
        " rows_quarantined = rows_quarantined + 1 WHERE run_id = ?",
        [run_ids[0]],
    )
    assert ledger.verify_store(con) == []
    con.execute(
        "UPDATE ingest_runs SET rows_loaded = rows_loaded + 5 WHERE run_id = ?", [run_ids[0]]
    )
    assert any(run_ids[0] in p for p in ledger.verify_store(con))


def test_verify_store_command(con, db_path, tmp_path):
    run_ids = _load_three(con, tmp_path)
    con.close()
    ok = CliRunner().invoke(main, ["--db", str(db_path), "verify", "--store"])
    assert ok.exit_code == 0 and "ingest chain holds; head #3" in ok.output
    con = duckdb.connect(str(db_path))
    con.execute("UPDATE ingest_runs SET source_file = 'other.csv' WHERE run_id = ?", [run_ids[2]])
    con.close()
    bad = CliRunner().invoke(main, ["--db", str(db_path), "verify", "--store"])
    assert bad.exit_code == 1 and run_ids[2] in bad.output and "source_file" in bad.output


def test_verify_store_command_names_a_deleted_record(con, db_path, tmp_path):
    run_ids = _load_three(con, tmp_path)
    con.execute("DELETE FROM ingest_runs WHERE run_id = ?", [run_ids[0]])
    con.close()
    bad = CliRunner().invoke(main, ["--db", str(db_path), "verify", "--store"])
    assert bad.exit_code == 1
    assert run_ids[1] in bad.output and "deleted" in bad.output
