"""Mapping features real exports need: nested paths, several timestamp patterns, DST
policies, selection by file name, unmapped columns said once per file."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dwatch.errors import ConfigError
from dwatch.ingest import IngestResult, ingest_paths
from dwatch.mapping import load_mapping, match_mapping, split_path

CONSTANTS = (
    "constants: {disclosing_agency: IRS, recipient_agency: SSA, actor_id: a1,"
    ' data_elements: name, record_count: "1", event_type: disclosure}\n'
)


@pytest.fixture
def sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "sources"
    folder.mkdir()
    monkeypatch.setenv("DWATCH_SOURCES_DIR", str(folder))
    return folder


def _counts_add_up(results: list[IngestResult]) -> None:
    for r in results:
        assert r.status == "loaded", r.message
        assert r.rows_read == r.rows_loaded + r.rows_quarantined


def _times(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    rows = con.execute(
        "SELECT event_id, strftime(occurred_at AT TIME ZONE 'UTC', '%Y-%m-%d %H:%M:%S.%g')"
        " FROM disclosure_events"
    ).fetchall()
    return dict(rows)


# ---------------------------------------------------------------------------- nested paths


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("user.id", ("user", '$."id"')),
        ("user.org.code", ("user", '$."org"."code"')),
        ("items[0].name", ("items", '$[0]."name"')),
        ("items[2]", ("items", "$[2]")),
        ("Event Time", None),
    ],
)
def test_dotted_paths_split_into_key_and_json_path(
    path: str, expected: tuple[str, str] | None
) -> None:
    assert split_path(path) == expected


NESTED_MAPPING = """source_system: dhs-audit
kind: events
match_columns: [eventId, user]
columns: {event_id: eventId, sequence_no: seq, occurred_at: eventTime, actor_id: user.id,
          actor_role: user.role, recipient_agency: user.org.code, event_type: action.type,
          record_count: action.records, data_elements: "items[1].name"}
