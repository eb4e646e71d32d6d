"""Small Parquet files of one layout load as a group: the same rows, quarantine, provenance
and ingest records as loading each file alone, and a broken file loses nothing else."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest

import dwatch.ingest.group as ingest_group
import dwatch.ingest.run as ingest_run
from dwatch import ledger
from dwatch.ingest import IngestResult, ingest_paths
from dwatch.store import connect

KEY = b"unit-test-pseudonym-key"
COLUMNS = [
    "event_id",
    "source_system",
    "sequence_no",
    "occurred_at",
    "event_type",
    "disclosing_agency",
    "recipient_agency",
    "actor_id",
    "request_id",
    "legal_authority",
    "purpose",
    "data_elements",
    "record_count",
    "taxpayer_tin",
    "channel",
    "encrypted",
    "outcome",
    "note",  # not canonical: kept in extra, and each file's warning names that file
]


def event(event_id: str | None, seq: int, **overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "event_id": event_id,
        "source_system": "irs-disclosure-ledger",
        "sequence_no": str(seq),
        "occurred_at": f"2025-08-07T10:{seq % 60:02d}:00-04:00",
        "event_type": "disclosure",
        "disclosing_agency": "IRS",
        "recipient_agency": "CA-FTB",
        "actor_id": "irs-u-17",
        "request_id": f"req-{seq}",
        "legal_authority": "26 U.S.C. § 6103(d)",
        "purpose": "state_tax_administration",
        "data_elements": '["name","address"]',
        "record_count": "120",
        "taxpayer_tin": None,
        "channel": "sftp",
        "encrypted": "true",
        "outcome": "success",
        "note": f"n{seq}",
    }
    row.update(overrides)
    return row


def write(path: Path, rows: list[dict[str, Any]]) -> Path:
    frame = pl.DataFrame(rows, schema=dict.fromkeys(COLUMNS, pl.Utf8))
    if path.suffix == ".csv":
        frame.write_csv(path)
    else:
        frame.write_parquet(path)
    return path


def inbox(folder: Path, fmt: str) -> Path:
    """Files that exercise every per-file rule, in name order (the order they load in);
    ``fmt`` is the format of the group, a file of the other format breaks the run."""
    other = "csv" if fmt == "parquet" else "parquet"
    folder.mkdir()
    write(
        folder / f"a.{fmt}",
        [
            event("e1", 1, taxpayer_tin="123-45-6789"),
            event("e2", 2),
            event("e3", 3),
            event("e3", 4),  # repeats row 3 of this file
            event("e4", 5, occurred_at="not a time"),
            event("e5", 6, event_type=None),
            event("e6", 7),
        ],
    )
    write(
        folder / f"b.{fmt}",
        [
            event("e6", 8),  # a loaded it
            event("e6", 9),  # and repeats row 1 of this file
            event("h1", 10),  # the store holds it from an earlier load
            event("e7", 11),
            event("e8", 12),
        ],
    )
    write(folder / f"c.{fmt}", [])
    shutil.copy(folder / f"b.{fmt}", folder / f"d.{fmt}")  # same content: skipped
    write(folder / f"e.{fmt}", [event("e8", 13), event(None, 14), event("e9", 15)])
    write(folder / f"f.{other}", [event("e9", 16), event("e10", 17)])
    write(folder / f"g.{fmt}", [event("e10", 18), event("e11", 19)])
    return folder


def history(folder: Path) -> Path:
    folder.mkdir()
    return write(folder / "h.parquet", [event("h1", 100)])


def load_all(
    db: Path, history_file: Path, files: Path
) -> tuple[duckdb.DuckDBPyConnection, list[IngestResult]]:
    con = connect(db)
    ingest_paths(con, [history_file], key=KEY)
    return con, ingest_paths(con, [files], key=KEY)


def shown(con: duckdb.DuckDBPyConnection, results: list[IngestResult]) -> dict[str, Any]:
    """Everything a load leaves, with run ids named by their file (ids differ per load)."""
    names = dict(con.execute("SELECT run_id, source_file FROM ingest_runs").fetchall())

    def plain(value: Any) -> Any:
        text = str(value)
        return re.sub(
            r"\bing_\d{8}T\d{6}_[0-9a-f]{8}\b",
            lambda m: Path(names.get(m.group(0), "?")).name,
            text,
        )

    return {
        "results": [
            (
                Path(r.source_file).name,
                r.status,
                r.kind,
                r.rows_read,
                r.rows_loaded,
                r.rows_quarantined,
                sorted(r.quarantined_by_reason.items()),
                sorted(r.warnings),
                plain(r.message),
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
                "SELECT source_file, source_row, source_line, kind, reason_code, field, message,"
                " raw_row, stage, canonical_row FROM quarantine ORDER BY ALL"
            ).fetchall()
        ],
        "runs": con.execute(
            "SELECT source_file, content_sha256, kind, source_system, file_format, rows_read,"
            " rows_loaded, rows_quarantined, status, warnings FROM ingest_runs ORDER BY chain_seq"
        ).fetchall(),
    }


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_a_group_leaves_what_loading_each_file_alone_leaves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    files, old = inbox(tmp_path / "in", fmt), history(tmp_path / "old")
    groups: list[list[str]] = []
    real = ingest_group.load_group

    def spy(con: duckdb.DuckDBPyConnection, paths: list[Path], *a: Any, **kw: Any) -> str:
        groups.append([p.name for p in paths])
        return real(con, paths, *a, **kw)

    monkeypatch.setattr(ingest_run, "load_group", spy)
    grouped, grouped_results = load_all(tmp_path / "grouped.duckdb", old, files)
    # a and b (and c, if its header alone reads the same) form a group; d repeats b's
    # content (ends it, then is skipped); e alone (the other format after it breaks the
    # run); g alone.
    assert len(groups) == 1 and groups[0][:2] == [f"a.{fmt}", f"b.{fmt}"]
    monkeypatch.setattr(ingest_group, "GROUP_FILE_BYTES", 0)  # every file alone
    alone, alone_results = load_all(tmp_path / "alone.duckdb", old, files)
    assert len(groups) == 1

    expected = shown(alone, alone_results)
    got = shown(grouped, grouped_results)
    assert got == expected
    # The comparison covers every per-file rule.
    reasons = {row[4] for row in expected["quarantine"]}
    assert {"duplicate_event_id", "bad_timestamp", "missing_required"} <= reasons
    messages = " ".join(row[6] for row in expected["quarantine"])
    assert "repeats row 3 of this file" in messages
    assert f"already loaded by ingest run a.{fmt}" in messages
    assert "already loaded by ingest run h.parquet" in messages
    assert [r[1] for r in expected["results"]] == [
        "loaded",
        "loaded",
        "loaded",
        "skipped",
        "loaded",
        "loaded",
        "loaded",
    ]
    for r in grouped_results:
        assert r.rows_read == r.rows_loaded + r.rows_quarantined
    assert ledger.verify_store(grouped) == []
    assert "123-45-6789" not in str(got)


def test_a_broken_file_in_a_group_loses_nothing_else(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    write(folder / "a.parquet", [event("e1", 1), event("e2", 2)])
    broken = write(folder / "b.parquet", [event(f"b{i}", i) for i in range(50)])
    raw = bytearray(broken.read_bytes())
    raw[8 : len(raw) // 2] = b"Z" * (len(raw) // 2 - 8)  # the rows, not the footer
    broken.write_bytes(bytes(raw))
    write(folder / "c.parquet", [event("e3", 3)])
    con = connect(tmp_path / "store.duckdb")
    results = ingest_paths(con, [folder], key=KEY)
    assert [(Path(r.source_file).name, r.status, r.rows_loaded) for r in results] == [
        ("a.parquet", "loaded", 2),
        ("b.parquet", "failed", 0),
        ("c.parquet", "loaded", 1),
    ]
    assert "b.parquet" in results[1].message
    assert con.execute(
        "SELECT r.source_file, count(*) FROM disclosure_events e JOIN ingest_runs r"
        " ON r.run_id = e.ingest_run_id GROUP BY 1 ORDER BY 1"
    ).fetchall() == [(str(folder / "a.parquet"), 2), (str(folder / "c.parquet"), 1)]
    assert con.execute("SELECT status FROM ingest_runs ORDER BY chain_seq").fetchall() == [
        ("loaded",),
        ("failed",),
        ("loaded",),
    ]
    assert ledger.verify_store(con) == []


def test_a_crash_inside_a_group_writes_nothing_of_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    write(folder / "a.parquet", [event("e1", 1)])
    write(folder / "b.parquet", [event("e2", 2)])
    con = connect(tmp_path / "store.duckdb")

    def boom() -> None:
        raise RuntimeError("simulated crash between writes")

    monkeypatch.setattr("dwatch.ingest.write._before_commit", boom)
    with pytest.raises(RuntimeError):
        ingest_paths(con, [folder], key=KEY)
    assert con.execute(
        "SELECT (SELECT count(*) FROM disclosure_events), (SELECT count(*) FROM ingest_runs),"
        " (SELECT count(*) FROM quarantine)"
    ).fetchone() == (0, 0, 0)


def test_the_duplicate_check_reads_only_runs_whose_key_range_overlaps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dwatch.ingest.write as ingest_write

    con = connect(tmp_path / "store.duckdb")
    first = ingest_paths(
        con, [write(tmp_path / "a.parquet", [event(f"e{i}", i) for i in (1, 2, 3)])], key=KEY
    )
    second = ingest_paths(
        con, [write(tmp_path / "b.parquet", [event(f"e{i}", i) for i in (5, 6, 7)])], key=KEY
    )
    read: list[object] = []
    real = ingest_write._stored_rows

    def spy(
        con: duckdb.DuckDBPyConnection, kind: str, skip_run: str | None = None
    ) -> tuple[str | None, dict[str, object]]:
        stored, params = real(con, kind, skip_run)
        read.append(params.get("runs"))
        return stored, params

    monkeypatch.setattr(ingest_write, "_stored_rows", spy)
    # e6 repeats the second run; e8 and e9 are new: only the second run's rows are read.
    results = ingest_paths(
        con, [write(tmp_path / "c.parquet", [event("e6", 6), event("e8", 8)])], key=KEY
    )
    assert read == [[second[0].run_id]]
    assert results[0].quarantined_by_reason == {"duplicate_event_id": 1}
    assert (
        con.execute("SELECT message FROM quarantine")
        .fetchone()[0]
        .endswith(f"was already loaded by ingest run {second[0].run_id}")
    )
    # Ids after everything loaded before: the store is not read at all.
    ingest_paths(con, [write(tmp_path / "d.parquet", [event("e90", 90)])], key=KEY)
    assert read[-1] is None
    ranges = con.execute(
        "SELECT ingest_run_id, source_system, first_event_id, last_event_id FROM ingest_key_ranges"
        " ORDER BY first_event_id"
    ).fetchall()
    assert ranges[0] == (first[0].run_id, "irs-disclosure-ledger", "e1", "e3")
    assert len(ranges) == 4


def test_key_ranges_are_backfilled_from_the_events_a_store_already_holds(tmp_path: Path) -> None:
    from dwatch.store import migrate

    con = connect(tmp_path / "store.duckdb")
    ingest_paths(con, [write(tmp_path / "a.parquet", [event("e1", 1), event("e4", 4)])], key=KEY)
    recorded = con.execute("SELECT * FROM ingest_key_ranges").fetchall()
    con.execute("DROP TABLE ingest_key_ranges")
    con.execute("DELETE FROM schema_migrations WHERE version = 27")
    assert 27 in migrate(con)
    assert con.execute("SELECT * FROM ingest_key_ranges").fetchall() == recorded
    results = ingest_paths(con, [write(tmp_path / "b.parquet", [event("e4", 4)])], key=KEY)
    assert results[0].quarantined_by_reason == {"duplicate_event_id": 1}


def test_a_malformed_line_in_a_csv_group_is_kept_as_loading_alone_keeps_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    write(folder / "a.csv", [event("e1", 1), event("e2", 2)])
    # Past the sniffer's sample (20,480 lines), so the file still groups and the group's
    # strict scan is what fails.
    bad = write(folder / "b.csv", [event(f"b{i}", i) for i in range(21_000)])
    lines = bad.read_text().splitlines()
    lines[20_900] += ",one,field,too,many"
    bad.write_text("\n".join(lines) + "\n")
    write(folder / "c.csv", [event("e6", 6)])
    tried: list[list[str]] = []
    real = ingest_group.load_group

    def spy(con: duckdb.DuckDBPyConnection, paths: list[Path], *a: Any, **kw: Any) -> str:
        tried.append([p.name for p in paths])
        return real(con, paths, *a, **kw)

    monkeypatch.setattr(ingest_run, "load_group", spy)
    grouped = connect(tmp_path / "grouped.duckdb")
    got = shown(grouped, ingest_paths(grouped, [folder], key=KEY))
    monkeypatch.setattr(ingest_group, "GROUP_FILE_BYTES", 0)
    alone = connect(tmp_path / "alone.duckdb")
    expected = shown(alone, ingest_paths(alone, [folder], key=KEY))
    assert got == expected
    assert [r[:6] for r in got["results"]] == [
        ("a.csv", "loaded", "events", 2, 2, 0),
        ("b.csv", "loaded", "events", 21_000, 20_999, 1),
        ("c.csv", "loaded", "events", 1, 1, 0),
    ]
    assert [(q[0].rsplit("/", 1)[-1], q[2], q[4]) for q in got["quarantine"]] == [
        ("b.csv", "20901", "malformed_row")
    ]
    assert tried == [["a.csv", "b.csv", "c.csv"]]  # the group was tried, then loaded file by file


def test_a_group_ends_before_its_work_table_outgrows_the_memory_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At 10M events every file fitted one group whose typed work table (4 GB) spilled
    under the 1 GB load cap; a group now stops at WORK_SHARE of the limit, rows counted
    from the Parquet footers."""
    folder = tmp_path / "in"
    folder.mkdir()
    for n, name in enumerate("abcde"):
        write(folder / f"{name}.parquet", [event(f"{name}{i}", 10 * n + i) for i in range(3)])
    monkeypatch.setenv("DWATCH_INGEST_MEMORY", "400MB")
    # Budget: half of ~400 MB. Two 3-row files (160 MB) fit, a third (240 MB) does not.
    monkeypatch.setattr(ingest_group, "WORK_ROW_BYTES", int(200_000_000 / 7.5))
    groups: list[list[str]] = []
    real = ingest_group.load_group

    def spy(con: duckdb.DuckDBPyConnection, paths: list[Path], *a: Any, **kw: Any) -> str:
        groups.append([p.name for p in paths])
        return real(con, paths, *a, **kw)

    monkeypatch.setattr(ingest_run, "load_group", spy)
    split = connect(tmp_path / "split.duckdb")
    got = shown(split, ingest_paths(split, [folder], key=KEY))
    assert groups == [["a.parquet", "b.parquet"], ["c.parquet", "d.parquet"]]  # e alone
    monkeypatch.setattr(ingest_group, "GROUP_FILE_BYTES", 0)
    alone = connect(tmp_path / "alone.duckdb")
    assert got == shown(alone, ingest_paths(alone, [folder], key=KEY))
    assert [r[3:6] for r in got["results"]] == [(3, 3, 0)] * 5
    assert ledger.verify_store(split) == []


def test_a_csv_files_work_is_estimated_from_its_size(tmp_path: Path) -> None:
    small = write(tmp_path / "a.csv", [event("e1", 1)])
    large = write(tmp_path / "b.csv", [event(f"e{i}", i) for i in range(500)])
    con = connect(tmp_path / "store.duckdb")
    planner = ingest_group.GroupPlanner(
        con, [small, large], source=None, force=False, context=ingest_run._Context()
    )
    planner.group_at(0)
    # Never fewer rows than the file holds: the estimate may split a group early, never late.
    assert planner._work_bytes(0) >= 1 * ingest_group.WORK_ROW_BYTES
    assert planner._work_bytes(1) >= 500 * ingest_group.WORK_ROW_BYTES
