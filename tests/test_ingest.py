"""Ingest: every record ends in exactly one place, bad input says where and why."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest

import dwatch.ingest as ingest_module
import dwatch.ingest.run as ingest_run
import dwatch.ingest.write as ingest_write
from dwatch.ingest import IngestResult, ingest_paths
from dwatch.schema import load_schema

KEY = b"unit-test-pseudonym-key"
RAW_TIN = "123-45-6789"

EVENT_COLUMNS = [f.name for f in load_schema().events.input_fields if f.name != "taxpayer_ref"] + [
    "taxpayer_tin"
]


def event(**overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "event_id": "e1",
        "source_system": "irs-disclosure-ledger",
        "sequence_no": 1,
        "occurred_at": "2025-08-07T10:00:00-04:00",
        "event_type": "disclosure",
        "disclosing_agency": "IRS",
        "recipient_agency": "CA-FTB",
        "actor_id": "irs-u-17",
        "actor_role": "disclosure_officer",
        "request_id": "req-1",
        "legal_authority": "26 U.S.C. § 6103(d)",
        "purpose": "state_tax_administration",
        "data_elements": '["name","address","income"]',
        "record_count": 120000,
        "taxpayer_tin": "",
        "channel": "sftp",
        "encrypted": "true",
        "agreement_id": "",
        "case_number": "",
        "description": "",
        "outcome": "success",
    }
    row.update(overrides)
    return row


def write_csv(path: Path, rows: list[dict[str, Any]], columns: list[str] | None = None) -> Path:
    columns = columns or list(rows[0].keys()) if rows else (columns or EVENT_COLUMNS)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path.write_text(buf.getvalue(), encoding="utf-8")
    return path


def events(n: int, start: int = 1, **overrides: Any) -> list[dict[str, Any]]:
    return [event(event_id=f"e{i}", sequence_no=i, **overrides) for i in range(start, start + n)]


def load(con: duckdb.DuckDBPyConnection, *paths: Path | str, **kw: Any) -> list[IngestResult]:
    return ingest_paths(con, list(paths), key=KEY, **kw)


def counts(con: duckdb.DuckDBPyConnection) -> tuple[int, int, int]:
    ev = con.execute("SELECT count(*) FROM disclosure_events").fetchone()[0]
    it = con.execute("SELECT count(*) FROM request_items").fetchone()[0]
    q = con.execute("SELECT count(*) FROM quarantine").fetchone()[0]
    return ev, it, q


def assert_counts_add_up(con: duckdb.DuckDBPyConnection, results: list[IngestResult]) -> None:
    for r in results:
        assert r.rows_read == r.rows_loaded + r.rows_quarantined, r
        if r.status == "loaded":
            table = "disclosure_events" if r.kind == "events" else "request_items"
            loaded = con.execute(
                f"SELECT count(*) FROM {table} WHERE ingest_run_id = ?", [r.run_id]
            ).fetchone()[0]
            quarantined = con.execute(
                "SELECT count(*) FROM quarantine WHERE ingest_run_id = ?", [r.run_id]
            ).fetchone()[0]
            assert (loaded, quarantined) == (r.rows_loaded, r.rows_quarantined)
            recorded = con.execute(
                "SELECT rows_read, rows_loaded, rows_quarantined FROM ingest_runs WHERE run_id = ?",
                [r.run_id],
            ).fetchone()
            assert recorded == (r.rows_read, r.rows_loaded, r.rows_quarantined)


def quarantined(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    cur = con.execute("SELECT * FROM quarantine ORDER BY source_file, source_row")
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


# ---------------------------------------------------------------------------- good input


def test_canonical_csv_loads_typed_and_in_utc(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "ledger.csv", events(3))
    [result] = load(con, path)
    assert result.status == "loaded" and result.rows_loaded == 3 and result.rows_quarantined == 0
    row = con.execute(
        "SELECT occurred_at, data_elements, record_count, encrypted, source_row FROM disclosure_events WHERE event_id = 'e1'"
    ).fetchone()
    assert str(row[0]) == "2025-08-07 14:00:00+00:00"
    assert row[1:] == (["name", "address", "income"], 120000, True, 1)
    assert_counts_add_up(con, [result])


def test_jsonl_and_parquet_load_the_same_rows(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    rows = events(4)
    jsonl = tmp_path / "recipient.jsonl"
    jsonl.write_text(
        "\n".join(
            json.dumps({**r, "event_id": "j" + r["event_id"], "data_elements": ["name", "address"]})
            for r in rows
        )
        + "\n"
    )
    parquet = tmp_path / "ledger.parquet"
    frame = pl.DataFrame(
        [{**r, "event_id": "p" + r["event_id"], "data_elements": ["name"]} for r in rows]
    )
    frame.with_columns(pl.col("record_count").cast(pl.Int64)).write_parquet(parquet)
    results = load(con, jsonl, parquet)
    assert [r.rows_loaded for r in results] == [4, 4]
    got = con.execute(
        "SELECT event_id, data_elements FROM disclosure_events ORDER BY event_id"
    ).fetchall()
    assert got[0] == ("je1", ["name", "address"]) and got[4] == ("pe1", ["name"])
    assert_counts_add_up(con, results)


def test_request_items_recognised_by_columns(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    path = tmp_path / "items.csv"
    path.write_text(
        "request_id,event_id,item_no,taxpayer_tin,supplied_name,supplied_address,tax_periods,statute,reason,match_method\n"
        "r1,e1,1,900-70-0001,A. Doe,Failed to Provide,2022,8 USC 1253(a)(1),failure to depart,tin\n"
        "r1,e1,2,900-70-0002,B. Roe,1 Main St Springfield IL 62701,2022,8 USC 1253(a)(1),failure to depart,tin\n"
    )
    [result] = load(con, path)
    assert result.kind == "request_items" and result.rows_loaded == 2
    refs = [
        r[0]
        for r in con.execute("SELECT taxpayer_ref FROM request_items ORDER BY item_no").fetchall()
    ]
    assert all(r.startswith("tp_") for r in refs) and refs[0] != refs[1]


def test_raw_identifiers_are_never_stored_anywhere(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    rows = events(2, taxpayer_tin=RAW_TIN, case_number=f"note about {RAW_TIN}")
    rows.append(event(event_id="bad", sequence_no="x", taxpayer_tin=RAW_TIN))
    load(con, write_csv(tmp_path / "x.csv", rows))
    digits = RAW_TIN.replace("-", "")
    for table in ("disclosure_events", "quarantine", "ingest_runs"):
        dump = str(con.execute(f"SELECT * FROM {table}").fetchall())
        assert RAW_TIN not in dump and digits not in dump, table


def test_mapping_renames_converts_and_names_the_zone(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sources = tmp_path / "sources"
    sources.mkdir()
    (sources / "kiteworks-activity.yaml").write_text(
        """
