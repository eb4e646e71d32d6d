"""The citation grammar reads spellings it has never seen, against the shipped registry."""

from __future__ import annotations

import pytest

from dwatch.policy import (
    Registry,
    classify_all,
    classify_citation,
    load_registry,
    normalise_citation,
)


@pytest.fixture(scope="module")
def registry() -> Registry:
    return load_registry()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("26 U.S.C. § 6103(i)(2)", "26 USC 6103(i)(2)"),
        ("26 USC 6103(i)(2)", "26 USC 6103(i)(2)"),
        ("IRC 6103(i)(2)", "26 USC 6103(i)(2)"),
        ("I.R.C. §6103(i)(2)", "26 USC 6103(i)(2)"),
        ("Sec. 6103(i)(2)", "26 USC 6103(i)(2)"),
        ("section 6103 (i) (2)", "26 USC 6103(i)(2)"),
        ("6103i2", "26 USC 6103(i)(2)"),
        ("6103-i-2", "26 USC 6103(i)(2)"),
        ("irc 6103(I)(2)", "26 USC 6103(i)(2)"),
        ("26 U.S.C. §\u00a06103(i)(2)", "26 USC 6103(i)(2)"),
        ("26  usc   6103 ( i )( 2 )", "26 USC 6103(i)(2)"),
        ("IRC\u20146103(i)(2)", "26 USC 6103(i)(2)"),
        ("26 USC 6103(i)(2) \u2013 MOU request", "26 USC 6103(i)(2)"),
        ("Title 26 U.S.C. 6103(i)(2)", "26 USC 6103(i)(2)"),
        ("Internal Revenue Code section 6103(j)(1)", "26 USC 6103(j)(1)"),
        # A deeper subdivision the statute has resolves to the registered authority that
        # lists it.
        ("6103(i)(2)(A)", "26 USC 6103(i)(2)"),
        ("26 U.S.C. § 6103(i)(2)(B)(i)", "26 USC 6103(i)(2)"),
        ("6103(d)(1)", "26 USC 6103(d)"),
        ("IRC §6103(l)(7)(D)(ix)", "26 USC 6103(l)(7)"),
        ("26 usc 6103 (l)(6)", "26 USC 6103(l)(6)"),
        ("26 U.S.C. 6103(i)(1) ex parte order", "26 USC 6103(i)(1)"),
        # Privacy Act forms.
        ("5 U.S.C. 552a(b)(7)", "5 USC 552a(b)(7)"),
        ("Privacy Act (b)(7)", "5 USC 552a(b)(7)"),
        ("Privacy Act of 1974, 5 U.S.C. § 552a(b)(7)", "5 USC 552a(b)(7)"),
        ("552a(b)(3)", "5 USC 552a(b)(3)"),
        ("Privacy Act (c)", "5 USC 552a(c)"),
        # The registry's own aliases.
        ("routine use", "5 USC 552a(b)(3)"),
        ("6103(i)(2) MOU", "26 USC 6103(i)(2)"),
    ],
)
def test_spellings_normalise_to_the_registry_id(
    registry: Registry, text: str, expected: str
) -> None:
    assert normalise_citation(text, registry) == expected
    assert classify_citation(text, registry) == ("ok", expected)


@pytest.mark.parametrize(
    ("text", "status"),
    [
        (None, "missing"),
        ("", "missing"),
        ("   ", "missing"),
        ("N/A", "missing"),
        ("none", "missing"),
        ("6103(z)(6)", "unknown"),  # well formed, no such subsection
        ("6103(d)(9)", "unknown"),  # (d) has no paragraph (9): never read as (d)
        ("6103(i)(2)(Z)", "unknown"),  # nor (i)(2)(Z) as (i)(2)
        ("5 U.S.C. § 552a(b)(7)(A)", "unknown"),  # (b)(7) has no subparagraphs
        # A whole act or section, or a subsection registered paragraph by paragraph,
        # names no provision: a general citation, not an authority.
        ("26 USC 6103", "general"),
        ("IRC 6103", "general"),
        ("Section 6103", "general"),
        ("Privacy Act", "general"),
        ("the Privacy Act of 1974", "general"),
        ("5 USC 552a", "general"),
        ("6103(l)", "general"),
        ("IRC 6103(i)", "general"),
        ("6103(i)(9)", "unknown"),  # no registered ancestor: (i) itself is not an authority
        ("26 USC 7216", "unknown"),
        ("per MOU", "malformed"),
        ("6103(i)(2", "malformed"),
        ("hello", "malformed"),
        ("6103((i)", "malformed"),
    ],
)
def test_unrecognised_citations_are_classified(
    registry: Registry, text: str | None, status: str
) -> None:
    assert classify_citation(text, registry) == (status, None)
    assert normalise_citation(text, registry) is None


