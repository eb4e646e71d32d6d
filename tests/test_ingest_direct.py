"""Typed Parquet columns read straight through (dwatch.ingest.direct) leave exactly what the
text path leaves: the same rows loaded, the same rows quarantined with the same reason,
field, message and raw record, the same stored values, on hostile inputs too."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import duckdb
import pytest

import dwatch.ingest.direct as ingest_direct
import dwatch.ingest.typed as ingest_typed
from dwatch.ingest import IngestResult, ingest_paths
from dwatch.store import connect

KEY = b"unit-test-pseudonym-key"

# One row per case: (event_id, occurred_at, sequence_no, record_count, encrypted,
# data_elements, description). Typed as the generator writes them.
_SAFE_ROWS = """
    ('e1', TIMESTAMPTZ '2025-08-07 14:03:00+00', 1, 120, true, ['name', 'address'], NULL),
    ('e2', TIMESTAMPTZ '2025-08-07 14:03:00.123456+00', NULL, 5, NULL, ['Name ', ' ADDRESS'], 'ok'),
    ('e3', TIMESTAMPTZ '1850-01-01 00:00:00+00', 3, 7, false, ['name'], 'too old'),
    ('e4', TIMESTAMPTZ '2300-01-01 00:00:00+00', 4, 7, true, ['name'], 'too far ahead'),
    ('e5', NULL, 5, 7, true, ['name'], 'no time'),
    ('e6', TIMESTAMPTZ '2025-08-07 14:03:00+00', 6, 0, true, ['name'], 'below the minimum'),
    ('e7', TIMESTAMPTZ '2025-08-07 14:03:00+00', 7, NULL, true, ['name'], 'no count'),
    ('e8', TIMESTAMPTZ '2025-08-07 14:03:00+00', 123456789, 123456789, true, ['name'], NULL),
    ('e9', TIMESTAMPTZ '2025-08-07 14:03:00+00', 9, 1, true, [], 'empty list'),
    ('e10', TIMESTAMPTZ '2025-08-07 14:03:00+00', 10, 1, true, NULL, 'no list'),
    ('e11', TIMESTAMPTZ '2025-08-07 14:03:00+00', 11, 1, true, ['', NULL, 'tin'], 'holes'),
    ('e12', TIMESTAMPTZ '2025-08-07 14:03:00+00', 12, 1, true, ['ssn 123-45-6789'], NULL),
    ('e13', TIMESTAMPTZ '2025-08-07 14:03:00+00', 13, 1, true, ['name'], 'call 123-45-6789'),
    ('e14', TIMESTAMPTZ '2025-08-07 14:03:00+00', 14, -3, true, ['123456789'], 'neg'),
    ('e13', TIMESTAMPTZ '2025-08-07 14:03:00+00', 15, 2, true, ['name'], 'repeat id'),
    ('e16', TIMESTAMPTZ '2025-08-07 14:03:00+00', -9223372036854775808, 2147483647, true,
     ['a\tb', 'x"y', 'null'], NULL),
    (NULL, TIMESTAMPTZ '2025-08-07 14:03:00+00', 17, 1, true, ['name'], 'no id')
"""
# Values whose text the direct path does not read back: the file goes through text.
_HOSTILE_ROWS = """
    ('h1', TIMESTAMPTZ 'infinity', 1, 1, true, ['name'], NULL),
    ('h2', TIMESTAMPTZ '-infinity', 2, 1, true, ['name'], NULL),
    ('h3', TIMESTAMPTZ '0044-03-15 00:00:00+00' - INTERVAL 100 YEAR, 3, 1, true, ['name'], NULL),
    ('h4', TIMESTAMPTZ '2025-08-07 14:03:00+00', 4, 1, true, ['name'], 'fine')
