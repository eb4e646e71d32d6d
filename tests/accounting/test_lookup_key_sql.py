"""``sql_lookup_key`` computes, without hex text, the key ``lookup_key`` computes in Python
and the index has always held: the first 15 hex digits of md5 as an integer."""

from __future__ import annotations

import duckdb
from hypothesis import given, settings
from hypothesis import strategies as st

from dwatch.accounting.index import lookup_key, sql_lookup_key

# The expression every index built before issue 18's stop 20 was written with.
HEX_KEY = "CAST('0x' || substr(md5({}), 1, 15) AS BIGINT)"


def _keys(texts: list[str | None]) -> list[tuple[int | None, int | None]]:
    con = duckdb.connect()
    return con.execute(
        f"SELECT {sql_lookup_key('t')}, {HEX_KEY.format('t')}"
        " FROM unnest($texts::VARCHAR[]) WITH ORDINALITY u(t, n) ORDER BY n",
        {"texts": texts},
    ).fetchall()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=80), min_size=1, max_size=50))
def test_the_sql_key_is_the_python_key_and_the_old_hex_key(texts: list[str]) -> None:
    for text, (key, hex_key) in zip(texts, _keys(texts), strict=True):
        assert key == hex_key == lookup_key(text)


def test_keys_of_every_first_byte_and_none() -> None:
    """Each of the 8 bytes turned round takes every value somewhere among these digests, and
    the top bit of the first byte set gives no negative key (60 bits fit a BIGINT)."""
    texts: list[str | None] = [f"tp_{i:032x}" for i in range(4096)]
    keys = _keys([*texts, None, ""])
    assert keys[-2] == (None, None)
    assert [k for k, _ in keys[:-2]] == [lookup_key(t) for t in texts if t is not None]
    assert all(k == h and 0 <= k < 1 << 60 for k, h in keys[:-2] if k is not None)
    assert keys[-1][0] == lookup_key("")
    assert max(k for k, _ in keys[:-2] if k is not None) >= 15 << 56  # first hex digit f seen
