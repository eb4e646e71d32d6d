"""The report's shortcuts for masking evidence and CSV cells give what the plain policy gives.

``safety.mask_json`` does not try to parse a string that cannot be JSON; ``render.write_csv``
works out each distinct text's cell once.
Both are compared with the plain functions on generated values built from what decides the
policy (pseudonyms, TIN shapes with every separator, digests, other scripts' digits, JSON
escapes, numbers, formula starts, markup)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import markupsafe
from hypothesis import given, settings
from hypothesis import strategies as st

from dwatch.report.render import write_csv
from dwatch.report.safety import csv_cell, evidence_pairs, mask_free_text, mask_json

PSEUDONYM = "tp_0123456789abcdef0123456789abcdef"
_PIECES = st.sampled_from(
    [
        "123-45-6789",
        "123 45 6789",
        "123456789",
        "000000416",
        "12-3456789",
        "12.3456789",
        "ev-000000123",
        PSEUDONYM,
        PSEUDONYM + "ff",
        "tp_",
        "0123456789abcdef01",
        "3f2a1234-5678-4abc-9def-0123456789ab",
        "\u0661\u0662\u0663-\u0664\u0665-\u0666\u0667\u0668\u0669",
        "\uff11\uff12\uff13",
        "=SUM(A1)",
        "+1",
        "-",
        "@x",
        "\t",
        "\r\n",
        '"',
        "\\",
        "<b>",
        "é",
        " ",
        ",",
        ":",
        "a",
        "7",
        "99",
    ]
)
TEXTS = st.lists(_PIECES, max_size=8).map("".join)
_SCALARS = st.one_of(
    TEXTS,
    st.integers(min_value=-(10**12), max_value=10**12),
    st.sampled_from([123456789, 987654321, 0, -0.0, 0.0, 1.5, True, False, None]),
)
JSON_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(TEXTS, inner, max_size=4)),
    max_leaves=12,
)


@st.composite
def evidence_texts(draw: st.DrawFn) -> str:
    """Evidence as stored: JSON written either way (escaped or not), or text that is not JSON."""
    value = draw(JSON_VALUES)
    kind = draw(st.sampled_from(["ascii", "raw", "compact", "not json"]))
    if kind == "not json":
        return draw(TEXTS)
    if kind == "compact":
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return json.dumps(value, ensure_ascii=kind == "ascii")


def _plain_mask_json(value: object) -> Any:
    """``mask_json`` as it was: every string tried as JSON."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return mask_free_text(value)
    if isinstance(value, dict):
        return {mask_free_text(k): _plain_mask_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain_mask_json(v) for v in value]
    if isinstance(value, str):
        return mask_free_text(value)
    return value


JSONISH = st.lists(
    st.one_of(
        _PIECES,
        st.sampled_from(
            [
                " ",
                "\t",
                "\n",
                "\r",
                "\ufeff",
                "\u00a0",
                "true",
                "false",
                "null",
                "NaN",
                "Infinity",
                "-Infinity",
                "1e5",
                "-0",
                "[",
                "]",
                "{",
                "}",
                '"',
                "tru",
                "nul",
            ]
        ),
    ),
    max_size=6,
).map("".join)


@settings(max_examples=3000, deadline=None)
@given(st.one_of(evidence_texts(), JSONISH, JSON_VALUES, JSONISH.map(lambda t: [t, {t: t}])))
def test_mask_json_skipping_what_cannot_be_json_masks_as_before(value: Any) -> None:
    """The same values, strings that are JSON themselves parsed alike (a digit string in a
    list becomes a number, as it always did)."""
    assert json.dumps(mask_json(value)) == json.dumps(_plain_mask_json(value))


def test_evidence_pairs_mask_pseudonyms_and_shapes_in_keys_and_values() -> None:
    raw = json.dumps(
        {"ids": [PSEUDONYM, "ev-000000123"], "note 123-45-6789": "x", "n": 5}, ensure_ascii=False
    )
    pairs = dict(evidence_pairs(raw))
    assert pairs["ids"] == '["tp_0123…", "ev-000000123"]'
    assert pairs["note [TIN-REDACTED]"] == "x" and pairs["n"] == "5"
    plain = json.dumps({"ids": ["ev-000000123", "ev-000000124"], "count": 2})
    assert evidence_pairs(plain) == [("ids", '["ev-000000123", "ev-000000124"]'), ("count", "2")]


def _plain_csv(header: list[str], rows: list[list[Any]]) -> str:
    """The CSV every cell through ``csv_cell``, as written before texts were worked out once."""
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow([csv_cell(h) for h in header])
    for row in rows:
        writer.writerow([csv_cell(v) for v in row])
    return out.getvalue()


CELLS = st.one_of(
    TEXTS,
    TEXTS.map(markupsafe.Markup),
    st.integers(),
    st.floats(allow_nan=False),
    st.sampled_from([True, False, 1, 0, 1.0, 0.0, -0.0, None, "1", "True", ""]),
)


@settings(max_examples=1000, deadline=None)
@given(rows=st.lists(st.lists(CELLS, min_size=3, max_size=3), max_size=12))
def test_a_csv_with_texts_worked_out_once_is_the_csv_cell_by_cell(
    rows: list[list[Any]], tmp_path_factory: Any
) -> None:
    path = Path(tmp_path_factory.mktemp("csv")) / "out.csv"
    header = ["a", "=b", "c 123-45-6789"]
    write_csv(path, header, rows)
    with path.open(encoding="utf-8", newline="") as handle:
        assert handle.read() == _plain_csv(header, rows)
