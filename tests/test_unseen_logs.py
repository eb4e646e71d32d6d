"""Logs we have never seen: other agencies' citation spellings, headers, time zones and ids.

Inputs here are written the way another agency's export looks (not by our generator):
each case is one thing a human reader understands at once and the pipeline must too, or
must leave empty (NULL) rather than read wrongly.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import duckdb
import pytest

from dwatch.ingest import ingest_paths
from dwatch.policy import Registry, classify_citation, load_registry, sync_registry
from dwatch.pseudonym import pseudonymise


@pytest.fixture(scope="module")
def registry() -> Registry:
    return load_registry()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # A parenthetical note after the citation is prose, not a subdivision.
        ("26 U.S.C. 6103(i)(2) (MOU)", "26 USC 6103(i)(2)"),
        ("26 U.S.C. § 6103(i)(1) (ex parte order)", "26 USC 6103(i)(1)"),
        ("IRC 6103(d)(1) (basic agreement)", "26 USC 6103(d)"),
        ("Privacy Act (b)(7) (written request)", "5 USC 552a(b)(7)"),
        # Quoted by the exporting spreadsheet.
        ('"IRC 6103(i)(2)"', "26 USC 6103(i)(2)"),
        ("'26 USC 6103(l)(1)'", "26 USC 6103(l)(1)"),
        ("\u201c26 U.S.C. \u00a7 6103(j)(1)\u201d", "26 USC 6103(j)(1)"),
        # Other words for "section", and the title written without "U.S.C.".
        ("Sect. 6103(i)(2)", "26 USC 6103(i)(2)"),
        ("Title 26, § 6103(i)(2)", "26 USC 6103(i)(2)"),
        ("Title 26 Section 6103(l)(7)", "26 USC 6103(l)(7)"),
        ("U.S.C. Title 26 § 6103(d)", "26 USC 6103(d)"),
        ("USC 26 6103(d)", "26 USC 6103(d)"),
        # Square brackets for a subdivision.
        ("26 U.S.C. 6103(i)(2)[A]", "26 USC 6103(i)(2)"),
        ("6103[i][2]", "26 USC 6103(i)(2)"),
        # Trailing punctuation and dashes from the brief's list.
        ("26 U.S.C. 6103(i)(2);", "26 USC 6103(i)(2)"),
        ("26 U.S.C. 6103(i)(2)\u2013MOU", "26 USC 6103(i)(2)"),
        ("  irc   6103 ( I ) ( 2 )  ", "26 USC 6103(i)(2)"),
        # What CMS and the exchanges cite for premium tax credit and Medicaid eligibility.
        ("26 U.S.C. 6103(l)(21)(A)", "26 USC 6103(l)(21)"),
        ("IRC 6103(l)(21) (ACA eligibility)", "26 USC 6103(l)(21)"),
        # Prose before the citation, as request letters and free-text fields have it.
        ("Authority: IRC 6103(i)(2)", "26 USC 6103(i)(2)"),
        ("Pursuant to 26 U.S.C. 6103(i)(2)", "26 USC 6103(i)(2)"),
        ("per IRC 6103(i)(2)", "26 USC 6103(i)(2)"),
        ("IAW 26 USC 6103(l)(1)", "26 USC 6103(l)(1)"),
        ("under section 6103(d)", "26 USC 6103(d)"),
        ("MOU - 26 USC 6103(i)(2)", "26 USC 6103(i)(2)"),
        ("IRS-ICE MOU (26 U.S.C. 6103(i)(2))", "26 USC 6103(i)(2)"),
        ("disclosed under the Privacy Act (b)(7)", "5 USC 552a(b)(7)"),
        # A range of subdivisions: the first, and so its registered ancestor.
        ("Section 6103(i)(2)(A)\u2013(B)", "26 USC 6103(i)(2)"),
        ("§ 6103(i)(2)(A)-(B)", "26 USC 6103(i)(2)"),
        ("26 U.S.C. §6103(l)(1)-(2)", "26 USC 6103(l)(1)"),
        # The IRS's own investigative disclosures to third-party witnesses.
        ("section 6103(k)(6)", "26 USC 6103(k)(6)"),
    ],
)
def test_citations_other_agencies_write_are_read(
    registry: Registry, text: str, expected: str
) -> None:
    assert classify_citation(text, registry) == ("ok", expected)


@pytest.mark.parametrize(
    "text",
    ["N/A.", "n.a.", "N\\A", "Not applicable", "NONE.", "none given", "Unk", "(none)", "--;"],
)
def test_placeholders_with_punctuation_mean_no_citation(registry: Registry, text: str) -> None:
    assert classify_citation(text, registry) == ("missing", None)


@pytest.mark.parametrize(
    ("text", "status"),
    [
        # Garbled subdivisions stay malformed: a note in parentheses must not hide them.
        ("6103(i)(2", "malformed"),
        ("6103((i)", "malformed"),
        ("26 USC 6103(i9)", "malformed"),
        # Real law the registry does not hold: empty, never a wrong neighbour.
        ("section 6103(l)(14)", "unknown"),
        ("6103(m)(9) (Medicare)", "unknown"),
        ("8 U.S.C. 1253(a)(1)", "unknown"),
        ("PA (b)(7)", "malformed"),  # "PA" may be Pennsylvania as well as the Privacy Act
        # Prose around a number that is no registered section is not read as a citation.
        ("per MOU 2025 request", "malformed"),
        ("see file 12", "malformed"),
    ],
)
def test_citations_it_cannot_know_stay_empty(registry: Registry, text: str, status: str) -> None:
    assert classify_citation(text, registry) == (status, None)


# ---------------------------------------------------------------------------- ingest

KEY = b"unseen-logs-test-key-0123"
CANONICAL = [
    "event_id",
    "source_system",
    "sequence_no",
    "occurred_at",
    "event_type",
    "disclosing_agency",
    "recipient_agency",
    "actor_id",
    "legal_authority",
    "data_elements",
    "record_count",
    "taxpayer_tin",
    "encrypted",
    "case_number",
    "description",
]


def receipt(event_id: str, **overrides: str) -> dict[str, str]:
    """One row of an ICE-style receipt log, in the canonical columns."""
    row = {
        "event_id": event_id,
        "source_system": "ice-ero-fti-receipts",
        "sequence_no": "1",
        "occurred_at": "2025-06-04T09:15:00-04:00",
        "event_type": "receipt",
        "disclosing_agency": "IRS",
        "recipient_agency": "DHS/ICE",
        "actor_id": "ero.analyst.17",
        "legal_authority": "26 U.S.C. § 6103(i)(2)",
        "data_elements": '["name","address"]',
        "record_count": "1",
        "taxpayer_tin": "",
        "encrypted": "Y",
        "case_number": "",
        "description": "",
    }
    row.update(overrides)
    return row


def write_rows(path: Path, rows: list[dict[str, str]], header: list[str] | None = None) -> Path:
    names = list(rows[0])
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\r\n")
        writer.writerow(header or names)
        writer.writerows([[r[n] for n in names] for r in rows])
    return path


def varchar_values(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str, str]]:
    """(table, column, value) for every text-like value of every table in the store."""
    cols = con.execute(
        "SELECT table_schema, table_name, column_name FROM information_schema.columns"
        " WHERE data_type IN ('VARCHAR', 'JSON') OR data_type LIKE 'VARCHAR%'"
    ).fetchall()
    out = []
    for schema, table, column in cols:
        rows = con.execute(
            f'SELECT DISTINCT CAST("{column}" AS VARCHAR) FROM "{schema}"."{table}"'
            f' WHERE "{column}" IS NOT NULL'
        ).fetchall()
        out += [(table, column, v) for (v,) in rows]
    return out


RAW_SPELLINGS = [
    "123.45.6789",  # dotted, as some case systems print it
    "123 - 45 - 6789",  # spaced dashes, typed by hand
    "12 - 3456789",  # an EIN typed the same way
    "987.65.4321",
    "111-22-3333;444-55-6666",  # a list, one separator apart
]


def test_taxpayer_ids_in_any_spelling_never_reach_the_store(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    rows = [
        receipt(f"ok-{i}", sequence_no=str(i + 1), description=f"subject SSN {raw} matched")
        for i, raw in enumerate(RAW_SPELLINGS)
    ]
    # The same spellings in rows that quarantine (bad record_count) and in a case number.
    rows += [
        receipt(f"bad-{i}", sequence_no=str(10 + i), record_count="lots", case_number=raw)
        for i, raw in enumerate(RAW_SPELLINGS)
    ]
    path = write_rows(tmp_path / "ice_receipts.csv", rows)
    [result] = ingest_paths(con, [path], key=KEY)
    assert (result.rows_loaded, result.rows_quarantined) == (5, 5)
    digits = [re.sub(r"\D", "", tin) for raw in RAW_SPELLINGS for tin in re.split(r"[;,]", raw)]
    leaks = [
        (table, column, value)
        for table, column, value in varchar_values(con)
        for d in digits
        if re.search(r"\D*".join(d), value)
    ]
    assert leaks == []


def test_canonical_headers_in_other_case_and_spacing_load(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    # Upper case with a byte-order mark and ';' as delimiter (a spreadsheet export), and
    # "Occurred At"-style headers: the canonical fields, written another way.
    rows = [receipt(f"up-{i}", sequence_no=str(i + 1)) for i in range(3)]
    upper = tmp_path / "upper.csv"
    with upper.open("w", newline="", encoding="utf-8-sig") as fh:
        writer = csv.writer(fh, delimiter=";")
        writer.writerow([c.upper() for c in rows[0]])
        writer.writerows([list(r.values()) for r in rows])
    spaced = write_rows(
        tmp_path / "spaced.csv",
        [receipt(f"sp-{i}", sequence_no=str(i + 1)) for i in range(2)],
        header=[c.replace("_", " ").title() for c in rows[0]],
    )
    results = ingest_paths(con, [upper, spaced], key=KEY)
    assert [(r.status, r.rows_loaded, r.rows_quarantined) for r in results] == [
        ("loaded", 3, 0),
        ("loaded", 2, 0),
    ]
    assert not any("not canonical" in w for r in results for w in r.warnings)
    got = con.execute(
        "SELECT event_id, authority_id, occurred_at = TIMESTAMPTZ '2025-06-04 13:15:00+00'"
        " FROM disclosure_events ORDER BY event_id"
    ).fetchall()
    assert got == [
        (f"{p}-{i}", "26 USC 6103(i)(2)", True) for p, n in (("sp", 2), ("up", 3)) for i in range(n)
    ]


@pytest.mark.parametrize(
    ("written", "utc"),
    [
        ("2025-06-04T09:15:00-04:00", "2025-06-04 13:15:00"),
        ("2025-06-04 09:15:00 EDT", "2025-06-04 13:15:00"),
        ("2025-12-04 09:15:00 EST", "2025-12-04 14:15:00"),
        ("2025-06-04 06:15:00 PDT", "2025-06-04 13:15:00"),
        ("2025-06-04 08:15:00 cdt", "2025-06-04 13:15:00"),
        ("2025-06-04 09:15:00 America/New_York", "2025-06-04 13:15:00"),
        ("2025-06-04T09:15:00 -04:00", "2025-06-04 13:15:00"),
        ("2025-06-04T13:15:00.123456Z", "2025-06-04 13:15:00.123456"),
        ("2025-06-04 13:15:00 UTC", "2025-06-04 13:15:00"),
    ],
)
def test_zoned_timestamps_in_other_spellings_land_on_the_utc_instant(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, written: str, utc: str
) -> None:
    path = write_rows(tmp_path / "zones.csv", [receipt("z1", occurred_at=written)])
    [result] = ingest_paths(con, [path], key=KEY)
    assert (result.rows_loaded, result.rows_quarantined) == (1, 0), con.execute(
        "SELECT message FROM quarantine"
    ).fetchall()
    (ok,) = con.execute(
        "SELECT occurred_at = CAST(? || '+00' AS TIMESTAMPTZ) FROM disclosure_events", [utc]
    ).fetchone()
    assert ok


def test_a_timestamp_without_any_zone_is_still_refused(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    path = write_rows(tmp_path / "nozone.csv", [receipt("n1", occurred_at="06/04/2025 09:15")])
    [result] = ingest_paths(con, [path], key=KEY)
    assert result.rows_quarantined == 1
    (code, field, message) = con.execute(
        "SELECT reason_code, field, message FROM quarantine"
    ).fetchone()
    assert (code, field) == ("timestamp_without_zone", "occurred_at")
    assert "nozone.csv row 1" in message and "timezone:" in message


def test_an_ssn_that_lost_its_leading_zero_is_the_same_taxpayer(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    # Spreadsheets and integer-typed columns drop leading zeros: 012-34-5678 arrives as
    # 12345678 (and 001-23-4567 as 1234567). It is still that taxpayer.
    path = write_rows(
        tmp_path / "zeros.csv",
        [
            receipt("z1", sequence_no="1", taxpayer_tin="012-34-5678"),
            receipt("z2", sequence_no="2", taxpayer_tin="12345678"),
            receipt("z3", sequence_no="3", taxpayer_tin="001-23-4567"),
            receipt("z4", sequence_no="4", taxpayer_tin="1234567"),
            receipt("z5", sequence_no="5", taxpayer_tin="123456"),  # too short to be one
        ],
    )
    ingest_paths(con, [path], key=KEY)
    refs = dict(con.execute("SELECT event_id, taxpayer_ref FROM disclosure_events").fetchall())
    assert refs["z1"] == refs["z2"] == pseudonymise("012345678", KEY)
    assert refs["z3"] == refs["z4"] == pseudonymise("001234567", KEY)
    assert refs["z5"] == pseudonymise("123456", KEY) != pseudonymise("000123456", KEY)


@pytest.mark.parametrize(
    ("fmt", "written"),
    [("epoch", 1749042900), ("epoch", "1749042900.5"), ("epoch_ms", 1749042900000)],
)
def test_unix_times_load_through_a_mapping_that_names_them(
    con: duckdb.DuckDBPyConnection,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fmt: str,
    written: int | str,
) -> None:
    sources = tmp_path / "sources"
    sources.mkdir()
    (sources / "ssa-ledger.yaml").write_text(
        f"source_system: ssa-ledger\nkind: events\ntimestamp_format: {fmt}\n"
        "columns: {occurred_at: ts}\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("DWATCH_SOURCES_DIR", str(sources))
    row = {k: v for k, v in receipt("u1").items() if k != "occurred_at"}
    path = tmp_path / "ledger.jsonl"
    path.write_text(json.dumps({**row, "ts": written}) + "\n", encoding="utf-8")
    [result] = ingest_paths(con, [path], key=KEY, source="ssa-ledger")
    assert (result.rows_loaded, result.rows_quarantined) == (1, 0), result.message
    (ok,) = con.execute(
        "SELECT occurred_at = TIMESTAMPTZ '2025-06-04 13:15:00+00' + to_seconds(?)"
        " FROM disclosure_events",
        [0.5 if str(written).endswith(".5") else 0],
    ).fetchone()
    assert ok


def test_a_unix_time_without_a_mapping_is_refused_with_the_fix(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    path = write_rows(tmp_path / "epoch.csv", [receipt("e1", occurred_at="1749042900")])
    [result] = ingest_paths(con, [path], key=KEY)
    assert result.rows_quarantined == 1
    (message,) = con.execute("SELECT message FROM quarantine").fetchone()
    assert "Unix time" in message and "timestamp_format: epoch" in message


def test_a_mapping_format_with_the_offset_in_it_needs_no_zone(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sources = tmp_path / "sources"
    sources.mkdir()
    (sources / "usao-log.yaml").write_text(
        'source_system: usao-log\nkind: events\ntimestamp_format: "%m/%d/%Y %H:%M %z"\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("DWATCH_SOURCES_DIR", str(sources))
    path = write_rows(
        tmp_path / "usao.csv",
        [
            receipt("o1", sequence_no="1", occurred_at="06/04/2025 09:15 -0400"),
            receipt("o2", sequence_no="2", occurred_at="2025-06-04T13:15:00Z"),
        ],
    )
    [result] = ingest_paths(con, [path], key=KEY, source="usao-log")
    assert (result.rows_loaded, result.rows_quarantined) == (2, 0)
    (n,) = con.execute(
        "SELECT count(*) FROM disclosure_events"
        " WHERE occurred_at = TIMESTAMPTZ '2025-06-04 13:15:00+00'"
    ).fetchone()
    assert n == 2


@pytest.mark.parametrize(
    ("written", "utc"),
    [
        ("06/04/2025 09:15:00 AM", "2025-06-04 13:15:00"),  # the mapping's zone, EDT then
        ("12/04/2025 09:15:00 AM", "2025-12-04 14:15:00"),  # ... and EST in December
        ("06/04/2025 09:15:00 AM EDT", "2025-06-04 13:15:00"),
        ("06/04/2025 08:15:00 AM CDT", "2025-06-04 13:15:00"),
        ("06/04/2025 01:15:00 PM UTC", "2025-06-04 13:15:00"),
        ("06/04/2025 09:15:00 AM -04:00", "2025-06-04 13:15:00"),
        ("2025-06-04T13:15:00Z", "2025-06-04 13:15:00"),
    ],
)
def test_a_mapping_format_reads_times_that_carry_their_own_zone(
    con: duckdb.DuckDBPyConnection,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    written: str,
    utc: str,
) -> None:
    sources = tmp_path / "sources"
    sources.mkdir()
    (sources / "sft-export.yaml").write_text(
        "source_system: sft-export\nkind: events\ntimezone: America/New_York\n"
        'timestamp_format: "%m/%d/%Y %I:%M:%S %p"\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("DWATCH_SOURCES_DIR", str(sources))
    path = write_rows(tmp_path / "sft.csv", [receipt("s1", occurred_at=written)])
    [result] = ingest_paths(con, [path], key=KEY, source="sft-export")
    assert (result.rows_loaded, result.rows_quarantined) == (1, 0), con.execute(
        "SELECT message FROM quarantine"
    ).fetchall()
    (ok,) = con.execute(
        "SELECT occurred_at = CAST(? || '+00' AS TIMESTAMPTZ) FROM disclosure_events", [utc]
    ).fetchone()
    assert ok


def test_every_row_of_an_unseen_agency_log_lands_once_with_its_citation_read(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    # (legal_authority as written, authority_id a reader would give it, or None)
    cited = [
        ("26 U.S.C. § 6103(i)(2)", "26 USC 6103(i)(2)"),
        ("26 USC 6103 (i)(2)(A)", "26 USC 6103(i)(2)"),
        ("IRC §6103(l)(7)", "26 USC 6103(l)(7)"),
        ("I.R.C. 6103(d)(1)", "26 USC 6103(d)"),
        ("Sec. 6103(h)(2)", "26 USC 6103(h)"),
        ("section 6103(k)(6)", "26 USC 6103(k)(6)"),  # registered since issue 13
        ("section 6103(d)(9)", None),  # a paragraph (d) does not have: never read as (d)
        ("6103(i)(1)", "26 USC 6103(i)(1)"),
        ("26 U.S.C. §6103(p)(4)", "26 USC 6103(p)(4)"),
        ("5 U.S.C. 552a(b)(7)", "5 USC 552a(b)(7)"),
        ("Privacy Act (b)(3)", "5 USC 552a(b)(3)"),
        ("PRIVACY ACT (B)(7)", "5 USC 552a(b)(7)"),
        ("26 u.s.c. 6103(I)(2).", "26 USC 6103(i)(2)"),
        ("26 U.S.C. 6103(i)(2)\u2014ICE MOU", "26 USC 6103(i)(2)"),
        ("26 U.S.C. 6103(i)(2) (MOU)", "26 USC 6103(i)(2)"),
        ("n/a", None),
        ("", None),
        ("per MOU", None),
    ]
    rows = [
        receipt(f"c{i}", sequence_no=str(i + 1), legal_authority=text)
        for i, (text, _) in enumerate(cited)
    ]
    rows.append(receipt("bad", sequence_no="99", event_type="transmit"))
    path = write_rows(tmp_path / "ice.csv", rows)
    [result] = ingest_paths(con, [path], key=KEY)
    assert (result.rows_read, result.rows_loaded, result.rows_quarantined) == (
        len(rows),
        len(cited),
        1,
    )
    got = dict(con.execute("SELECT event_id, authority_id FROM disclosure_events").fetchall())
    assert got == {f"c{i}": expected for i, (_, expected) in enumerate(cited)}
    (code, field, message) = con.execute(
        "SELECT reason_code, field, message FROM quarantine"
    ).fetchone()
    assert (code, field) == ("not_in_vocabulary", "event_type")
    assert message.startswith(f"{path} row {len(rows)}: event_type: transmit")
    assert "map it in the source mapping" in message


@pytest.mark.parametrize(
    ("written", "loaded"),
    [
        ("47,289", 47289),
        ("1,280,000", 1280000),
        ("47289.0", 47289),  # a float column (pandas with a gap) or a spreadsheet
        ("1,280,000.00", 1280000),
        ("1e6", 1000000),
        ("47289.6", None),  # a fraction of a record is an error, not 47290
        ("12.5", None),
        ("1.5e6.0", None),
    ],
)
def test_counts_in_other_spellings_load_and_fractions_are_refused(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, written: str, loaded: int | None
) -> None:
    path = write_rows(tmp_path / "counts.csv", [receipt("n1", record_count=written)])
    [result] = ingest_paths(con, [path], key=KEY)
    got = con.execute("SELECT record_count FROM disclosure_events").fetchall()
    if loaded is None:
        assert got == [] and result.rows_quarantined == 1
        (code, message) = con.execute("SELECT reason_code, message FROM quarantine").fetchone()
        assert code == "bad_type" and "not a whole number" in message
    else:
        assert got == [(loaded,)]


def test_a_user_id_that_is_an_ssn_is_pseudonymised_not_stored(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    # Legacy systems used the employee's SSN as the user id.
    rows = [
        receipt("a1", sequence_no="1", actor_id="user 555-12-3456"),
        receipt("a2", sequence_no="2", actor_id="user 555-12-3456"),
        receipt("a3", sequence_no="3", actor_id="555.12.3457"),
        receipt("a4", sequence_no="4", actor_id="ero.analyst.17"),
    ]
    path = write_rows(tmp_path / "legacy.csv", rows)
    [result] = ingest_paths(con, [path], key=KEY)
    assert result.rows_loaded == 4
    actors = dict(con.execute("SELECT event_id, actor_id FROM disclosure_events").fetchall())
    # Still one actor per person (detectors count per user), never the number itself.
    assert actors["a1"] == actors["a2"] == pseudonymise("user 555-12-3456", KEY)
    assert actors["a3"] == pseudonymise("555.12.3457", KEY) != actors["a1"]
    assert actors["a4"] == "ero.analyst.17"
    leaks = [v for _, _, v in varchar_values(con) if re.search(r"555\D*12\D*345[67]", v)]
    assert leaks == []


@pytest.mark.parametrize(
    ("written", "code", "category"),
    [
        ("FTB-CA", None, "state_tax_agency"),  # agency first, then the state
        ("DTF NY", None, "state_tax_agency"),
        ("Cal. FTB", "CA-FTB", "state_tax_agency"),
        ("U.S. Immigration and Customs Enforcement", "DHS-ICE", "immigration_enforcement"),
        ("DHS/ICE", "DHS-ICE", "immigration_enforcement"),
        ("FTB-XX", None, None),  # no such state: unplaced, not guessed
    ],
)
def test_agency_codes_other_systems_write_are_placed(
    con: duckdb.DuckDBPyConnection,
    tmp_path: Path,
    registry: Registry,
    written: str,
    code: str | None,
    category: str | None,
) -> None:
    path = write_rows(tmp_path / "agencies.csv", [receipt("g1", recipient_agency=written)])
    [result] = ingest_paths(con, [path], key=KEY)
    assert result.rows_loaded == 1
    sync_registry(con, registry)
    got = con.execute(
        "SELECT r.code, r.category FROM disclosure_events e"
        " JOIN registry_recipient_resolution r ON r.agency = e.recipient_agency"
    ).fetchone()
    assert got[1] == category
    if code is not None:
        assert got[0] == code


def test_camel_case_keys_of_a_json_export_are_the_canonical_fields(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    camel = {
        "eventId": "cc1",
        "sourceSystem": "usps-inspection-log",
        "sequenceNo": 1,
        "occurredAt": "2025-06-04T09:15:00-04:00",
        "eventType": "access",
        "disclosingAgency": "IRS",
        "recipientAgency": "USPIS",
        "actorID": "insp.9",
        "legalAuthority": "IRC 6103(i)(2)",
        "dataElements": ["name", "address"],
        "recordCount": 1,
        "taxpayerSSN": "123-45-6789",
    }
    path = tmp_path / "uspis.jsonl"
    path.write_text(json.dumps(camel) + "\n", encoding="utf-8")
    [result] = ingest_paths(con, [path], key=KEY)
    assert (result.rows_loaded, result.rows_quarantined) == (1, 0), result.warnings
    assert not any("not canonical" in w for w in result.warnings)
    got = con.execute(
        "SELECT event_id, actor_id, authority_id, taxpayer_ref, extra FROM disclosure_events"
    ).fetchone()
    assert got == ("cc1", "insp.9", "26 USC 6103(i)(2)", pseudonymise("123456789", KEY), None)


@pytest.mark.parametrize(
    "header",
    ["Subject SSN", "SocialSecurityNumber", "Taxpayer Identification Number", "SSN/TIN", "TIN_SSN"],
)
def test_identifier_columns_named_another_way_become_the_subject(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, header: str
) -> None:
    row = receipt("i1")
    del row["taxpayer_tin"]
    row["subject"] = "123-45-6789"
    path = write_rows(tmp_path / "ids.csv", [row], header=[*list(row)[:-1], header])
    [result] = ingest_paths(con, [path], key=KEY)
    assert result.rows_loaded == 1
    got = con.execute("SELECT taxpayer_ref, extra FROM disclosure_events").fetchone()
    assert got == (pseudonymise("123456789", KEY), None)


def test_a_column_about_an_identifier_is_not_taken_for_one(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    row = receipt("i2", taxpayer_tin="")
    row["ssn_verified"] = "Y"
    path = write_rows(tmp_path / "flags.csv", [row])
    ingest_paths(con, [path], key=KEY)
    got = con.execute("SELECT taxpayer_ref, extra FROM disclosure_events").fetchone()
    assert got[0] is None and json.loads(got[1]) == {"ssn_verified": "Y"}


@pytest.mark.parametrize(
    "written",
    [
        '["name","address"]',
        '["Name", "ADDRESS"]',
        "['name', 'address']",  # a Python list written by pandas to_csv
        "['name','address']",
        "NAME;ADDRESS",
        "name, address",
        "name|address",
        "[name, address]",
    ],
)
def test_data_element_lists_in_other_spellings(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, written: str
) -> None:
    path = write_rows(tmp_path / "elements.csv", [receipt("d1", data_elements=written)])
    [result] = ingest_paths(con, [path], key=KEY)
    assert result.rows_loaded == 1, con.execute("SELECT message FROM quarantine").fetchall()
    (got,) = con.execute("SELECT data_elements FROM disclosure_events").fetchone()
    assert got == ["name", "address"]


def test_a_flag_written_another_way_says_how_to_map_it(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    path = write_rows(
        tmp_path / "flags.csv",
        [receipt("f1", sequence_no="1", encrypted="Yes"), receipt("f2", encrypted="AES-256")],
    )
    [result] = ingest_paths(con, [path], key=KEY)
    assert (result.rows_loaded, result.rows_quarantined) == (1, 1)
    (field, message) = con.execute("SELECT field, message FROM quarantine").fetchone()
    assert field == "encrypted"
    assert "AES-256 is not true/false" in message and "values:" in message


def test_a_masked_ssn_is_no_subject_rather_than_everyone_with_those_last_digits(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    # Logs often keep only the last four digits; two people share them easily.
    path = write_rows(
        tmp_path / "masked.csv",
        [
            receipt("m1", sequence_no="1", taxpayer_tin="XXX-XX-6789"),
            receipt("m2", sequence_no="2", taxpayer_tin="***-**-6789"),
            receipt("m3", sequence_no="3", taxpayer_tin="xx-xxx6789"),
            receipt("m4", sequence_no="4", taxpayer_tin="123-45-6789"),
        ],
    )
    [result] = ingest_paths(con, [path], key=KEY)
    assert result.rows_loaded == 4
    refs = dict(con.execute("SELECT event_id, taxpayer_ref FROM disclosure_events").fetchall())
    assert refs == {"m1": None, "m2": None, "m3": None, "m4": pseudonymise("123456789", KEY)}
    assert pseudonymise("XXX-XX-6789", KEY) is None
