"""The SQL forms of the masking policy decide as the Python policy does (dwatch.masking).

Property tests: RE2 has no lookaround and reads ASCII digits only, so each SQL form is
checked against the Python functions on generated text built from the pieces that decide
a shape (digit runs of every length, each separator, hexadecimal runs, other scripts'
digits, letters, line breaks)."""

from __future__ import annotations

import csv
from pathlib import Path

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dwatch.masking as masking
from dwatch.ingest import ingest_paths
from dwatch.masking import (
    SQL_MAY_HAVE_SHAPE,
    SQL_SHAPE,
    SQL_SHAPE_NEEDS_PYTHON,
    has_shape,
    pseudonymise_id,
    register,
    sql_has_shape,
)

KEY = b"a-test-key-of-enough-length"
# Digits of other scripts, which Python's \d reads and RE2's [0-9] does not.
ARABIC_ONE = "\u0661"
ARABIC_SSN = "\u0661\u0662\u0663-\u0664\u0665-\u0666\u0667\u0668\u0669"
FULLWIDTH_NINE = "".join(chr(0xFF10 + int(d)) for d in "123456789")

# Pieces a shape is made of, and what sits around one.
_DIGIT_RUN = st.integers(min_value=1, max_value=12).flatmap(
    lambda n: st.text(st.sampled_from("0123456789"), min_size=n, max_size=n)
)
_ISSUABLE = st.integers(min_value=1_010_000, max_value=999_999_999).map(lambda n: f"{n:09d}")
_PADDED = st.integers(min_value=0, max_value=1_009_999).map(lambda n: f"{n:09d}")
_SEPARATOR = st.sampled_from(["-", ".", "/", " ", " - ", "- ", " .", "--", "  ", "\n", ""])
_HEX = st.text(st.sampled_from("0123456789abcdef"), min_size=4, max_size=20)
_OTHER = st.sampled_from(
    [
        "GA-DOR-",
        "ev",
        "x",
        "A",
        "tp_",
        ":",
        "§",
        ARABIC_ONE,
        "\u0662\u0663",
        FULLWIDTH_NINE[:3],
        "é",
        "\t",
        "-",
        "_",
        "f",
    ]
)
_PIECE = st.one_of(_DIGIT_RUN, _ISSUABLE, _PADDED, _SEPARATOR, _HEX, _OTHER)
TEXTS = st.lists(_PIECE, min_size=1, max_size=8).map("".join)


def _connection() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    register(con)
    return con


def _sql_answers(con: duckdb.DuckDBPyConnection, expr: str, texts: list[str]) -> list[object]:
    """``expr`` (over column t) for each text, in order."""
    rows = con.execute(
        f"SELECT i, {expr} FROM (SELECT unnest($texts) AS t, generate_subscripts($texts, 1) AS i)"
        " ORDER BY i",
        {"texts": texts},
    ).fetchall()
    return [answer for _, answer in rows]


def test_the_sql_shape_test_equals_has_shape() -> None:
    """sql_has_shape (RE2, Python only for non-ASCII or digest-like values) answers as
    has_shape; and where it does not fall back, RE2 alone answers as Python."""
    con = _connection()

    @settings(max_examples=300, deadline=None)
    @given(st.lists(TEXTS, min_size=1, max_size=40))
    def equal(texts: list[str]) -> None:
        whole = _sql_answers(con, sql_has_shape("t"), texts)
        assert whole == [has_shape(t) for t in texts]
        alone = _sql_answers(
            con,
            f"CASE WHEN regexp_matches(t, '{SQL_SHAPE_NEEDS_PYTHON}') THEN NULL"
            f" ELSE regexp_matches(t, '{SQL_SHAPE}') END",
            texts,
        )
        for text, answer in zip(texts, alone, strict=True):
            if answer is not None:
                assert answer == has_shape(text), text

    equal()


@pytest.mark.parametrize(
    ("text", "shaped"),
    [
        ("GA-DOR-001234567", True),  # a serial SSA could issue
        ("GA-DOR-000000416", False),  # a zero-padded serial SSA never issues
        ("ev-1234567890", False),  # ten digits
        ("ev-123456789\n", True),
        ("123-45-6789", True),
        ("12-3456789", True),
        ("12822-2026", False),
        ("0123456789abcdef-123-45-6789", True),  # a digest, then a shape
        ("0123456789abcdef123456789", False),  # a shape inside a digest
        (ARABIC_SSN, True),  # other scripts' digits: Python decides
        (f"x{ARABIC_ONE}123456789", False),  # ten digits to Python: the first is not ASCII
        ("", False),
        (None, False),
    ],
)
def test_the_sql_shape_test_on_chosen_values(text: str | None, shaped: bool) -> None:
    con = _connection()
    [(answer,)] = con.execute(
        f"SELECT coalesce({sql_has_shape('$t')}, false)", {"t": text}
    ).fetchall()
    assert answer is shaped is has_shape(text)


