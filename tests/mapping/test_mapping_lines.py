"""Line logs (dwatch/mapping_lines.py): extract patterns, records and context lines,
fill_down within a session, unparsed records, and the same rules over JSON Lines."""

from __future__ import annotations

import json
import re
from pathlib import Path

import duckdb
import pytest

from dwatch.errors import ConfigError
from dwatch.ingest import IngestResult, ingest_paths
from dwatch.mapping import load_mapping

PREFIX = r"^(?P<time>\S+) \S+ internal-sftp\[(?P<pid>\d+)\]: "
MAPPING = f"""source_system: sftp
kind: events
match_files: ["*.log"]
extract:
  line:
    - '{PREFIX}close "(?P<path>[^"]*)" bytes (?P<direction>read) [1-9]\\d* written \\d+$'
    - '{PREFIX}session opened for local user (?P<user>\\S+) from'
records: {{line: ': close "'}}
fill_down: [user]
fill_down_within: pid
event_id_from: [time, pid, path]
columns: {{occurred_at: time, event_type: direction, actor_id: user, recipient_agency: user,
          description: path}}
constants: {{disclosing_agency: IRS, data_elements: name, record_count: "1"}}
values: {{event_type: {{read: disclosure}}, recipient_agency: {{ice: DHS-ICE, ssa: SSA}}}}
ignore_columns: [line]
"""


def _line(second: int, pid: int, message: str) -> str:
    return f"2025-08-07T10:00:{second:02d}-04:00 host internal-sftp[{pid}]: {message}"


@pytest.fixture
def sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "sources"
    folder.mkdir()
    (folder / "sftp.yaml").write_text(MAPPING)
    monkeypatch.setenv("DWATCH_SOURCES_DIR", str(folder))
    return folder


def _load(con: duckdb.DuckDBPyConnection, path: Path) -> IngestResult:
    [result] = ingest_paths(con, [path])
    assert result.status == "loaded", result.message
    assert result.rows_read == result.rows_loaded + result.rows_quarantined
    return result


def test_interleaved_sessions_take_their_own_user_and_context_lines_are_no_rows(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, sources: Path
) -> None:
    path = tmp_path / "auth.log"
    path.write_text(
        "\n".join(
            [
                _line(1, 10, "session opened for local user ice from [198.51.100.24]"),
                _line(2, 20, "session opened for local user ssa from [203.0.113.40]"),
                _line(3, 10, 'close "/out/a.csv" bytes read 100 written 0'),
                _line(4, 20, 'close "/out/b.csv" bytes read 200 written 0'),
                _line(5, 30, 'close "/out/c.csv" bytes read 300 written 0'),  # no session line
                _line(6, 10, 'close "/out/d.csv" bytes re'),  # cut short
                _line(7, 10, "session closed for local user ice from [198.51.100.24]"),
            ]
        )
        + "\n"
    )
    result = _load(con, path)
    assert (result.rows_read, result.rows_loaded, result.rows_quarantined) == (4, 2, 2)
    assert result.quarantined_by_reason == {"missing_required": 1, "unparsed_line": 1}
    assert any("3 line(s) are not records" in w for w in result.warnings)
    rows = con.execute(
        "SELECT description, actor_id, recipient_agency, source_row FROM disclosure_events"
        " ORDER BY source_row"
    ).fetchall()
    assert rows == [("/out/a.csv", "ice", "DHS-ICE", 1), ("/out/b.csv", "ssa", "SSA", 2)]
    held = con.execute(
        "SELECT reason_code, field, source_line, raw_row FROM quarantine ORDER BY source_line"
    ).fetchall()
    # The session of pid 30 never said who it was: the record is kept, not guessed.
    assert held[0][:3] == ("missing_required", "recipient_agency", 5)
    assert held[1][:3] == ("unparsed_line", None, 6)
    assert json.loads(held[1][3]) == {"line": _line(6, 10, 'close "/out/d.csv" bytes re')}


def test_a_line_log_loaded_twice_is_skipped_and_ids_are_stable(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, sources: Path
) -> None:
    lines = [
        _line(1, 10, "session opened for local user ice from [198.51.100.24]"),
        _line(3, 10, 'close "/out/a.csv" bytes read 100 written 0'),
    ]
    first, second = tmp_path / "one.log", tmp_path / "two.log"
    first.write_text("\n".join(lines) + "\n")
    # An overlapping export of the same session, with one more line: the same event id.
    second.write_text("\n".join([*lines, _line(9, 10, "session closed")]) + "\n")
    _load(con, first)
    again = _load(con, second)
    assert again.quarantined_by_reason == {"duplicate_event_id": 1}


