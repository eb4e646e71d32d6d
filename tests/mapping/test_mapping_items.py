"""[*] paths: one record per item of a list (dwatch/mapping_items.py), counts adding up
with items as the rows, raw forms holding the item, and mappings that cannot work refused."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from dwatch.errors import ConfigError
from dwatch.ingest import IngestResult, ingest_paths
from dwatch.mapping import SourceMapping, load_mapping

RECORDS_MAPPING = """source_system: trail
kind: events
match_files: ["trail-*.json"]
columns: {event_id: "Records[*].eventID", occurred_at: "Records[*].eventTime",
          event_type: "Records[*].eventName", actor_id: "Records[*].userIdentity.arn",
          recipient_agency: "Records[*].recipientAccountId"}
constants: {disclosing_agency: IRS, data_elements: name, record_count: "1"}
values: {event_type: {GetObject: access, PutObject: receipt}}
"""


def _record(n: int, name: str = "GetObject", when: str | None = None) -> dict[str, object]:
    return {
        "eventID": f"ev-{n}",
        "eventTime": when or f"2025-08-07T14:0{n}:00Z",
        "eventName": name,
        "userIdentity": {"arn": f"arn:aws:iam::111122223333:user/u{n}"},
        "recipientAccountId": "ssa",
    }


@pytest.fixture
def sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "sources"
    folder.mkdir()
    monkeypatch.setenv("DWATCH_SOURCES_DIR", str(folder))
    return folder


def _load_one(con: duckdb.DuckDBPyConnection, path: Path) -> IngestResult:
    [result] = ingest_paths(con, [path])
    assert result.status == "loaded", result.message
    assert result.rows_read == result.rows_loaded + result.rows_quarantined
    stored = con.execute("SELECT count(*) FROM disclosure_events").fetchone()[0]
    held = con.execute("SELECT count(*) FROM quarantine").fetchone()[0]
    assert (stored, held) == (result.rows_loaded, result.rows_quarantined)
    return result


def test_each_item_of_a_records_list_is_one_event_and_every_line_is_counted(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, sources: Path
) -> None:
    (sources / "trail.yaml").write_text(RECORDS_MAPPING)
    path = tmp_path / "trail-0001.json"
    lines = [
        {"Records": [_record(1), _record(2, "PutObject"), _record(3)]},
        {"Records": []},  # a log file with no events
        {"Records": [_record(4, when="last tuesday"), _record(5)]},
    ]
    path.write_text("\n".join(json.dumps(x) for x in lines) + '\n{"Records": [tru\n')
    result = _load_one(con, path)
    # 5 items, one line listing none, one unreadable line.
    assert (result.rows_read, result.rows_loaded, result.rows_quarantined) == (7, 4, 3)
    assert result.quarantined_by_reason == {"no_items": 1, "malformed_json": 1, "bad_timestamp": 1}
    assert any("5 item(s) of Records[*] in 2 line(s)" in w for w in result.warnings)
    events = con.execute(
        "SELECT event_id, event_type, actor_id, source_row FROM disclosure_events ORDER BY source_row"
    ).fetchall()
    assert [e[:2] for e in events] == [
        ("ev-1", "access"), ("ev-2", "receipt"), ("ev-3", "access"), ("ev-5", "access"),
    ]  # fmt: skip
    assert events[1][2] == "arn:aws:iam::111122223333:user/u2"
    # source_row is the item's place in the file; source_line the line that held it.
    held = con.execute(
        "SELECT reason_code, source_row, source_line FROM quarantine ORDER BY source_row"
    ).fetchall()
    assert held == [("no_items", 4, 2), ("bad_timestamp", 5, 3), ("malformed_json", 7, 4)]
    assert [e[3] for e in events] == [1, 2, 3, 6]


def test_a_quarantined_item_keeps_the_item_not_the_whole_list(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, sources: Path
) -> None:
    (sources / "trail.yaml").write_text(RECORDS_MAPPING)
    path = tmp_path / "trail-0002.json"
    bad = _record(2, when="garbage")
    path.write_text(json.dumps({"Records": [_record(1), bad, _record(3)]}) + "\n")
    result = _load_one(con, path)
    assert (result.rows_loaded, result.rows_quarantined) == (2, 1)
    raw, canonical = con.execute("SELECT raw_row, canonical_row FROM quarantine").fetchone()
    assert json.loads(json.loads(raw)["Records"]) == bad
    # Canonical terms too: the fields that did convert are there for the checks.
    assert json.loads(canonical)["event_id"] == "ev-2"


TAXPAYERS_MAPPING = """source_system: bulk-request
kind: events
columns: {event_id: id, occurred_at: at, actor_id: officer, recipient_agency: to,
          event_type: type, description: "subjects[*].note"}
