"""The one masking policy (dwatch.masking): shapes, ids, file names, SQL equal to Python, logs."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import duckdb
import pytest

from dwatch.ingest import ingest_paths
from dwatch.masking import (
    MASK,
    has_shape,
    install_log_guard,
    mask_path,
    mask_text,
    pseudonymise_id,
    register,
    sql_mask_text,
    sql_pseudonymise_id,
)
from dwatch.pseudonym import hmac_pads, pseudonymise, sql_pseudonymise

KEY = b"a-test-key-of-enough-length"

SHAPED = [
    ("123-45-6789", MASK),
    ("ssn 123 45 6789 asked", f"ssn {MASK} asked"),
    ("123.45.6789", MASK),
    ("123 - 45 - 6789", MASK),
    ("ssn:456-78-9012x", f"ssn:{MASK}x"),
    ("REQ-567-89-0123", f"REQ-{MASK}"),
    ("ev-123456789", f"ev-{MASK}"),
    ("no123456789x", f"no{MASK}x"),
    ("EIN 12-3456789.", f"EIN {MASK}."),
    ("123-45-6789;987-65-4321", f"{MASK};{MASK}"),
    ("(123-45-6789)", f"({MASK})"),
]
UNSHAPED = [
    "1234567890",  # ten digits: a phone or account number
    "call 555-123-4567",
    "2025-06-04T09:15:00Z",
    "order-dmass-25-12822-2026-02-05",  # docket style: one separator is not a TIN
    "26 USC 6103(i)(2)",
    "tp_" + "0123456789abcdef" * 2,  # a pseudonym is a digest, not a number
    "3f2a1234-5678-4abc-9def-123456789abc",  # a UUID
    "",
]


@pytest.mark.parametrize(("text", "masked"), SHAPED)
def test_every_shape_is_masked_in_text(text: str, masked: str) -> None:
    assert mask_text(text) == masked
    assert has_shape(text)


@pytest.mark.parametrize("text", UNSHAPED)
def test_what_is_not_a_shape_stays(text: str) -> None:
    assert mask_text(text) == text
    assert not has_shape(text)


@pytest.mark.parametrize("text", [t for t, _ in SHAPED] + UNSHAPED + [None])
def test_sql_equals_python(text: str | None) -> None:
    con = duckdb.connect()
    register(con)
    ipad, opad = hmac_pads(KEY)
    whole = f"coalesce({sql_pseudonymise('$t')}, '{MASK}')"
    masked, as_id = con.execute(
        f"SELECT {sql_mask_text('$t')}, {sql_pseudonymise_id('$t', whole)}",
        {"t": text, "ipad": ipad, "opad": opad},
    ).fetchone()
    assert masked == mask_text(text)
    assert as_id == pseudonymise_id(text, KEY)


def test_an_id_with_a_shape_becomes_one_pseudonym_however_written() -> None:
    dashed = pseudonymise_id("REQ-567-89-0123", KEY)
    assert dashed is not None and dashed.startswith("tp_")
    assert pseudonymise_id("req 567 89 0123", KEY) == dashed
    # An employee's SSN used as a user id is the same subject as that TIN.
    assert pseudonymise_id("567-89-0123", KEY) == pseudonymise("567890123", KEY)
    # The decision on undashed runs: nine digits alone in an id are treated as a TIN.
    assert pseudonymise_id("ev-123456789", KEY) == pseudonymise("EV123456789", KEY)
    assert pseudonymise_id("ev-12345678", KEY) == "ev-12345678"
    assert pseudonymise_id("ev-1234567890", KEY) == "ev-1234567890"
    # ... unless SSA never issues them: zero-padded serials stay readable (and match labels).
    for serial in ("CA-FTB-000000416", "ev-666123456", "ev-123006789", "ev-123450000"):
        assert pseudonymise_id(serial, KEY) == serial
        assert mask_text(f"see {serial}") == f"see {serial}"
    assert mask_text("call 123-00-0000 or 000-12-3456") == f"call {MASK} or {MASK}"


def test_file_names_keep_two_files_apart() -> None:
    one = mask_path("/in/ledger-123-45-6789.csv", KEY)
    two = mask_path("/in/ledger-987-65-4321.csv", KEY)
    assert "6789" not in one and "4321" not in two and one != two
    assert one == mask_path("/in/ledger-123-45-6789.csv", KEY)
    assert mask_path("/in/ledger-123-45-6789.csv", None) == f"/in/ledger-{MASK}.csv"


def test_log_records_are_masked_when_made(caplog: pytest.LogCaptureFixture) -> None:
    install_log_guard()
    logger = logging.getLogger("dwatch.test")
    with caplog.at_level(logging.INFO, logger="dwatch.test"):
        logger.info("read %s from %s", "ssn:456-78-9012x", "ledger-123456789.csv")
        try:
            raise ValueError("bad value 321-54-9876")
        except ValueError:
            logger.exception("failed")
    text = caplog.text
    assert "9012" not in text and "123456789" not in text and "9876" not in text
    assert text.count(MASK) >= 3


def test_ingest_masks_every_text_field_and_pseudonymises_ids(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    header = [
        "event_id", "source_system", "sequence_no", "occurred_at", "event_type",
        "disclosing_agency", "recipient_agency", "actor_id", "actor_role", "request_id",
        "legal_authority", "purpose", "data_elements", "record_count", "channel",
        "case_number", "description", "outcome", "ref 222-33-4444",
    ]  # fmt: skip
    row = [
        "EV-111-22-3333", "ledger 555.66.7777", "1", "2025-03-03T10:00:00Z", "disclosure",
        "IRS", "CA-FTB 666 77 8888", "user-999887777", "analyst 121-21-2121",
        "REQ-567-89-0123", "26 USC 6103(d) 343-43-4343", "ssn 123-45-6789 asked",
        '["name", "tin 454-54-5454"]', "1", "sftp", "CASE-565656565",
        "note ssn:456-78-9012x", "success 787-87-8787", "extra 909-09-0909",
    ]  # fmt: skip
    path = tmp_path / "ledger-135-79-2468.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([header, row])
    [result] = ingest_paths(con, [path], key=KEY)
    assert result.status == "loaded" and result.rows_loaded == 1, result.message
    stored = con.execute(
        "SELECT event_id, source_system, event_type, disclosing_agency, recipient_agency,"
        " actor_id, actor_role, request_id, legal_authority, purpose, data_elements::VARCHAR,"
        " channel, case_number, description, outcome, extra::VARCHAR FROM disclosure_events"
    ).fetchone()
    runs = con.execute("SELECT source_file, message FROM ingest_runs").fetchall()
    digits = [v.replace("-", "") for v in ("111-22-3333", "555667777", "666778888", "999887777")]
    digits += ["121212121", "567890123", "343434343", "123456789", "454545454", "565656565"]
    digits += ["456789012", "787878787", "909090909", "222334444", "135792468"]
    text = repr((stored, runs)).replace("-", "").replace(" ", "").replace(".", "")
    assert not [d for d in digits if d in text]
    event_id, source, _, _, recipient, actor, *_ = stored
    assert event_id == pseudonymise_id("EV-111-22-3333", KEY)
    assert actor == pseudonymise_id("user-999887777", KEY)
    assert source == pseudonymise_id("ledger 555.66.7777", KEY)
    assert recipient == f"CA-FTB {MASK}"


def test_error_messages_and_ingest_summaries_are_masked(tmp_path: Path) -> None:
    from dwatch.errors import InputError
    from dwatch.ingest import IngestResult, summarise, to_json

    error = InputError("value 321-54-9876 is bad", where="/in/ledger-123-45-6789.csv", fix="fix")
    assert "9876" not in error.render() and "6789" not in error.render()
    result = IngestResult(
        run_id="ing_1",
        source_file=str(tmp_path / "ledger-123-45-6789.csv"),
        status="failed",
        message="ledger-123-45-6789.csv: cannot be read",
        warnings=["ssn:456-78-9012x"],
    )
    for shown in (summarise([result]), to_json([result])):
        assert "6789" not in shown and "9012" not in shown
        assert "cannot be read" in shown


def _store_counting_python_masks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[duckdb.DuckDBPyConnection, list[str]]:
    """A new store whose Python mask records every value it is called with."""
    import dwatch.masking as masking
    from dwatch.store import connect

    calls: list[str] = []
    original = masking.mask_text

    def counting_mask(text: str | None) -> str | None:
        calls.append(text or "")
        return original(text)

    monkeypatch.setattr(masking, "mask_text", counting_mask)
    # registers the counting mask on a new database
    return connect(tmp_path / "store.duckdb"), calls


def test_the_python_mask_sees_only_rows_that_may_carry_a_shape(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The row pre-test decides which rows reach the (slow, per-value) Python mask: a
    clean row with a taxpayer id whose pseudonym is full of hex digits never does, a row
    with a shape in its text does and is masked."""
    con, calls = _store_counting_python_masks(tmp_path, monkeypatch)
    header = ["event_id", "source_system", "occurred_at", "event_type", "disclosing_agency",
              "recipient_agency", "actor_id", "data_elements", "record_count", "taxpayer_tin",
              "description"]  # fmt: skip
    rows = [
        [f"ev-{i}", "ledger", "2025-03-03T10:00:00Z", "disclosure", "IRS", "CA-FTB", "u1",
         '["name"]', "1", f"{900000000 + i * 7919:09d}", "routine"]
        for i in range(300)
    ]  # fmt: skip
    rows.append([*rows[0][:10], "note ssn 123-45-6789"])
    rows[-1][0] = "ev-last"
    path = tmp_path / "events.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([header, *rows])
    [result] = ingest_paths(con, [path], key=KEY)
    assert result.rows_loaded == 301, result.message
    refs = [r for (r,) in con.execute("SELECT taxpayer_ref FROM disclosure_events").fetchall()]
    assert sum(1 for r in refs if any(c.isdigit() for c in r)) > 250  # hex digits abound
    # Only the one row with a shape: each of its text values once, nothing from the others.
    assert "note ssn 123-45-6789" in calls and len(calls) <= len(header), calls[:12]
    [(description,)] = con.execute(
        "SELECT description FROM disclosure_events WHERE event_id = 'ev-last'"
    ).fetchall()
    assert "6789" not in description