def test_only_listed_subdivisions_resolve_to_their_authority(registry: Registry) -> None:
    # 6103(a) lists its paragraphs (1)-(3); a fourth is not read as (a).
    assert "(2)" in registry.subdivisions_of("26 USC 6103(a)")
    assert classify_citation("6103(a)(2)", registry) == ("ok", "26 USC 6103(a)")
    assert classify_citation("6103(a)(4)", registry) == ("unknown", None)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("6103(i)(2) and 6103(l)(3)", ("26 USC 6103(i)(2)", "26 USC 6103(l)(3)")),
        ("IRC 6103(l)(7); 6103(l)(21)", ("26 USC 6103(l)(7)", "26 USC 6103(l)(21)")),
        ("IRC 6103(l)(7), (l)(21)", ("26 USC 6103(l)(7)", "26 USC 6103(l)(21)")),
        ("26 U.S.C. 6103(i)(1) or (i)(2)", ("26 USC 6103(i)(1)", "26 USC 6103(i)(2)")),
        # a bare subdivision continues the previous part as its sibling
        ("IRC 6103(i)(2) and (3)", ("26 USC 6103(i)(2)", "26 USC 6103(i)(3)")),
        ("6103(l)(6)(A) or (B)", ("26 USC 6103(l)(6)",)),  # both name (l)(6): one authority
        ("IRC 6103(i)(2) & Privacy Act (b)(7)", ("26 USC 6103(i)(2)", "5 USC 552a(b)(7)")),
        # in other languages, and with "/" or "+"
        ("6103(i)(2) y 6103(l)(3)", ("26 USC 6103(i)(2)", "26 USC 6103(l)(3)")),
        ("IRC §6103(i)(2) et (i)(1)", ("26 USC 6103(i)(2)", "26 USC 6103(i)(1)")),
        ("IRC 6103(i)(2)/(i)(1)", ("26 USC 6103(i)(2)", "26 USC 6103(i)(1)")),
        ("Ley de Privacidad (b)(7) o (b)(3)", ("5 USC 552a(b)(7)", "5 USC 552a(b)(3)")),
        # another statute beside a registered authority, in the ways logs join them
        ("42 U.S.C. 653 / 26 U.S.C. 6103(l)(6)", ("26 USC 6103(l)(6)",)),
        ("IRC 6103(l)(6) / 42 USC 653", ("26 USC 6103(l)(6)",)),
        ("42 USC § 653 & IRC § 6103(l)(6)", ("26 USC 6103(l)(6)",)),
        ("42 U.S.C. 653; 26 U.S.C. 6103(l)(6)", ("26 USC 6103(l)(6)",)),
        ("42 U.S.C. 653 and 26 U.S.C. 6103(l)(6)", ("26 USC 6103(l)(6)",)),
        ("under 42 U.S.C. 653 and 26 U.S.C. 6103(l)(6)", ("26 USC 6103(l)(6)",)),
        ("Requested under 42 U.S.C. § 653 and under IRC 6103(l)(6)", ("26 USC 6103(l)(6)",)),
        ("Pursuant to 42 U.S.C. § 653 as well as IRC § 6103(l)(6)", ("26 USC 6103(l)(6)",)),
        ("26 U.S.C. § 6103(l)(6) (FPLS) / 42 U.S.C. § 653(e)", ("26 USC 6103(l)(6)",)),
        ("Sec. 6103(l)(6) y 42 U.S.C. 653", ("26 USC 6103(l)(6)",)),
        # two registered authorities joined by a slash, each named in full
        ("26 U.S.C. 6103(i)(2)/6103(l)(3)", ("26 USC 6103(i)(2)", "26 USC 6103(l)(3)")),
        ("IRC 6103(l)(6) / 6103(l)(8)", ("26 USC 6103(l)(6)", "26 USC 6103(l)(8)")),
        ("26 USC 6103(l)(6) together with 6103(l)(8)", ("26 USC 6103(l)(6)", "26 USC 6103(l)(8)")),
        # law the registry does not hold names nothing; a date is no second citation
        ("26 USC 7216 and 6103(i)(2)", ("26 USC 6103(i)(2)",)),
        ("MOU 4/7/2025 per 6103(i)(2)", ("26 USC 6103(i)(2)",)),
        # an unrecognised part names nothing; the recognised one still reads
        ("6103(i)(2) or 6103(z)(9)", ("26 USC 6103(i)(2)",)),
        # a comma inside one citation is not a second citation
        ("Privacy Act of 1974, 5 U.S.C. 552a(b)(7)", ("5 USC 552a(b)(7)",)),
        ("Sec. 6103(d)(1), I.R.C.", ("26 USC 6103(d)",)),
    ],
)
def test_a_citation_naming_several_authorities_names_each(
    registry: Registry, text: str, expected: tuple[str, ...]
) -> None:
    reading = classify_all(text, registry)
    assert reading.status == "ok"
    assert reading.authority_ids == expected
    assert classify_citation(text, registry) == ("ok", expected[0])


