"""``mask_document`` (the last masking pass over a whole report) equals ``mask_text``.

It masks only the runs around a digit candidate; these tests build documents from the
pieces that decide a shape (digit runs, every separator, hexadecimal digests, other scripts'
digits, markup, line breaks) and compare it with the policy applied to the whole text."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dwatch.masking import MASK, mask_document, mask_document_parts, mask_text

FULLWIDTH = "".join(chr(0xFF10 + int(d)) for d in "123456789")
ARABIC = "\u0661\u0662\u0663-\u0664\u0665-\u0666\u0667\u0668\u0669"
_DIGITS = st.integers(min_value=1, max_value=12).flatmap(
    lambda n: st.text(st.sampled_from("0123456789"), min_size=n, max_size=n)
)
_NINE = st.integers(min_value=0, max_value=999_999_999).map(lambda n: f"{n:09d}")
_SEPARATOR = st.sampled_from(["-", ".", "/", " ", " - ", "- ", " .", "--", "  ", "\n", ""])
_HEX = st.text(st.sampled_from("0123456789abcdef-"), min_size=4, max_size=40)
_MARKUP = st.sampled_from(
    [
        '<td class="id">',
        "</td>",
        " | ",
        "\u2192",
        "\u2013",
        "_",
        "tp_",
        "x",
        "A",
        "é",
        "\t",
        ":",
        "'",
    ]
)
_OTHER = st.sampled_from([FULLWIDTH, FULLWIDTH[:4], ARABIC, "\u0661", "3f2a1234-5678-4abc-9def-"])
_PIECE = st.one_of(_DIGITS, _NINE, _SEPARATOR, _HEX, _MARKUP, _OTHER)
DOCUMENTS = st.lists(_PIECE, min_size=1, max_size=30).map("".join)


@settings(max_examples=3000, deadline=None)
@given(DOCUMENTS)
def test_mask_document_equals_mask_text(document: str) -> None:
    assert mask_document(document) == mask_text(document)


@settings(max_examples=1000, deadline=None)
@given(DOCUMENTS)
def test_masking_masked_text_again_changes_nothing(document: str) -> None:
    """The report keeps sections already masked and masks the whole document once more."""
    masked = mask_document(document)
    assert mask_document(masked) == masked


def test_shapes_are_masked_wherever_they_sit_in_a_document() -> None:
    document = (
        '<tr><td class="id">ledger 123-45-6789</td><td>ev-000000416</td></tr>\n'
        "| 12-3456789 | tp_0123456789abcdef0123456789abcdef | 987 65 4321 |\n"
        f'<circle cx="1234.5" r="3.2"/>{FULLWIDTH}\n'
    )
    masked = mask_document(document)
    assert masked == mask_text(document)
    assert masked.count(MASK) == 4  # the padded serial and the digest stay whole
    assert "ev-000000416" in masked
    assert "0123456789abcdef0123456789abcdef" in masked


def test_a_document_without_candidates_is_returned_as_it_was() -> None:
    document = '<svg><circle cx="1180.4" cy="56" r="12.9"/></svg>\n2025-06-04 09:15 UTC\n'
    assert mask_document(document) == document


# A kept case section: text between edges ("<" ... ">", "\n", "|"), as the templates make them.
_SECTION = st.tuples(st.sampled_from(["<", "\n", "|"]), DOCUMENTS).flatmap(
    lambda t: st.sampled_from(["</section>", "\n", ">"]).map(lambda end: t[0] + t[1] + end)
)


@settings(max_examples=2000, deadline=None)
@given(st.lists(st.tuples(DOCUMENTS, _SECTION), min_size=1, max_size=6), DOCUMENTS)
def test_masking_around_masked_parts_equals_masking_the_whole(
    pairs: list[tuple[str, str]], tail: str
) -> None:
    """The report puts kept sections (masked when rendered) in and masks only the text
    around them: the document the whole last pass made of the report with the masked
    sections in, and the one it makes of the report rendered with raw sections."""
    parts: list[tuple[str, bool]] = []
    for text, section in pairs:
        parts += [(text, False), (mask_document(section), True)]
    parts.append((tail, False))
    with_masked = "".join(text for text, _masked in parts)
    from_scratch = "".join(text + section for text, section in pairs) + tail
    assert mask_document_parts(parts) == mask_document(with_masked) == mask_text(from_scratch)


def test_a_part_said_masked_must_start_and_end_with_an_edge() -> None:
    # "123-45-" + "6789" only makes a shape joined: the part's first character is a digit
    with pytest.raises(ValueError, match="edge"):
        mask_document_parts([("id 123-45-", False), ("6789 <b>", True)])
    assert mask_document_parts([("id 123-45-6789 ", False), ("<b>", True)]) == f"id {MASK} <b>"