def test_the_pre_test_flags_every_shape_in_any_script() -> None:
    """The row pre-test stays a superset of the policy when the digits are not ASCII
    (Python's \\d reads them; RE2's [0-9] does not)."""
    con = _connection()

    @settings(max_examples=300, deadline=None)
    @given(st.lists(TEXTS, min_size=1, max_size=40))
    def superset(texts: list[str]) -> None:
        flagged = _sql_answers(con, f"regexp_matches(t, '{SQL_MAY_HAVE_SHAPE}')", texts)
        for text, flag in zip(texts, flagged, strict=True):
            if has_shape(text):
                assert flag, text

    superset()
    for text in (ARABIC_SSN, FULLWIDTH_NINE, f"ev-{ARABIC_ONE}23456789"):
        assert has_shape(text)
        assert _sql_answers(con, f"regexp_matches(t, '{SQL_MAY_HAVE_SHAPE}')", [text]) == [True]


def test_ids_with_issuable_serials_never_reach_python(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At 100M events serials past 1,010,000 look like issuable SSNs: each such id becomes
    its pseudonym as the policy says, decided in SQL without one Python call; an id that is
    not plain ASCII is still decided by Python."""
    from dwatch.store import connect

    calls: list[str] = []
    original = masking.has_shape

    def counting(text: str | None) -> bool:
        calls.append(text or "")
        return original(text)

    monkeypatch.setattr(masking, "has_shape", counting)
    con = connect(tmp_path / "store.duckdb")  # registers the counting test
    header = ["event_id", "source_system", "occurred_at", "event_type", "disclosing_agency",
              "recipient_agency", "actor_id", "data_elements", "record_count"]  # fmt: skip
    ids = [f"GA-DOR-{1_234_567 + i:09d}" for i in range(150)] + [
        f"GA-DOR-{i:09d}" for i in range(50)
    ]
    ids.append(f"GA-DOR-{ARABIC_ONE}23456789")
    rows = [
        [i, "ledger", "2025-03-03T10:00:00Z", "disclosure", "IRS", "CA-FTB", "u1", '["name"]', "1"]
        for i in ids
    ]
    path = tmp_path / "events.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([header, *rows])
    [result] = ingest_paths(con, [path], key=KEY)
    assert result.rows_loaded == len(ids), result.message
    assert calls == [f"GA-DOR-{ARABIC_ONE}23456789"]
    query = "SELECT event_id FROM disclosure_events ORDER BY source_row"
    stored = [r for (r,) in con.execute(query).fetchall()]
    assert stored == [pseudonymise_id(i, KEY) for i in ids]
    assert sum(1 for s in stored if s.startswith("tp_")) == 151


def test_ids_and_free_text_are_pre_tested_apart_and_both_masked(tmp_path: Path) -> None:
    """A row has one pre-test over its identifiers and one over its free text and lists:
    every combination of an id that looks like an issuable SSN, a shape in free text and
    a shape in a list element is stored as the Python policy says, field by field."""
    from dwatch.masking import mask_text
    from dwatch.store import connect

    con = connect(tmp_path / "store.duckdb")
    header = ["event_id", "source_system", "occurred_at", "event_type", "disclosing_agency",
              "recipient_agency", "actor_id", "data_elements", "record_count", "description"]  # fmt: skip
    rows, expected = [], []
    for n, (serial, text, element) in enumerate(
        (s, t, e)
        for s in (1_234_567, 416)
        for t in ("routine", "ssn 321-54-9876")
        for e in ("name", "tin 454-54-5454")
    ):
        event_id = f"GA-DOR-{serial + n:09d}"
        rows.append([event_id, "ledger", "2025-03-03T10:00:00Z", "disclosure", "IRS", "CA-FTB",
                     f"u{n}", f'["address", "{element}"]', "1", text])  # fmt: skip
        expected.append(
            (pseudonymise_id(event_id, KEY), ["address", mask_text(element)], mask_text(text))
        )
    path = tmp_path / "events.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([header, *rows])
    [result] = ingest_paths(con, [path], key=KEY)
    assert result.rows_loaded == len(rows), result.message
    stored = con.execute(
        "SELECT event_id, data_elements, description FROM disclosure_events ORDER BY source_row"
    ).fetchall()
    assert [tuple(r) for r in stored] == expected
    assert sum(1 for e, _, _ in expected if e.startswith("tp_")) == 4
    assert sum(1 for _, _, d in expected if "TIN-REDACTED" in d) == 4
