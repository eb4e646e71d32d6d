"""The citation grammar reads spellings it has never seen, against the shipped registry."""

from __future__ import annotations

import pytest

from dwatch.policy import Registry, classify_citation, load_registry, normalise_citation


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
        # A deeper subdivision resolves to the registered authority that includes it.
        ("6103(i)(2)(A)", "26 USC 6103(i)(2)"),
        ("26 U.S.C. § 6103(i)(2)(B)(i)", "26 USC 6103(i)(2)"),
        ("6103(d)(1)", "26 USC 6103(d)"),
        ("IRC §6103(l)(7)(D)(ix)", "26 USC 6103(l)(7)"),
        ("26 usc 6103 (l)(6)", "26 USC 6103(l)(6)"),
        ("26 U.S.C. 6103(i)(1) ex parte order", "26 USC 6103(i)(1)"),
        # Privacy Act forms.
        ("5 U.S.C. 552a(b)(7)", "5 USC 552a(b)(7)"),
        ("5 U.S.C. § 552a(b)(7)(A)", "5 USC 552a(b)(7)"),
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
        ("6103(k)(6)", "unknown"),  # well formed, not registered
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


def test_a_deeper_subdivision_does_not_fall_back_when_the_ancestor_excludes_it(
    registry: Registry,
) -> None:
    # 6103(a) is the confidentiality rule; it does not "include" (a)(1)-style subdivisions.
    assert registry.authorities_by_id["26 USC 6103(a)"].includes_subdivisions is False
    assert classify_citation("6103(a)(2)", registry) == ("unknown", None)


def test_every_registered_id_normalises_to_itself(registry: Registry) -> None:
    for authority in registry.authorities:
        assert normalise_citation(authority.id, registry) == authority.id
        for alias in authority.aliases:
            assert normalise_citation(alias, registry) == authority.id
