"""Logs we have never seen: other agencies' citation spellings, headers, time zones and ids.

Inputs here are written the way another agency's export looks (not by our generator):
each case is one thing a human reader understands at once and the pipeline must too, or
must leave empty (NULL) rather than read wrongly.
"""

from __future__ import annotations

import pytest

from dwatch.policy import Registry, classify_citation, load_registry


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
        ("section 6103(k)(6)", "unknown"),
        ("6103(l)(21) (Medicare)", "unknown"),
        ("8 U.S.C. 1253(a)(1)", "unknown"),
        ("PA (b)(7)", "malformed"),  # "PA" may be Pennsylvania as well as the Privacy Act
    ],
)
def test_citations_it_cannot_know_stay_empty(registry: Registry, text: str, status: str) -> None:
    assert classify_citation(text, registry) == (status, None)