JOURNAL_MAPPING = """source_system: journal
kind: events
match_columns: [__CURSOR, MESSAGE]
extract:
  MESSAGE:
    - '^close "(?P<path>[^"]*)" bytes (?P<direction>read) [1-9]\\d* written \\d+$'
    - '^session opened for local user (?P<user>\\S+) from'
records: {MESSAGE: '^(forced )?close "'}
fill_down: [user]
fill_down_within: _PID
columns: {event_id: __CURSOR, occurred_at: __REALTIME_TIMESTAMP, event_type: direction,
          actor_id: user, recipient_agency: user, description: path}
timestamp_format: epoch_us
constants: {disclosing_agency: IRS, data_elements: name, record_count: "1"}
values: {event_type: {read: disclosure}, recipient_agency: {ice: DHS-ICE}}
ignore_columns: [SYSLOG_IDENTIFIER]
"""


def test_the_same_rules_read_journald_json_messages(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, sources: Path
) -> None:
    (sources / "journal.yaml").write_text(JOURNAL_MAPPING)
    entries = [
        ("s=1;i=1", "1754575201000000", "48211", "session opened for local user ice from [x]"),
        ("s=1;i=2", "1754575203250000", "48211", 'close "/out/a.csv" bytes read 9 written 0'),
        ("s=1;i=3", "1754575204000000", "48211", "session closed for local user ice from [x]"),
    ]
    path = tmp_path / "journal.json"
    keys = ("__CURSOR", "__REALTIME_TIMESTAMP", "_PID", "MESSAGE")
    records = [{**dict(zip(keys, e, strict=True)), "SYSLOG_IDENTIFIER": "sftp"} for e in entries]
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n{broken\n")
    result = _load(con, path)
    assert (result.rows_read, result.rows_loaded, result.rows_quarantined) == (2, 1, 1)
    assert result.quarantined_by_reason == {"malformed_json": 1}
    row = con.execute(
        "SELECT event_id, strftime(occurred_at AT TIME ZONE 'UTC', '%Y-%m-%d %H:%M:%S.%g'),"
        " actor_id, recipient_agency FROM disclosure_events"
    ).fetchone()
    assert row == ("s=1;i=2", "2025-08-07 14:00:03.250", "ice", "DHS-ICE")


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("extract: {line: '(?P<a'}", "is not a regular expression"),
        ("extract: {line: '(?P<_a>x)'}", "must not start with '_'"),
        ("extract: {line: '(?P<a>x)'}\nfill_down: [b]", "fill_down names ['b']"),
        ("extract: {line: '(?P<a>x)'}\nfill_down_within: a", "fill_down_within without"),
        ("extract: {line: '(?P<a>x)'}\ncolumns: {event_id: 'R[*].id'}", "both walk a list"),
    ],
)
def test_line_rules_are_checked_naming_the_key(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("kind: events\n" + text + "\n")
    with pytest.raises(ConfigError) as caught:
        load_mapping(path)
    assert says in caught.value.what
    assert str(path) in caught.value.render()


def test_a_text_log_has_one_column_named_line(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, sources: Path
) -> None:
    (sources / "sftp.yaml").write_text(MAPPING.replace("  line:\n", "  message:\n", 1))
    path = tmp_path / "x.log"
    path.write_text(_line(1, 1, "hello") + "\n")
    [result] = ingest_paths(con, [path])
    assert result.status == "failed"
    assert "one column, line, not 'message'" in result.message


def test_suggest_drafts_a_line_mapping_from_the_syslog_prefix(tmp_path: Path) -> None:
    from dwatch.mapping_tools import suggest

    rfc = tmp_path / "sftp-ice-20250807.log"
    rfc.write_text(_line(1, 10, "session opened for local user ice from [x]") + "\n")
    draft = suggest(rfc)
    extract = draft.mapping["extract"]
    assert isinstance(extract, dict)
    [pattern] = extract["line"]
    match = re.match(pattern, _line(1, 10, 'close "/a" bytes read 1 written 0'))
    assert match and match.group("pid") == "10" and match.group("message").startswith("close")
    assert draft.mapping["columns"] == {"occurred_at": "time"}
    (tmp_path / "draft.yaml").write_text(draft.to_yaml())
    assert load_mapping(tmp_path / "draft.yaml").lines.active
    # The traditional syslog stamp has no year and no zone: the draft says so, maps no time.
    old = tmp_path / "auth.log"
    old.write_text("Aug  7 10:00:01 host internal-sftp[10]: session opened for local user a\n")
    draft = suggest(old)
    assert any("no year and no zone" in n for n in draft.notes)
    assert draft.mapping["columns"] == {}


def test_a_line_with_invalid_utf8_is_quarantined_and_the_rest_load(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, sources: Path
) -> None:
    path = tmp_path / "session.log"
    text = [
        _line(1, 10, "session opened for local user ice from [198.51.100.24]"),
        _line(3, 10, 'close "/out/a.csv" bytes read 100 written 0'),
    ]
    broken = _line(4, 10, 'close "/out/b.csv" bytes read 5 written 0').encode() + b"\xff\xfe"
    path.write_bytes("\n".join(text).encode() + b"\n" + broken + b"\n")
    result = _load(con, path)
    assert (result.rows_loaded, result.quarantined_by_reason) == (1, {"invalid_utf8": 1})