identifiers: ["subjects[*].tin"]
constants: {disclosing_agency: IRS, data_elements: "name;address", record_count: "1"}
match_columns: [id, subjects]
"""


def test_an_event_listing_several_taxpayers_becomes_one_event_per_taxpayer(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, sources: Path
) -> None:
    (sources / "bulk-request.yaml").write_text(TAXPAYERS_MAPPING)
    path = tmp_path / "bulk.jsonl"
    tins = ["123-45-6789", "987-65-4321", "111-22-3333"]
    record = {
        "id": "D-7", "at": "2025-08-07T14:00:00Z", "officer": "o1", "to": "DHS-ICE",
        "type": "disclosure",
        "subjects": [{"tin": t, "note": f"subject {i}"} for i, t in enumerate(tins, 1)],
    }  # fmt: skip
    path.write_text(json.dumps(record) + "\n")
    result = _load_one(con, path)
    assert (result.rows_read, result.rows_loaded) == (3, 3)
    rows = con.execute(
        "SELECT event_id, taxpayer_ref, description, recipient_agency FROM disclosure_events"
        " ORDER BY source_row"
    ).fetchall()
    # The record's id repeats on each item: '#position' keeps each event its own.
    assert [r[0] for r in rows] == ["D-7#1", "D-7#2", "D-7#3"]
    assert [r[2] for r in rows] == ["subject 1", "subject 2", "subject 3"]
    assert {r[3] for r in rows} == {"DHS-ICE"}
    refs = [r[1] for r in rows]
    assert len(set(refs)) == 3 and all(ref.startswith("tp_") for ref in refs)
    dump = json.dumps(con.execute("SELECT * FROM disclosure_events").fetchall(), default=str)
    assert not any(t in dump or t.replace("-", "") in dump for t in tins)


def test_position_of_the_item_maps_request_items(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, sources: Path
) -> None:
    (sources / "request-file.yaml").write_text(
        "source_system: request-file\nkind: request_items\n"
        'columns: {request_id: request, event_id: event, item_no: "subjects[#]",'
        ' supplied_name: "subjects[*].name"}\n'
        'identifiers: ["subjects[*].ssn"]\nmatch_columns: [request, subjects]\n'
    )
    path = tmp_path / "requests.jsonl"
    request = {
        "request": "R-1", "event": "E-1",
        "subjects": [{"ssn": "123456789", "name": "A"}, {"ssn": "987654321", "name": "B"}],
    }  # fmt: skip
    path.write_text(json.dumps(request) + "\n" + json.dumps({"request": "R-2", "event": "E-2"}))
    [result] = ingest_paths(con, [path])
    assert result.status == "loaded", result.message
    assert (result.rows_read, result.rows_loaded, result.rows_quarantined) == (3, 2, 1)
    assert result.quarantined_by_reason == {"no_items": 1}
    rows = con.execute(
        "SELECT request_id, event_id, item_no, supplied_name FROM request_items ORDER BY item_no"
    ).fetchall()
    # request_items' event_id is no event key: it is kept as written, not suffixed.
    assert rows == [("R-1", "E-1", 1, "A"), ("R-1", "E-1", 2, "B")]


def test_a_list_nested_in_an_object_keeps_the_objects_other_fields(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, sources: Path
) -> None:
    # EventBridge delivers a CloudTrail record under detail, with its resources list.
    (sources / "bridge.yaml").write_text(
        "source_system: bridge\nkind: events\nmatch_columns: [detail, account]\n"
        "columns: {event_id: detail.eventID, occurred_at: detail.eventTime,"
        ' event_type: detail.eventName, actor_id: account, description: "detail.resources[*].ARN"}\n'
        "constants: {disclosing_agency: IRS, recipient_agency: SSA, data_elements: name,"
        ' record_count: "1"}\nvalues: {event_type: {GetObject: access}}\n'
    )
    path = tmp_path / "bridge.jsonl"
    detail = {
        "eventID": "ev-9", "eventTime": "2025-08-07T14:00:00Z", "eventName": "GetObject",
        "resources": [{"type": "AWS::S3::Object", "ARN": "arn:aws:s3:::b/k"},
                      {"type": "AWS::S3::Bucket", "ARN": "arn:aws:s3:::b"}],
    }  # fmt: skip
    path.write_text(json.dumps({"account": "111122223333", "detail": detail}) + "\n")
    _load_one(con, path)
    rows = con.execute(
        "SELECT event_id, event_type, actor_id, description FROM disclosure_events"
        " ORDER BY source_row"
    ).fetchall()
    assert rows == [
        ("ev-9#1", "access", "111122223333", "arn:aws:s3:::b/k"),
        ("ev-9#2", "access", "111122223333", "arn:aws:s3:::b"),
    ]


def test_a_wildcard_mapping_on_csv_fails_the_file_saying_why(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, sources: Path
) -> None:
    (sources / "trail.yaml").write_text(RECORDS_MAPPING.replace("trail-*.json", "trail-*.csv"))
    path = tmp_path / "trail-1.csv"
    path.write_text("Records\nx\n")
    [result] = ingest_paths(con, [path])
    assert result.status == "failed"
    assert "read from JSON Lines only" in result.message


@pytest.mark.parametrize(
    ("columns", "says"),
    [
        ('{event_id: "a[*].id", actor_id: "b[*].id"}', "several lists"),
        ('{event_id: "a[*].b[*].id"}', "more than one list"),
        ('{item_no: "a[#].x"}', "more than one list, or [#] is not at its end"),
        ('{event_id: "[*].id"}', "names no list"),
    ],
)
def test_mappings_walking_lists_wrongly_are_refused_naming_the_key(
    tmp_path: Path, columns: str, says: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(f"columns: {columns}\n")
    with pytest.raises(ConfigError) as caught:
        load_mapping(path)
    assert says in caught.value.what
    assert "bad.yaml: columns" in caught.value.render()


def test_suggest_walks_the_list_that_holds_the_events_with_a_wildcard(tmp_path: Path) -> None:
    from dwatch.mapping_tools import suggest

    path = tmp_path / "111122223333_CloudTrail_us-east-1_20250807T1415Z_a.json"
    records = [{**_record(n), "resources": [{"ARN": "a"}, {"ARN": "b"}]} for n in (1, 2, 3)]
    path.write_text(json.dumps({"Records": records}) + "\n")
    draft = suggest(path)
    columns = draft.mapping["columns"]
    assert isinstance(columns, dict)
    # Names inside an item are matched as the item's own (eventName, not Records.eventName);
    # the shorter resources list inside an item is read at its first item.
    assert columns["event_id"] == "Records[*].eventID"
    assert columns["event_type"] == "Records[*].eventName"
    assert columns["occurred_at"] == "Records[*].eventTime"
    assert any("Records[*]: one event per item" in n for n in draft.notes)
    assert "Records[*].resources[0].ARN" in " ".join(draft.notes)
    parsed = load_mapping_text(draft.to_yaml(), tmp_path)
    assert parsed.item_list == "Records"


def load_mapping_text(text: str, folder: Path) -> SourceMapping:
    path = folder / "draft.yaml"
    path.write_text(text)
    return load_mapping(path)
