"""A Parquet file larger than the load's memory share is typed in row ranges, in one
transaction, and leaves exactly what one pass leaves: rows loaded, quarantine (repeats of
rows in earlier ranges included), stored values, key ranges; read = loaded + quarantined."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pytest

import dwatch.ingest.chunks as ingest_chunks
import dwatch.ingest.run as ingest_run
from dwatch.ingest import ingest_paths
from dwatch.store import connect

KEY = b"unit-test-pseudonym-key"
ROWS = 60
PER_RANGE = 7  # records a range holds with the tiny share below


def _write(path: Path, hostile: bool = False) -> Path:
    """Keys repeat across ranges (e0..e24 twice or more), some rows are bad, row groups of 4."""
    instant = "TIMESTAMPTZ 'infinity'" if hostile else "NULL"
    duckdb.connect().execute(
        f"""COPY (SELECT 'e' || (i % 25) AS event_id, 'irs-disclosure-ledger' AS source_system,
            i AS sequence_no,
            CASE WHEN i = 29 THEN {instant} WHEN i % 13 = 5 THEN NULL
                 ELSE TIMESTAMPTZ '2025-08-07 10:00:00+00' + to_minutes(i) END AS occurred_at,
            'disclosure' AS event_type, 'IRS' AS disclosing_agency, 'CA-FTB' AS recipient_agency,
            'u' || (i % 3) AS actor_id, '26 U.S.C. 6103(d)' AS legal_authority,
            ['name', 'address'] AS data_elements,
            CASE WHEN i % 11 = 3 THEN 0 ELSE 1 + i END AS record_count,
            CASE WHEN i % 4 = 0 THEN '123-45-' || lpad(i::VARCHAR, 4, '0') END AS taxpayer_tin,
            'sftp' AS channel, i % 2 = 0 AS encrypted,
            CASE WHEN i % 9 = 0 THEN 'call 123-45-6789' END AS description
          FROM range({ROWS}) t(i)) TO '{path}' (FORMAT parquet, ROW_GROUP_SIZE 4)"""
    )
    return path


def _history(path: Path) -> Path:
    duckdb.connect().execute(
        "COPY (SELECT 'e7' AS event_id, 'irs-disclosure-ledger' AS source_system,"
        " TIMESTAMPTZ '2025-08-01 10:00:00+00' AS occurred_at, 'disclosure' AS event_type,"
        " 'IRS' AS disclosing_agency, 'CA-FTB' AS recipient_agency, 'u9' AS actor_id,"
        f" ['name'] AS data_elements, 1 AS record_count) TO '{path}' (FORMAT parquet)"
    )
    return path


def _left(con: duckdb.DuckDBPyConnection, results: list[Any]) -> dict[str, Any]:
    run_files = dict(con.execute("SELECT run_id, source_file FROM ingest_runs").fetchall())

    def named(value: Any) -> str:
        text = str(value)
        for run, file in run_files.items():
            text = text.replace(run, Path(file).name)
        return text

    return {
        "results": [
            (
                r.status,
                r.rows_read,
                r.rows_loaded,
                r.rows_quarantined,
                sorted(r.quarantined_by_reason.items()),
                sorted(r.warnings),
            )
            for r in results
        ],
        "events": con.execute(
            "SELECT e.* EXCLUDE (ingest_run_id) FROM disclosure_events e ORDER BY ALL"
        ).fetchall(),
        "quarantine": sorted(
            tuple(named(v) for v in row)
            for row in con.execute(
                "SELECT source_file, source_row, reason_code, field, message, raw_row,"
                " canonical_row FROM quarantine"
            ).fetchall()
        ),
        "key_ranges": sorted(
            (named(r[0]), *r[1:]) for r in con.execute("SELECT * FROM ingest_key_ranges").fetchall()
        ),
    }


def _load(tmp_path: Path, name: str, path: Path, history: Path) -> dict[str, Any]:
    con = connect(tmp_path / f"{name}.duckdb")
    ingest_paths(con, [history], key=KEY)
    left = _left(con, ingest_paths(con, [path], key=KEY))
    con.close()
    return left


@pytest.mark.parametrize("hostile", [False, True])
def test_a_file_typed_in_row_ranges_leaves_what_one_pass_leaves(
    tmp_path: Path, hostile: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write(tmp_path / "big.parquet", hostile)
    history = _history(tmp_path / "history.parquet")
    one_pass = _load(tmp_path, "one", path, history)
    seen: list[int] = []
    spans = ingest_chunks.chunk_spans

    def tiny(con: duckdb.DuckDBPyConnection, file: Path, fmt: str | None) -> Any:
        limit = con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
        share = ingest_chunks._size_bytes(str(limit))
        with monkeypatch.context() as m:
            tiny_share = PER_RANGE * ingest_chunks.WORK_ROW_BYTES / share
            m.setattr(ingest_chunks, "WORK_SHARE", tiny_share)
            m.setattr(ingest_chunks, "ONE_PASS_SHARE", tiny_share)
            found = spans(con, file, fmt)
        seen.append(len(found or []))
        return found

    monkeypatch.setattr(ingest_run, "chunk_spans", tiny)
    chunked = _load(tmp_path, "chunked", path, history)
    assert seen[-1] == -(-ROWS // PER_RANGE)  # several ranges
    assert chunked == one_pass
    [(status, read, loaded, quarantined, reasons, _)] = chunked["results"]
    assert status == "loaded" and read == ROWS == loaded + quarantined
    assert dict(reasons)["duplicate_event_id"] >= 20  # repeats of rows in earlier ranges
    assert any(
        "was already loaded by ingest run history.parquet" in q[4] for q in chunked["quarantine"]
    )
    assert any("repeats row 1 of this file" in q[4] for q in chunked["quarantine"])
    if hostile:
        assert dict(reasons)["bad_timestamp"] == 1


def test_later_ranges_never_read_back_the_files_own_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each range's keys are checked against the store's other runs only: the file's own
    rows of earlier ranges are judged through SEEN (reading them back grew with the square
    of the file), and repeats of them are still found."""
    import dwatch.ingest.write as ingest_write

    path = _write(tmp_path / "big.parquet")
    history = _history(tmp_path / "history.parquet")
    con = connect(tmp_path / "store.duckdb")
    [before] = ingest_paths(con, [history], key=KEY)
    read: list[object] = []
    real = ingest_write._stored_rows

    def spy(
        con: duckdb.DuckDBPyConnection, kind: str, skip_run: str | None = None
    ) -> tuple[str | None, dict[str, object]]:
        stored, params = real(con, kind, skip_run)
        read.append(params.get("runs"))
        return stored, params

    monkeypatch.setattr(ingest_write, "_stored_rows", spy)
    spans = ingest_chunks.chunk_spans

    def tiny(con: duckdb.DuckDBPyConnection, file: Path, fmt: str | None) -> Any:
        limit = ingest_chunks._size_bytes(
            str(con.execute("SELECT current_setting('memory_limit')").fetchone()[0])
        )
        with monkeypatch.context() as m:
            m.setattr(ingest_chunks, "WORK_SHARE", PER_RANGE * ingest_chunks.WORK_ROW_BYTES / limit)
            m.setattr(ingest_chunks, "ONE_PASS_SHARE", 0.0)
            return spans(con, file, fmt)

    monkeypatch.setattr(ingest_run, "chunk_spans", tiny)
    [result] = ingest_paths(con, [path], key=KEY)
    assert len(read) == -(-ROWS // PER_RANGE)
    # The ranges' keys (e0..e24 in each) overlap: only the history's run is read.
    assert [before.run_id] in read
    assert all(runs in (None, [before.run_id]) for runs in read)
    assert result.rows_read == ROWS == result.rows_loaded + result.rows_quarantined
    repeats = con.execute(
        "SELECT count(*) FROM quarantine WHERE message LIKE '%of this file'"
    ).fetchone()[0]
    assert repeats >= 20


def test_request_items_in_row_ranges_leave_what_one_pass_leaves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Items repeat keys within and across ranges and one the store holds: the store is
    read without the file's own run, and the repeats are found as in one pass."""
    path = tmp_path / "items.parquet"
    duckdb.connect().execute(
        "COPY (SELECT 'R-' || (i % 4) AS request_id, 'e' || (i % 4) AS event_id,"
        " (i % 8) + 1 AS item_no, '123-45-' || lpad((i % 50)::VARCHAR, 4, '0') AS taxpayer_tin,"
        " 'Name ' || i AS supplied_name, '1 Main St' AS supplied_address, 'income' AS reason"
        f" FROM range({ROWS}) t(i)) TO '{path}' (FORMAT parquet, ROW_GROUP_SIZE 4)"
    )
    history = tmp_path / "history.parquet"
    duckdb.connect().execute(
        "COPY (SELECT 'R-3' AS request_id, 'e3' AS event_id, 4 AS item_no,"
        " '123-45-0001' AS taxpayer_tin, 'Old' AS supplied_name, '2 Main St' AS supplied_address,"
        f" 'income' AS reason) TO '{history}' (FORMAT parquet)"
    )

    def load(name: str) -> tuple[Any, ...]:
        con = connect(tmp_path / f"{name}.duckdb")
        ingest_paths(con, [history], key=KEY)
        [result] = ingest_paths(con, [path], key=KEY)
        runs = dict(con.execute("SELECT run_id, source_file FROM ingest_runs").fetchall())

        def named(value: Any) -> str:
            text = str(value)
            for run, file in runs.items():
                text = text.replace(run, Path(file).name)
            return text

        left = (
            result.rows_read,
            result.rows_loaded,
            sorted(result.quarantined_by_reason.items()),
            sorted(
                named(r)
                for r in con.execute(
                    "SELECT * EXCLUDE (ingest_run_id) FROM request_items"
                ).fetchall()
            ),
            sorted(
                named(r)
                for r in con.execute(
                    "SELECT source_file, source_row, reason_code, message, raw_row FROM quarantine"
                ).fetchall()
            ),
        )
        con.close()
        return left

    one_pass = load("one")
    spans = ingest_chunks.chunk_spans
    counted: list[int] = []

    def tiny(con: duckdb.DuckDBPyConnection, file: Path, fmt: str | None) -> Any:
        limit = ingest_chunks._size_bytes(
            str(con.execute("SELECT current_setting('memory_limit')").fetchone()[0])
        )
        with monkeypatch.context() as m:
            m.setattr(ingest_chunks, "WORK_SHARE", PER_RANGE * ingest_chunks.WORK_ROW_BYTES / limit)
            m.setattr(ingest_chunks, "ONE_PASS_SHARE", 0.0)
            found = spans(con, file, fmt)
        counted.append(len(found or []))
        return found

    monkeypatch.setattr(ingest_run, "chunk_spans", tiny)
    chunked = load("chunked")
    assert counted[-1] == -(-ROWS // PER_RANGE)
    assert chunked == one_pass
    read, loaded, reasons, _, quarantined = chunked
    assert (read, loaded) == (ROWS, 7) and dict(reasons) == {"duplicate_item": ROWS - 7}
    assert any("already loaded by ingest run history.parquet" in q for q in quarantined)