source_system: kiteworks-activity
kind: events
timezone: America/New_York
timestamp_format: "%m/%d/%Y %I:%M:%S %p"
match_columns: [Activity ID, Event Time]
columns: {event_id: Activity ID, occurred_at: Event Time, actor_id: User, recipient_agency: Recipient,
          event_type: Action, record_count: Records, data_elements: Fields, sequence_no: Seq}
constants: {disclosing_agency: IRS, channel: secure_file_transfer}
values: {event_type: {File Upload: disclosure, File Download: access}}
list_separator: "|"
ignore_columns: [Browser]
"""
    )
    monkeypatch.setenv("DWATCH_SOURCES_DIR", str(sources))
    path = tmp_path / "export.csv"
    path.write_text(
        "Activity ID,Seq,Event Time,User,Recipient,Action,Records,Fields,Browser\n"
        "A-1,1,08/07/2025 02:15:00 PM,jdoe,dhs-ice,File Upload,47289,name|address,Firefox\n"
    )
    [result] = load(con, path)
    assert result.status == "loaded", result.message
    assert result.source_system == "kiteworks-activity"
    row = con.execute(
        "SELECT source_system, event_type, recipient_agency, disclosing_agency, channel, data_elements,"
        " occurred_at, extra FROM disclosure_events"
    ).fetchone()
    assert row[:6] == (
        "kiteworks-activity",
        "disclosure",
        "DHS-ICE",
        "IRS",
        "secure_file_transfer",
        ["name", "address"],
    )
    assert str(row[6]) == "2025-08-07 18:15:00+00:00"  # 2:15 PM EDT
    assert row[7] is None  # Browser ignored deliberately, nothing else left over


# ---------------------------------------------------------------------------- bad input


def test_missing_required_column_quarantines_every_row(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    cols = [c for c in EVENT_COLUMNS if c != "actor_id"]
    [result] = load(con, write_csv(tmp_path / "noactor.csv", events(3), cols))
    assert result.rows_loaded == 0 and result.rows_quarantined == 3
    assert any("actor_id" in w and "missing from the header" in w for w in result.warnings)
    q = quarantined(con)
    assert {r["reason_code"] for r in q} == {"missing_column"} and {r["field"] for r in q} == {
        "actor_id"
    }
    assert_counts_add_up(con, [result])


def test_unknown_extra_column_is_kept_and_reported(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    rows = [{**r, "ticket": f"T-{i}"} for i, r in enumerate(events(2))]
    [result] = load(con, write_csv(tmp_path / "extra.csv", rows, [*EVENT_COLUMNS, "ticket"]))
    assert result.rows_loaded == 2
    assert any("ticket" in w for w in result.warnings)
    extras = [
        json.loads(r[0])
        for r in con.execute("SELECT extra FROM disclosure_events ORDER BY event_id").fetchall()
    ]
    assert extras == [{"ticket": "T-0"}, {"ticket": "T-1"}]


@pytest.mark.parametrize(
    ("override", "reason", "field"),
    [
        ({"sequence_no": "seven"}, "bad_type", "sequence_no"),
        ({"record_count": "0"}, "out_of_range", "record_count"),
        ({"encrypted": "perhaps"}, "bad_type", "encrypted"),
        ({"event_type": "teleport"}, "not_in_vocabulary", "event_type"),
        ({"channel": "carrier_pigeon"}, "not_in_vocabulary", "channel"),
        ({"occurred_at": "2025-08-07 10:00:00"}, "timestamp_without_zone", "occurred_at"),
        ({"occurred_at": "last tuesday Z"}, "bad_timestamp", "occurred_at"),
        ({"occurred_at": "2025-13-45T10:00:00Z"}, "bad_timestamp", "occurred_at"),
        ({"actor_id": ""}, "missing_required", "actor_id"),
        ({"data_elements": "[]"}, "missing_required", "data_elements"),
        ({"data_elements": "[oops"}, "bad_type", "data_elements"),
    ],
)
def test_bad_field_goes_to_quarantine_naming_file_row_field(
    con: duckdb.DuckDBPyConnection,
    tmp_path: Path,
    override: dict[str, str],
    reason: str,
    field: str,
) -> None:
    rows = events(3)
    rows[1].update(override)
    path = write_csv(tmp_path / "bad.csv", rows)
    [result] = load(con, path)
    assert (result.rows_loaded, result.rows_quarantined) == (2, 1)
    [q] = quarantined(con)
    assert (q["reason_code"], q["field"], q["source_row"], q["source_line"]) == (
        reason,
        field,
        2,
        3,
    )
    assert str(path) in q["message"] and "row 2" in q["message"] and field in q["message"]
    assert json.loads(q["raw_row"])["event_id"] == "e2"
    assert_counts_add_up(con, [result])


def test_padded_values_are_trimmed_and_blank_counts_as_empty(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    # Spaces around a value are the exporter's, not the log's: they are trimmed before
    # typing, checking and pseudonymising; a value of only spaces is an empty value.
    rows = [
        event(
            event_id="  e1 ",
            sequence_no=" 7 ",
            event_type=" Disclosure",
            recipient_agency="ca-ftb  ",
            data_elements=' ["name", " address "] ',
            record_count="  12",
            encrypted=" false ",
            taxpayer_tin=f" {RAW_TIN} ",
        ),
        event(event_id="e2", sequence_no=8, taxpayer_tin=RAW_TIN.replace("-", "")),
        event(event_id="e3", sequence_no=9, actor_id="   "),
    ]
    path = write_csv(tmp_path / "padded.csv", rows)
    [result] = load(con, path)
    assert (result.rows_loaded, result.rows_quarantined) == (2, 1)
    first = con.execute(
        "SELECT event_id, sequence_no, event_type, recipient_agency, data_elements, record_count,"
        " encrypted, taxpayer_ref FROM disclosure_events ORDER BY sequence_no"
    ).fetchall()
    assert first[0][:7] == ("e1", 7, "disclosure", "CA-FTB", ["name", "address"], 12, False)
    assert first[0][7] is not None and first[0][7] == first[1][7]  # same subject, same pseudonym
    [q] = quarantined(con)
    assert (q["reason_code"], q["field"], q["source_row"]) == ("missing_required", "actor_id", 3)
    assert_counts_add_up(con, [result])


@pytest.mark.parametrize(
    ("written", "stored"),
    [
        ('["name","tin"]', ["name", "tin"]),  # compact lower-case: the fast path
        ('["Name", " ADDRESS ", "", null]', ["name", "address"]),  # tidied element by element
        ('["name","\\u0041ddress"]', ["name", "address"]),  # escapes are decoded, then lowered
        ("name;Address|tin", ["name", "address", "tin"]),  # not JSON: split on ; , |
    ],
)
def test_data_elements_are_tidied_whatever_the_spelling(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, written: str, stored: list[str]
) -> None:
    path = write_csv(tmp_path / "elements.csv", [event(data_elements=written)])
    [result] = load(con, path)
    assert result.rows_loaded == 1, result
    assert con.execute("SELECT data_elements FROM disclosure_events").fetchone()[0] == stored


@pytest.mark.parametrize(
    ("written", "utc"),
    [
        ("2025-08-07T14:03:00Z", "2025-08-07 14:03:00+00:00"),
        ("2025-08-07T10:03:00-04:00", "2025-08-07 14:03:00+00:00"),
        ("2025-08-07 19:33:00+0530", "2025-08-07 14:03:00+00:00"),
        ("2025-08-07 14:03:00 UTC", "2025-08-07 14:03:00+00:00"),
        ("2025-08-07 14:03:00GMT", "2025-08-07 14:03:00+00:00"),  # glued suffix: rewritten
    ],
)
def test_zoned_timestamps_in_every_spelling_load_in_utc(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, written: str, utc: str
) -> None:
    path = write_csv(tmp_path / "stamps.csv", [event(occurred_at=written)])
    [result] = load(con, path)
    assert result.rows_loaded == 1, quarantined(con)
    assert str(con.execute("SELECT occurred_at FROM disclosure_events").fetchone()[0]) == utc


def test_duplicate_event_id_within_and_across_files(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    first = write_csv(tmp_path / "a.csv", [*events(3), event(event_id="e2", sequence_no=9)])
    second = write_csv(tmp_path / "b.csv", events(2, start=3))  # e3 already loaded, e4 new
    results = load(con, first, second)
    assert [(r.rows_loaded, r.rows_quarantined) for r in results] == [(3, 1), (1, 1)]
    msgs = [q["message"] for q in quarantined(con)]
    assert any("repeats row 2 of this file" in m for m in msgs)
    assert any("already loaded by ingest run " + results[0].run_id in m for m in msgs)
    assert con.execute(
        "SELECT count(*), count(DISTINCT event_id) FROM disclosure_events"
    ).fetchone() == (4, 4)
    assert_counts_add_up(con, results)


def test_empty_file_fails_clearly_and_writes_nothing(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    [result] = load(con, path)
    assert result.status == "failed" and "empty" in result.message and str(path) in result.message
    assert counts(con) == (0, 0, 0)
    assert con.execute("SELECT status FROM ingest_runs").fetchall() == [("failed",)]


def test_header_only_loads_nothing_and_says_so(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "header.csv", [], EVENT_COLUMNS)
    [result] = load(con, path)
    assert result.status == "loaded" and result.rows_read == 0
    assert any("header only" in w for w in result.warnings)


def test_truncated_last_line_csv_and_jsonl(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    csv_path = write_csv(tmp_path / "cut.csv", events(3))
    text = csv_path.read_text()
    csv_path.write_text(text[: text.rindex(",2025-08-07")])  # last record cut mid-way
    jsonl = tmp_path / "cut.jsonl"
    lines = [json.dumps({**r, "event_id": "j" + r["event_id"]}) for r in events(3)]
    jsonl.write_text("\n".join(lines)[:-25])
    results = load(con, csv_path, jsonl)
    assert [(r.rows_loaded, r.rows_quarantined) for r in results] == [(2, 1), (2, 1)]
    reasons = {
        (q["source_file"].rsplit("/", 1)[-1], q["reason_code"], q["source_line"])
        for q in quarantined(con)
    }
    assert reasons == {("cut.csv", "malformed_row", 4), ("cut.jsonl", "malformed_json", 3)}
    assert_counts_add_up(con, results)


def test_invalid_utf8_row_is_quarantined_others_load(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "latin1.csv", events(3))
    data = path.read_bytes().replace(
        b"irs-u-17,disclosure_officer,req-1", b"irs-u-\xe917,disclosure_officer,req-1", 1
    )
    path.write_bytes(data)
    [result] = load(con, path)
    assert (result.rows_loaded, result.rows_quarantined) == (2, 1)
    [q] = quarantined(con)
    assert q["reason_code"] == "invalid_utf8" and q["source_line"] == 2 and "UTF-8" in q["message"]
    # Row numbers of good rows after the rejected line still match their lines.
    assert con.execute(
        "SELECT list(source_row ORDER BY source_row) FROM disclosure_events"
    ).fetchone()[0] == [2, 3]


def test_path_that_does_not_exist_is_reported_and_others_load(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    good = write_csv(tmp_path / "ok.csv", events(1))
    results = load(con, tmp_path / "nope.csv", good)
    assert [r.status for r in results] == ["failed", "loaded"]
    assert "no such file" in results[0].message and "nope.csv" in results[0].message


def test_folder_of_mixed_formats(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    folder = tmp_path / "logs"
    (folder / "sub").mkdir(parents=True)
    write_csv(folder / "a.csv", events(2))
    (folder / "sub" / "b.jsonl").write_text(json.dumps(event(event_id="j1", sequence_no=10)) + "\n")
    pl.DataFrame([event(event_id="p1", sequence_no=11)]).write_parquet(folder / "c.parquet")
    (folder / "README.md").write_text("# not a log\n")
    (folder / "ground_truth.json").write_text("{}")
    results = load(con, folder)
    assert sorted(Path(r.source_file).name for r in results) == ["a.csv", "b.jsonl", "c.parquet"]
    assert con.execute("SELECT count(*) FROM disclosure_events").fetchone()[0] == 4


def test_same_file_twice_is_a_no_op_unless_forced(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "a.csv", events(2))
    copy = tmp_path / "copy-of-a.csv"
    copy.write_bytes(path.read_bytes())
    first, again, same_content = load(con, path), load(con, path), load(con, copy)
    assert first[0].status == "loaded"
    assert again[0].status == "skipped" and same_content[0].status == "skipped"
    assert "already loaded" in again[0].message and counts(con) == (2, 0, 0)
    [forced] = load(con, path, force=True)
    assert forced.status == "loaded" and (forced.rows_loaded, forced.rows_quarantined) == (0, 2)
    assert counts(con) == (2, 0, 2)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_skipped_file_records_its_hash_and_leaves_no_work_behind(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, suffix: str
) -> None:
    # The hash is computed beside the CSV sniff; every format must still be skipped on its
    # content, with the run recorded and no staging left in the store or the connection.
    rows = events(2)
    path = tmp_path / f"same{suffix}"
    if suffix == ".csv":
        write_csv(path, rows)
    elif suffix == ".jsonl":
        path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    else:
        pl.DataFrame(rows).write_parquet(path)
    [first], [again] = load(con, path), load(con, path)
    assert (first.status, again.status) == ("loaded", "skipped")
    assert first.run_id in again.message and again.kind is None and not again.warnings
    [(status, sha)] = con.execute("SELECT status, content_sha256 FROM ingest_runs").fetchall()
    assert status == "loaded" and sha == ingest_module.file_sha256(path)
    leftovers = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name LIKE 'ingest\\_work%' ESCAPE '\\'"
        " OR table_name LIKE '\\_rejects%' ESCAPE '\\'"
    ).fetchone()[0]
    assert leftovers == 0
    assert not con.execute(
        "SELECT count(*) FROM duckdb_views() WHERE view_name = '_stage'"
    ).fetchone()[0]
    assert counts(con) == (2, 0, 0)


def test_unknown_source_mapping_is_a_clear_error(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    from dwatch.errors import ConfigError

    path = write_csv(tmp_path / "a.csv", events(1))
    with pytest.raises(ConfigError, match="unknown source mapping 'no-such-log'") as info:
        load(con, path, source="no-such-log")
    assert "use one of" in info.value.render()
    assert counts(con) == (0, 0, 0)


def test_crash_mid_load_leaves_store_as_before(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    load(con, write_csv(tmp_path / "a.csv", events(2)))
    before = counts(con)

    def boom() -> None:
        raise RuntimeError("simulated crash between writes")

    monkeypatch.setattr(ingest_write, "_before_commit", boom)
    with pytest.raises(RuntimeError):
        load(
            con,
            write_csv(
                tmp_path / "b.csv", [*events(3, start=10), event(event_id="z", sequence_no="x")]
            ),
        )
    assert counts(con) == before
    assert con.execute("SELECT count(*) FROM ingest_runs").fetchone()[0] == 1


def test_cli_ingest_prints_counts_and_exit_status(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from dwatch.cli import main

    path = write_csv(tmp_path / "a.csv", [*events(2), event(event_id="z", sequence_no="x")])
    db = tmp_path / "cli.duckdb"
    out = CliRunner().invoke(main, ["--db", str(db), "ingest", str(path)])
    assert out.exit_code == 0, out.output
    assert "read 3 = loaded 2 + quarantined 1" in out.output and "bad_type 1" in out.output
    out = CliRunner().invoke(main, ["--db", str(db), "ingest", str(tmp_path / "missing.csv")])
    assert out.exit_code == 1 and "no such file" in out.output


# ---------------------------------------------------------------------------- real log formats

REAL_LOGS = Path(__file__).parent / "fixtures" / "real_logs"


def test_real_secure_transfer_export_is_auto_mapped(con: duckdb.DuckDBPyConnection) -> None:
    [result] = load(con, REAL_LOGS / "kiteworks-activity-2025-08.csv")
    assert result.source_system == "kiteworks-activity"
    assert (result.rows_loaded, result.rows_quarantined) == (3, 1)
    rows = con.execute(
        "SELECT event_id, event_type, record_count, occurred_at, channel, disclosing_agency, authority_id, outcome"
        " FROM disclosure_events ORDER BY sequence_no"
    ).fetchall()
    assert [r[1] for r in rows] == ["disclosure", "receipt", "access"]
    assert rows[0][2] == 47289 and str(rows[0][3]) == "2025-08-07 18:15:09+00:00"
    assert rows[0][4:6] == ("secure_file_transfer", "IRS") and rows[0][7] == "success"
    assert {r[6] for r in rows} == {"26 USC 6103(i)(2)"}  # derived from the registry aliases
    [q] = quarantined(con)
    assert (
        q["reason_code"] == "bad_timestamp" and q["source_line"] == 5 and "%m/%d/%Y" in q["message"]
    )


def test_pub1075_audit_trail_pseudonymises_subject(con: duckdb.DuckDBPyConnection) -> None:
    [result] = load(con, REAL_LOGS / "fti-app-audit.csv")
    assert result.source_system == "pub1075-audit" and result.rows_loaded == 3, result.message
    rows = con.execute(
        "SELECT event_type, outcome, taxpayer_ref, data_elements, record_count FROM disclosure_events ORDER BY sequence_no"
    ).fetchall()
    assert [r[0] for r in rows] == ["access", "access", "redisclosure"]
    assert rows[2][1] == "failure" and rows[0][3] == ["name", "address", "tin"] and rows[0][4] == 1
    assert all(r[2].startswith("tp_") for r in rows)
    assert "900-71-1234" not in str(con.execute("SELECT * FROM disclosure_events").fetchall())


def test_malformed_line_beyond_the_sniffer_sample_falls_back_to_tolerant_read(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    # The fast strict scan sniffs the first lines only; a bad line far below them makes the
    # scan itself fail, and the file must be read again keeping that line for quarantine.
    rows = events(30_000)
    path = write_csv(tmp_path / "long.csv", rows)
    with path.open("a", encoding="utf-8") as fh:
        fh.write("e-cut,irs-disclosure-ledger,30001,2025-08-07T10:00:00Z,disclosure\n")
        csv.writer(fh, lineterminator="\n").writerow(
            event(event_id="e-last", sequence_no=30002).values()
        )
    [result] = load(con, path)
    assert (result.rows_loaded, result.rows_quarantined) == (30_001, 1)
    [q] = quarantined(con)
    assert (q["reason_code"], q["source_line"]) == ("malformed_row", 30_002)
    last = con.execute(
        "SELECT source_row FROM disclosure_events WHERE event_id = 'e-last'"
    ).fetchone()
    assert last == (30_002,)


@pytest.mark.parametrize(
    ("run_limit", "ingest_env", "expected"),
    [("4GB", None, "953.6 MiB"), ("4GB", "600MB", "572.2 MiB"), ("500MB", None, "476.8 MiB")],
)
def test_ingest_caps_duckdb_memory_within_the_run_budget(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    run_limit: str,
    ingest_env: str | None,
    expected: str,
) -> None:
    """Loading spills its work table past DWATCH_INGEST_MEMORY (default 1GB), never above
    the limit the run's connection already has; the run's limit is restored afterwards."""
    seen: list[str] = []
    original = ingest_run.ingest_file

    def spy(con: duckdb.DuckDBPyConnection, *args: object, **kwargs: object) -> object:
        seen.append(con.execute("SELECT current_setting('memory_limit')").fetchone()[0])
        return original(con, *args, **kwargs)

    monkeypatch.setattr(ingest_run, "ingest_file", spy)
    if ingest_env:
        monkeypatch.setenv("DWATCH_INGEST_MEMORY", ingest_env)
    from dwatch.store import connect

    con = connect(tmp_path / "m.duckdb", memory_limit=run_limit)
    before = con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
    sample = sorted(Path("sample_logs").glob("*.csv"))[0]
    [result] = ingest_module.ingest_paths(con, [sample], key=b"k" * 32)
    assert result.status == "loaded", result.message
    assert seen == [expected]
    after = con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
    # DuckDB prints the limit to 0.1 of its unit, so the restored figure may differ by that.
    assert abs(ingest_run._size_bytes(after) - ingest_run._size_bytes(before)) <= 0.11 * 2**30


def test_a_bad_ingest_memory_setting_names_the_variable(
    con: duckdb.DuckDBPyConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dwatch.errors import ConfigError

    monkeypatch.setenv("DWATCH_INGEST_MEMORY", "lots")
    sample = sorted(Path("sample_logs").glob("*.csv"))[0]
    with pytest.raises(ConfigError, match="DWATCH_INGEST_MEMORY='lots'"):
        ingest_module.ingest_paths(con, [sample], key=b"k" * 32)
