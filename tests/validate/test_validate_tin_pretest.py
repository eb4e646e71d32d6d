"""The no-TIN check's GLOB pre-test decides exactly what RE2 alone decides."""

from __future__ import annotations

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dwatch.validate.checks as checks_module
from dwatch.pseudonym import TIN_CORE, TIN_RE
from dwatch.validate.checks import TIN_NEEDS_GLOB, re2_tin_pattern, sql_has_tin

# Digits, the separators a TIN may carry, letters on either side, what else agencies type.
_CHARS = st.text(alphabet="0123456789 -./aZ_(\n\u00e9\u0660", max_size=40)
# Pieces of TINs and what surrounds them, so that many texts hold one or nearly do.
_PIECES = st.lists(
    st.sampled_from(["1", "12", "123", "4567", "1234567", "-", " ", " - ", ".", "/", "a", "_"]),
    max_size=12,
).map("".join)
_TEXT = st.one_of(_CHARS, _PIECES)


def _both(con: duckdb.DuckDBPyConnection, texts: list[str | None]) -> list[tuple[bool, bool]]:
    plain = f"x IS NOT NULL AND regexp_matches(x, '{re2_tin_pattern()}')"
    rows = con.execute(
        f"SELECT {sql_has_tin('x')}, {plain} FROM (SELECT unnest(?::VARCHAR[]) AS x)", [texts]
    ).fetchall()
    return [(bool(a), bool(b)) for a, b in rows]


def test_the_pre_test_is_used_for_the_pattern_it_was_derived_for() -> None:
    assert TIN_NEEDS_GLOB in sql_has_tin("b.c")
    # Were the pattern changed, the reasoning must be made again: the pre-test is dropped.
    assert checks_module._TIN_CORE_ANALYSED == TIN_CORE


def test_another_pattern_gets_re2_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checks_module, "TIN_CORE", r"\d{9}")
    sql = sql_has_tin("b.c")
    assert "GLOB" not in sql
    assert sql.startswith("b.c IS NOT NULL AND regexp_matches(b.c, ")


@pytest.mark.parametrize(
    "text",
    [
        "123-45-6789",
        "ssn 123456789.",
        "EIN 12-3456789 on file",
        "a123-45-6789",
        "12 - 3456789",
        "123 . 45 . 6789",
        "26 U.S.C. 6103(i)(1)",
        "12-34-5678",
        "",
        None,
    ],
)
def test_known_texts(text: str | None) -> None:
    con = duckdb.connect()
    [(fast, plain)] = _both(con, [text])
    assert fast == plain == bool(text and TIN_RE.search(text))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.none(), _TEXT), max_size=30))
def test_same_verdict_as_re2_alone(texts: list[str | None]) -> None:
    con = duckdb.connect()
    for fast, plain in _both(con, texts):
        assert fast == plain