"""


def _write(path: Path, rows: str) -> Path:
    duckdb.connect().execute(
        "COPY (SELECT event_id, 'irs-disclosure-ledger' AS source_system, sequence_no,"
        " occurred_at, 'disclosure' AS event_type, 'IRS' AS disclosing_agency,"
        " 'CA-FTB' AS recipient_agency, 'u1' AS actor_id, 'req-1' AS request_id,"
        " '26 U.S.C. 6103(d)' AS legal_authority, 'state_tax_administration' AS purpose,"
        " data_elements, record_count::INTEGER AS record_count, '123-45-6789' AS taxpayer_tin,"
        " 'sftp' AS channel, encrypted, description, 'success' AS outcome FROM (VALUES"
        f" {rows}) t(event_id, occurred_at, sequence_no, record_count, encrypted,"
        f" data_elements, description)) TO '{path}' (FORMAT parquet)"
    )
    return path


def _left(con: duckdb.DuckDBPyConnection, results: list[IngestResult]) -> dict[str, Any]:
    """What a load leaves, run ids named by their file (they differ per load)."""
    names = dict(con.execute("SELECT run_id, source_file FROM ingest_runs").fetchall())

    def plain(value: Any) -> str:
        return re.sub(
            r"\bing_\d{8}T\d{6}_[0-9a-f]{8}\b", lambda m: Path(names[m.group(0)]).name, str(value)
        )

    return {
        "results": [
            (
                Path(r.source_file).name,
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
            "SELECT r.source_file, e.* EXCLUDE (ingest_run_id) FROM disclosure_events e"
            " JOIN ingest_runs r ON r.run_id = e.ingest_run_id ORDER BY ALL"
        ).fetchall(),
        "quarantine": [
            tuple(plain(v) for v in row)
            for row in con.execute(
                "SELECT source_file, source_row, kind, reason_code, field, message, raw_row,"
                " canonical_row FROM quarantine ORDER BY ALL"
            ).fetchall()
        ],
    }


def _load(tmp_path: Path, name: str, files: list[Path], direct: bool) -> dict[str, Any]:
    ingest_direct.DIRECT = direct
    try:
        con = connect(tmp_path / f"{name}-{direct}.duckdb")
        left = _left(con, ingest_paths(con, files, key=KEY))
        con.close()
    finally:
        ingest_direct.DIRECT = True
    return left


@pytest.fixture
def read_paths(monkeypatch: pytest.MonkeyPatch) -> list[frozenset[str]]:
    """Which columns each Parquet staging read as they are (empty: all through text)."""
    seen: list[frozenset[str]] = []
    staged = ingest_typed._stage_parquet

    def spy(
        con: Any,
        path: Path,
        layout: Any = None,
        direct: frozenset[str] = frozenset(),
        span: tuple[int, int] | None = None,
    ) -> Any:
        seen.append(direct)
        return staged(con, path, layout, direct, span)

    monkeypatch.setattr(ingest_typed, "_stage_parquet", spy)
    return seen


def test_typed_columns_read_straight_through_leave_what_text_leaves(
    tmp_path: Path, read_paths: list[frozenset[str]]
) -> None:
    path = _write(tmp_path / "typed.parquet", _SAFE_ROWS)
    direct = _load(tmp_path, "safe", [path], direct=True)
    assert read_paths[-1] == {
        "occurred_at",
        "sequence_no",
        "record_count",
        "encrypted",
        "data_elements",
    }
    text = _load(tmp_path, "safe", [path], direct=False)
    assert read_paths[-1] == frozenset()
    assert direct == text
    reasons = dict(direct["results"][0][5])
    assert reasons == {
        "duplicate_event_id": 1,
        "missing_required": 5,
        "out_of_range": 4,
    }
    assert direct["results"][0][2] == 17 == direct["results"][0][3] + direct["results"][0][4]
    stored = "\n".join(map(str, direct["events"] + direct["quarantine"]))
    assert "123-45-6789" not in stored  # free text, list elements and raw records masked


def test_a_value_the_typed_path_cannot_read_back_sends_the_file_through_text(
    tmp_path: Path, read_paths: list[frozenset[str]]
) -> None:
    path = _write(tmp_path / "hostile.parquet", _HOSTILE_ROWS)
    direct = _load(tmp_path, "hostile", [path], direct=True)
    assert read_paths[-2:] == [frozenset(read_paths[-2]), frozenset()] and read_paths[-2]
    assert direct == _load(tmp_path, "hostile", [path], direct=False)
    reasons = dict(direct["results"][0][5])
    assert reasons.get("bad_timestamp", 0) + reasons.get("timestamp_without_zone", 0) >= 2
    assert direct["results"][0][3] == 1  # h4 loads


def test_a_group_of_typed_files_leaves_what_text_leaves(tmp_path: Path) -> None:
    files = [
        _write(tmp_path / "a.parquet", _SAFE_ROWS),
        _write(tmp_path / "b.parquet", _SAFE_ROWS.replace("'e", "'f")),
        _write(tmp_path / "c.parquet", _HOSTILE_ROWS),
        _write(tmp_path / "d.parquet", _HOSTILE_ROWS.replace("'h", "'k")),
    ]
    assert _load(tmp_path, "group", files, direct=True) == _load(
        tmp_path, "group", files, direct=False
    )


def test_a_typed_lists_elements_are_joined_once_a_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pre-test and the tidy test read one helper: written out, the join was evaluated
    four times a row (about 0.3 CPU-s of the typed pass per million events)."""
    statements: list[str] = []
    typed_sql = ingest_typed._typed_sql

    def spy(*args: Any, **kwargs: Any) -> tuple[str, str]:
        sql, raw_json = typed_sql(*args, **kwargs)
        statements.append(sql)
        return sql, raw_json

    monkeypatch.setattr(ingest_typed, "_typed_sql", spy)
    path = _write(tmp_path / "typed.parquet", _SAFE_ROWS)
    _load(tmp_path, "safe", [path], direct=True)
    assert statements and statements[-1].count("array_to_string(x__data_elements") == 1