def test_a_joined_citation_of_nothing_registered_is_not_ok(registry: Registry) -> None:
    assert classify_all("6103(z)(1) and 6103(z)(2)", registry).status == "unknown"
    assert classify_all("IRC 6103 and the Privacy Act", registry).status == "general"
    # another statute beside nothing registered, or beside a whole section
    assert classify_all("42 U.S.C. 653 / 42 U.S.C. 654", registry).status == "unknown"
    assert classify_all("42 U.S.C. 653 / 26 U.S.C. 6103(z)(6)", registry).status == "unknown"
    assert classify_all("26 USC 6103 / 42 USC 653", registry).status == "general"


def test_every_6103_subsection_is_registered_with_a_source(registry: Registry) -> None:
    # every subsection (a)-(q) is an authority or has its paragraphs registered
    for letter in "abcdefghijklmnopq":
        cited = f"26 USC 6103({letter})"
        assert any(a == cited or a.startswith(cited + "(") for a in registry.authority_ids), cited
    assert "26 USC 6103(k)(6)" in registry.authority_ids
    for n in range(1, 13):
        assert f"5 USC 552a(b)({n})" in registry.authority_ids
    assert all(a.sources and a.sources[0].cite for a in registry.authorities)


def test_every_registered_id_normalises_to_itself(registry: Registry) -> None:
    for authority in registry.authorities:
        assert normalise_citation(authority.id, registry) == authority.id
        for alias in authority.aliases:
            assert normalise_citation(alias, registry) == authority.id


def test_no_authority_is_left_marked_only_verify(registry: Registry) -> None:
    # Issue 13: every source note once marked "(verify)" was checked; what could not be
    # confirmed says so plainly ("UNVERIFIED: ..."), never a bare "(verify)".
    notes = [
        (authority.id, source.note or "")
        for authority in registry.authorities
        for source in authority.sources
    ]
    assert not [(aid, note) for aid, note in notes if "(verify" in note.lower()]
    unverified = sorted({aid for aid, note in notes if "UNVERIFIED" in note})
    assert unverified == [
        "26 USC 6103(j)(2)",
        "26 USC 6103(j)(6)",
        "26 USC 6103(k)(7)",
        "26 USC 6103(l)(5)",
        "26 USC 6103(p)(6)",
    ]