def test_a_flagged_row_sends_only_its_matching_fields_to_python(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Serials past 1,010,000 are nine digits SSA could issue ("GA-DOR-001234567"): the row
    is flagged, its id becomes a pseudonym as the policy says, but its clean free text is
    not sent through the Python mask (at 100M events that was 3 calls a row); a shape in
    the free text of such a row is still masked."""
    con, calls = _store_counting_python_masks(tmp_path, monkeypatch)
    header = ["event_id", "source_system", "occurred_at", "event_type", "disclosing_agency",
              "recipient_agency", "actor_id", "data_elements", "record_count", "taxpayer_tin",
              "description"]  # fmt: skip
    rows = [
        [f"GA-DOR-{1_234_567 + i:09d}", "ledger", "2025-03-03T10:00:00Z", "disclosure", "IRS",
         "CA-FTB", "u1", '["name"]', "1", f"{900000000 + i * 7919:09d}", "routine review"]
        for i in range(200)
    ]  # fmt: skip
    rows[-1][10] = "note ssn 123-45-6789"
    path = tmp_path / "events.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([header, *rows])
    [result] = ingest_paths(con, [path], key=KEY)
    assert result.rows_loaded == 200, result.message
    ids = [i for (i,) in con.execute("SELECT event_id FROM disclosure_events").fetchall()]
    assert not any("1234" in i for i in ids)  # every id carried an issuable run
    # The file's name is masked once per file; of the rows' text only the one shape.
    assert "routine review" not in calls and "u1" not in calls, calls[:12]
    assert [c for c in calls if c != path.name] == ["note ssn 123-45-6789"], calls[:12]
    texts = con.execute("SELECT DISTINCT description FROM disclosure_events").fetchall()
    assert sorted(t for (t,) in texts) == ["note ssn [TIN-REDACTED]", "routine review"]


def test_the_sql_pre_test_is_a_superset_of_the_policy_and_skips_padded_serials() -> None:
    """Every value the Python policy calls a shape passes the RE2 pre-test (else it would
    reach the store raw); zero-padded serials SSA never issues do not reach Python at all."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from dwatch.masking import SQL_MAY_HAVE_SHAPE, has_shape

    con = duckdb.connect()

    def flagged(text: str) -> bool:
        return bool(
            con.execute("SELECT regexp_matches(?, ?)", [text, SQL_MAY_HAVE_SHAPE]).fetchone()[0]
        )

    alphabet = st.sampled_from(list("0123456789") * 3 + list("-./ xA:"))

    @settings(max_examples=400, deadline=None)
    @given(st.text(alphabet, min_size=9, max_size=16))
    def superset(text: str) -> None:
        if has_shape(text):
            assert flagged(text), text

    superset()
    for shaped in (
        "123-45-6789",
        "123456789",
        "ev-001010001",
        "12-3456789",
        "x 666 12 3456",
        "900701234",
    ):
        assert has_shape(shaped) and flagged(shaped), shaped
    for serial in ("AK-DOR-000000001", "req-000012345", "666123456", "123001234", "123450000"):
        assert not has_shape(serial) and not flagged(serial), serial