constants: {disclosing_agency: IRS}
"""

NESTED = [
    {
        "eventId": "A1", "seq": 1, "eventTime": "2025-06-01T10:00:00Z",
        "user": {"id": "u1", "role": "analyst", "org": {"code": "dhs-ice"}},
        "action": {"type": "receipt", "records": 2},
        "items": [{"name": "name"}, {"name": "address"}], "client": {"ip": "10.1.1.1"},
    },
    {
        "eventId": "A2", "seq": 2, "eventTime": "2025-06-01T10:01:00Z",
        "user": {"id": "u2", "org": {"code": "DHS-ICE"}},
        "action": {"type": "access", "records": 1}, "items": [{"name": "tin"}, {"name": "wages"}],
    },
]  # fmt: skip


def test_nested_json_lines_map_by_dotted_paths(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, sources: Path
) -> None:
    (sources / "dhs-audit.yaml").write_text(NESTED_MAPPING)
    path = tmp_path / "audit.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in NESTED) + '\n{"eventId": "A3", trunc\n')
    results = ingest_paths(con, [path])
    _counts_add_up(results)
    [r] = results
    assert (r.rows_loaded, r.rows_quarantined, r.source_system) == (2, 1, "dhs-audit")
    rows = con.execute(
        "SELECT event_id, actor_id, actor_role, recipient_agency, event_type, record_count,"
        " data_elements, extra FROM disclosure_events ORDER BY event_id"
    ).fetchall()
    assert rows[0][:7] == ("A1", "u1", "analyst", "DHS-ICE", "receipt", 2, ["address"])
    assert rows[1][:7] == ("A2", "u2", None, "DHS-ICE", "access", 1, ["wages"])
    assert json.loads(rows[0][7]) == {"client": '{"ip":"10.1.1.1"}'}
    # Unmapped columns and partly read nested keys are said once for the file.
    assert sum("['client']" in w for w in r.warnings) == 1
    assert sum("nested key(s) ['action', 'items', 'user']" in w for w in r.warnings) == 1


def test_nested_parquet_maps_by_dotted_paths(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, sources: Path
) -> None:
    (sources / "dhs-audit.yaml").write_text(NESTED_MAPPING)
    path = tmp_path / "audit.parquet"
    pq.write_table(pa.Table.from_pylist([{**r, "client": None} for r in NESTED]), path)
    results = ingest_paths(con, [path])
    _counts_add_up(results)
    rows = con.execute(
        "SELECT event_id, actor_id, recipient_agency, record_count, data_elements"
        " FROM disclosure_events ORDER BY event_id"
    ).fetchall()
    assert rows == [("A1", "u1", "DHS-ICE", 2, ["address"]), ("A2", "u2", "DHS-ICE", 1, ["wages"])]


def test_quarantined_nested_record_keeps_its_whole_raw_form(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, sources: Path
) -> None:
    (sources / "dhs-audit.yaml").write_text(NESTED_MAPPING)
    bad = {**NESTED[0], "eventTime": "yesterday"}
    path = tmp_path / "audit.jsonl"
    path.write_text(json.dumps(bad) + "\n")
    _counts_add_up(ingest_paths(con, [path]))
    (reason, raw) = con.execute("SELECT reason_code, raw_row FROM quarantine").fetchone()
    assert reason == "bad_timestamp"  # 'yesterday' is no date, not a date without a zone
    assert json.loads(json.loads(raw)["user"]) == bad["user"]
    assert json.loads(json.loads(raw)["client"]) == bad["client"]


def test_ignored_nested_key_is_not_kept_but_a_quarantined_record_keeps_it(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, sources: Path
) -> None:
    (sources / "dhs-audit.yaml").write_text(NESTED_MAPPING + "ignore_columns: [client]\n")
    path = tmp_path / "audit.jsonl"
    bad = {**NESTED[0], "eventId": "A9", "seq": "x"}
    path.write_text(json.dumps(NESTED[0]) + "\n" + json.dumps(bad) + "\n")
    [r] = ingest_paths(con, [path])
    assert (r.rows_loaded, r.rows_quarantined) == (1, 1)
    assert not any("client" in w and "not canonical" in w for w in r.warnings)
    assert con.execute("SELECT extra FROM disclosure_events").fetchone() == (None,)
    (raw,) = con.execute("SELECT raw_row FROM quarantine").fetchone()
    assert json.loads(json.loads(raw)["client"]) == {"ip": "10.1.1.1"}
    assert json.loads(raw)["seq"] == "x"


# ---------------------------------------------------------------------------- timestamps


def _ledger(sources: Path, tmp_path: Path, policies: str = "") -> Path:
    (sources / "ledger.yaml").write_text(
        "source_system: ledger\nkind: events\ntimezone: America/New_York\n"
        'timestamp_format: ["%m/%d/%Y %H:%M:%S.%f", "%m/%d/%Y %H:%M:%S"]\n'
        'match_files: ["ledger-*.csv"]\n' + policies + CONSTANTS
    )
    path = tmp_path / "ledger-2025.csv"
    # Byte-order mark and CRLF, as a Windows exporter writes them.
    path.write_bytes(
        "\ufeffevent_id,sequence_no,occurred_at\r\n"
        "E1,1,06/01/2025 12:00:00\r\n"
        "E2,2,06/01/2025 12:00:00.250\r\n"
        "E3,3,11/02/2025 01:30:00\r\n"  # repeated hour: 05:30Z (EDT) or 06:30Z (EST)
        "E4,4,03/09/2025 02:30:00\r\n"  # skipped hour
        "E5,5,11/02/2025 00:30:00\r\n"  # before the change: one reading
        "E6,6,11/02/2025 02:30:00\r\n".encode()  # after it: one reading
    )
    return path


def test_several_patterns_tried_in_order_and_the_default_dst_policies_said(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, sources: Path
) -> None:
    results = ingest_paths(con, [_ledger(sources, tmp_path)])
    _counts_add_up(results)
    assert results[0].rows_loaded == 6
    assert _times(con) == {
        "E1": "2025-06-01 16:00:00.000",
        "E2": "2025-06-01 16:00:00.250",
        "E3": "2025-11-02 05:30:00.000",  # the earlier reading, the default
        "E4": "2025-03-09 07:30:00.000",  # 02:30 EST = 03:30 EDT, the default shift
        "E5": "2025-11-02 04:30:00.000",
        "E6": "2025-11-02 07:30:00.000",
    }
    said = " ".join(results[0].warnings)
    assert "1 zone-less time(s) fall in the hour repeated" in said
    assert "ambiguous_time: earlier, the default" in said
    assert "nonexistent_time: shift, the default" in said


def test_later_reading_and_quarantined_skipped_hour(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, sources: Path
) -> None:
    path = _ledger(sources, tmp_path, "ambiguous_time: later\nnonexistent_time: quarantine\n")
    results = ingest_paths(con, [path])
    _counts_add_up(results)
    times = _times(con)
    assert times["E3"] == "2025-11-02 06:30:00.000" and "E4" not in times
    [(reason, field, message)] = con.execute(
        "SELECT reason_code, field, message FROM quarantine"
    ).fetchall()
    assert (reason, field) == ("nonexistent_local_time", "occurred_at")
    assert "03/09/2025 02:30:00" in message and "skipped" in message
    assert "ambiguous_time: later, set in the mapping" in " ".join(results[0].warnings)


def test_ambiguous_time_quarantined_when_the_mapping_says_so(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, sources: Path
) -> None:
    _counts_add_up(ingest_paths(con, [_ledger(sources, tmp_path, "ambiguous_time: quarantine\n")]))
    assert con.execute("SELECT reason_code FROM quarantine").fetchall() == [
        ("ambiguous_local_time",)
    ]
    assert "E3" not in _times(con)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("ambiguous_time: first\n", "ambiguous_time must be one of"),
        ("nonexistent_time: later\n", "nonexistent_time must be one of"),
        ("timestamp_format: [epoch, '%Y']\n", "epoch_ms / epoch_us cannot be combined"),
        ("match_files: {a: b}\n", "match_files must be a list"),
        ("colums: {}\n", "unknown key(s) ['colums']"),
    ],
)
def test_bad_mapping_keys_are_named(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("kind: events\n" + text)
    with pytest.raises(ConfigError) as caught:
        load_mapping(path)
    assert problem in caught.value.what and str(path) in caught.value.render()


# ---------------------------------------------------------------------------- selection


def test_logs_with_identical_columns_are_told_apart_by_file_name(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, sources: Path
) -> None:
    agencies = {"ice": "DHS-ICE", "ssa": "SSA", "cbp": "DHS-CBP", "uscis": "DHS-USCIS"}
    folder = tmp_path / "receipts"
    folder.mkdir()
    for short, code in agencies.items():
        (sources / f"receipts-{short}.yaml").write_text(
            f"source_system: receipts-{short}\nkind: events\ntimezone: UTC\n"
            f'match_files: ["receipts-{short}-*.parquet"]\nmatch_columns: [rid, ts]\n'
            "columns: {event_id: rid, sequence_no: n, occurred_at: ts}\n"
            f"constants: {{disclosing_agency: IRS, recipient_agency: {code}, actor_id: svc,"
            ' data_elements: name, record_count: "1", event_type: receipt}\n'
        )
        ids = [f"{short}-1", f"{short}-2"]
        table = pa.table({"rid": ids, "n": [1, 2], "ts": ["2025-06-01 10:00:00"] * 2})
        pq.write_table(table, folder / f"receipts-{short}-2025-06.parquet")
    results = ingest_paths(con, [folder])
    _counts_add_up(results)
    assert sorted(r.source_system or "" for r in results) == sorted(
        f"receipts-{s}" for s in agencies
    )
    got = dict(
        con.execute(
            "SELECT source_system, any_value(recipient_agency) FROM disclosure_events GROUP BY 1"
        ).fetchall()
    )
    assert got == {f"receipts-{s}": code for s, code in agencies.items()}


def test_file_name_match_beats_columns_and_needs_its_columns(tmp_path: Path) -> None:
    by_columns = tmp_path / "a.yaml"
    by_columns.write_text("kind: events\nmatch_columns: [x, y, z]\n")
    by_name = tmp_path / "b.yaml"
    by_name.write_text("kind: events\nmatch_files: ['b-*.csv']\nmatch_columns: [x]\n")
    mappings = {p.stem: load_mapping(p) for p in (by_columns, by_name)}
    pick = match_mapping(["x", "y", "z"], mappings=mappings, file_name="b-1.csv")
    assert pick is not None and pick.name == "b"
    pick = match_mapping(["x", "y", "z"], mappings=mappings, file_name="other.csv")
    assert pick is not None and pick.name == "a"
    assert match_mapping(["q"], mappings=mappings, file_name="b-1.csv") is None


def test_identifier_at_a_nested_path_is_pseudonymised_and_never_stored_raw(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, sources: Path
) -> None:
    from dwatch.pseudonym import pseudonymise, resolve_key

    (sources / "dhs-audit.yaml").write_text(NESTED_MAPPING + "identifiers: [subject.ssn]\n")
    good = {**NESTED[0], "subject": {"ssn": "123-45-6789", "name": "J Doe"}}
    bad = {**NESTED[1], "eventTime": "soon", "subject": {"ssn": "987654321"}}
    path = tmp_path / "audit.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    _counts_add_up(ingest_paths(con, [path]))
    (ref,) = con.execute("SELECT taxpayer_ref FROM disclosure_events").fetchone()
    assert ref == pseudonymise("123-45-6789", resolve_key())
    for table in ("disclosure_events", "quarantine", "ingest_runs"):
        dump = str(con.execute(f"SELECT * FROM {table}").fetchall())
        assert "123-45-6789" not in dump and "123456789" not in dump, table
        assert "987654321" not in dump and "987-65-4321" not in dump, table
