from __future__ import annotations

import duckdb
import pytest

from dwatch.errors import ConfigError
from dwatch.masking import register, sql_mask_text
from dwatch.pseudonym import (
    hmac_pads,
    mask_ref,
    pseudonymise,
    resolve_key,
    scrub_identifiers,
    sql_pseudonymise,
)

KEY = b"a-test-key-of-enough-length"


def test_sql_hmac_equals_python_hmac() -> None:
    ipad, opad = hmac_pads(KEY)
    # "---" and " " normalise to nothing: no pseudonym, as in Python.
    values = [
        "123-45-6789",
        "000-12-3456",
        "123-45-67890",
        "1234-5-6789",
        "123-45-678",
        "XXX-XX-6789",
        "123456789",
        " 987 65 4321 ",
        "12-3456789",
        "",
        "---",
        " ",
        "ab-12",
        "GA-DOR-001234567",
        "ga-dor-001234567",
        "TX-CPA-XX-001234567",
        "tx-xa-1",
        "x-x-1234567",
        "X",
        "1234567-A",
        "AB--12",
        "-ab-",
        None,
    ]
    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT unnest(?::VARCHAR[]) AS v", [values])
    rows = con.execute(
        f"SELECT v, {sql_pseudonymise('v')} FROM t", {"ipad": ipad, "opad": opad}
    ).fetchall()
    for raw, pseudo in rows:
        assert pseudo == pseudonymise(raw, KEY)


def test_sql_hmac_equals_python_hmac_on_generated_values() -> None:
    """Every normalisation branch (the dashed SSN, shortened by a lost leading zero, masked,
    stripped of punctuation) gives the Python pseudonym, on generated values."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    ipad, opad = hmac_pads(KEY)
    con = duckdb.connect()
    pieces = st.one_of(
        st.integers(min_value=0, max_value=10**10).map(str),
        st.sampled_from(
            ["-", " ", ".", "/", "X", "x", "*", "#", "XX", "**", "ab", "GA-DOR-", "é", "Xa", "aX-"]
        ),
        st.integers(min_value=0, max_value=999_999_999).map(lambda n: f"{n:09d}"),
        st.integers(min_value=1, max_value=99_999_999).map(str),
    )

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.lists(pieces, min_size=1, max_size=5).map("".join), max_size=30))
    def equal(values: list[str]) -> None:
        rows = con.execute(
            f"SELECT v, {sql_pseudonymise('v')} FROM (SELECT unnest($values::VARCHAR[]) AS v)",
            {"values": values, "ipad": ipad, "opad": opad},
        ).fetchall()
        assert len(rows) == len(values)
        for raw, pseudo in rows:
            assert pseudo == pseudonymise(raw, KEY), raw

    equal()


def test_sql_hmac_equals_python_hmac_on_ids_of_letters_digits_and_dashes() -> None:
    """The plain-id shortcut (letters, digits, dashes, no two X's side by side) and the
    values just outside it (an X pair, a mask character, digits alone) give the Python
    pseudonym."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    ipad, opad = hmac_pads(KEY)
    con = duckdb.connect()

    @settings(max_examples=300, deadline=None)
    @given(st.lists(st.text(alphabet="0127AaBzXx-*# .", max_size=18), max_size=40))
    def equal(values: list[str]) -> None:
        rows = con.execute(
            f"SELECT v, {sql_pseudonymise('v')} FROM (SELECT unnest($values::VARCHAR[]) AS v)",
            {"values": values, "ipad": ipad, "opad": opad},
        ).fetchall()
        assert len(rows) == len(values)
        for raw, pseudo in rows:
            assert pseudo == pseudonymise(raw, KEY), raw

    equal()


def test_same_subject_same_pseudonym_different_key_different() -> None:
    assert pseudonymise("123-45-6789", KEY) == pseudonymise("123456789", KEY)
    assert pseudonymise("123456789", KEY) != pseudonymise("123456789", b"another-key-of-length")
    assert pseudonymise("123456789", KEY).startswith("tp_")


def test_missing_key_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DWATCH_PSEUDONYM_KEY", raising=False)
    with pytest.raises(ConfigError, match="DWATCH_PSEUDONYM_KEY"):
        resolve_key()
    assert resolve_key(allow_demo=True)


def test_scrub_and_mask() -> None:
    text = "called re 123-45-6789 and EIN 12-3456789, ticket 1234567890"
    scrubbed = scrub_identifiers(text, KEY)
    assert "123-45-6789" not in scrubbed and "12-3456789" not in scrubbed
    assert "1234567890" in scrubbed  # ten digits is not a TIN
    con = duckdb.connect()
    register(con)
    (masked,) = con.execute(f"SELECT {sql_mask_text('$1')}", [text]).fetchone()
    assert "123-45-6789" not in masked and "1234567890" in masked
    assert mask_ref("tp_0123456789abcdef") == "tp_0123…"
