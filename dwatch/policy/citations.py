"""Citation grammar: turn a log's legal_authority text into a registry authority id.

Logs write the same law many ways ("26 U.S.C. § 6103(i)(2)", "IRC 6103(i)(2)",
"Sec. 6103 (i) (2)", "6103i2", "Privacy Act (b)(7)"). The text is parsed into
(title, section, subdivision path) by a small grammar; the section vocabulary and the
authorities themselves come from the registry, so a newly registered statute is
recognised without code changes. A deeper subdivision than any registered one
("6103(i)(2)(A)") resolves to the nearest registered ancestor only when that ancestor
lists it among its ``subdivisions`` (the statute has it); a subdivision the registry does
not know ("6103(d)(9)") is unknown, never read as its parent. A whole act or section
("26 USC 6103", "Privacy Act"), or a subsection whose provisions are registered one by one
("6103(l)"), is "general": it names no provision that permits anything.

A text naming several authorities ("6103(i)(2) and 6103(l)(3)", "IRC 6103(l)(7); (l)(21)",
"... or ...") is read part by part: :func:`classify_all` returns every authority it names.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from dwatch.policy.registry import Registry

CitationStatus = Literal["ok", "general", "unknown", "malformed", "missing"]

_DASHES = dict.fromkeys(map(ord, "\u2010\u2011\u2012\u2013\u2014\u2015\u2212"), "-")
# Quotes a spreadsheet or exporter wrapped around the whole value, and punctuation left
# at its end ("IRC 6103(i)(2);", "N/A."): neither is part of the citation.
_WRAPPING = "\"'`\u201c\u201d\u2018\u2019 "
_TRAILING = ".,;: "
# Square brackets for a subdivision ("6103[i][2]") mean what parentheses mean.
_BRACKETS = {ord("["): "(", ord("]"): ")"}
# Words that name a code or act, mapped to (title, section) when they fix the section.
_USC = r"u\s*\.?\s*s\s*\.?\s*c\s*\.?\s*a?\s*\.?"
_TITLE_RE = re.compile(r"^(?:title\s+)?(\d{1,2})\s*,?\s*(?:" + _USC + r")(?=[\s\d§]|$)")
# The title written without "U.S.C." ("Title 26, § 6103") or after it ("U.S.C. Title 26",
# "USC 26 6103"): a one- or two-digit number then a space, comma or section sign, so the
# section number itself ("USC 6103") is never read as a title.
_TITLE_ONLY_RE = re.compile(r"^(?:" + _USC + r"\s*(?:title\s+)?|title\s+)(\d{1,2})\s*,?(?=[\s§]|$)")
_IRC_RE = re.compile(
    r"^(?:i\s*\.?\s*r\s*\.?\s*c\s*\.?|internal\s+revenue\s+code(?:\s+of\s+1986)?|tax\s+code)(?=[\s\d§,\-]|$)"
)
_PRIVACY_ACT_RE = re.compile(
    r"^(?:(?:the\s+)?privacy\s+act(?:\s+of\s+1974)?|ley\s+de\s+privacidad(?:\s+de\s+1974)?)(?:\s*,)?"
)
_SECTION_WORD_RE = re.compile(r"^(?:§+|sections?|sects?\.?|secs?\.?|s\.)\s*")
_SECTION_RE = re.compile(r"^(\d{1,5})([a-z]{0,2})")
_PAREN_RE = re.compile(r"^\(\s*([a-z]{1,5}|\d{1,3})\s*\)")
_BARE_RE = re.compile(r"^[.\-\s]*([a-z]{1,5}|\d{1,3})")
_ROMAN = re.compile(r"^[ivx]+$")
# A balanced parenthesis holding a word ("(MOU)", "(ex parte order)") is a note after the
# citation, not a subdivision; "(i9)" or "(2" are garbled subdivisions and stay malformed.
_NOTE_PAREN_RE = re.compile(r"^\(([^()]*)\)")
_WORD_RE = re.compile(r"[a-z]{3,}")
_BARE_SECTION_RE = re.compile(r"^(\d{1,5})([a-z]{0,2})\s*\(")
# The end of a range of subdivisions ("(A)-(B)", "(1)-(2)"): the citation is its start.
_RANGE_END_RE = re.compile(r"^\s*-\s*\(")
# Where a citation can begin after prose ("Pursuant to 26 U.S.C. ...", "Authority: IRC ...",
# "under section 6103(d)"): a code or act named, a section sign or word before a number,
# or a bare number followed by a subdivision (kept only if the registry knows the section).
_CITATION_START_RE = re.compile(
    r"(?<=[\s:(,;\-])(?="
    r"(?:title\s+)?\d{1,2}\s*,?\s*" + _USC + r"(?:[\s\d§]|$)"
    r"|i\s*\.?\s*r\s*\.?\s*c\s*\.?(?:[\s\d§]|$)|internal\s+revenue\s+code|tax\s+code"
    r"|(?:the\s+)?privacy\s+act|ley\s+de\s+privacidad|title\s+\d|§"
    r"|(?:sections?|sects?\.?|secs?\.?)\s*\d"
    r"|\d{1,5}[a-z]{0,2}\s*\()"
)

IRC_TITLE = "26"
PRIVACY_ACT = ("5", "552a")


@dataclass(frozen=True)
class ParsedCitation:
    title: str | None
    section: str
    path: tuple[str, ...]

    def render(self, title: str | None = None) -> str:
        """Canonical spelling: '26 USC 6103(i)(2)(A)'."""
        parts = []
        for depth, token in enumerate(self.path):
            # Levels alternate: subsection (a), paragraph (1), subparagraph (A), clause (i).
            parts.append(f"({token.upper() if depth == 2 and not token.isdigit() else token})")
        head = (
            f"{title or self.title} USC {self.section}" if (title or self.title) else self.section
        )
        return head + "".join(parts)


def clean(text: str) -> str:
    """Fold case, dashes, non-breaking spaces, runs of whitespace, wrapping quotes and
    punctuation at the end."""
    folded = unicodedata.normalize("NFKC", text).translate(_DASHES).lower()
    return re.sub(r"\s+", " ", folded).strip(_WRAPPING).rstrip(_TRAILING).strip(_WRAPPING)


def placeholder_key(text: str) -> str:
    """'N/A.', 'n.a.', 'N\\A' and 'na' are one placeholder: letters and digits only."""
    return re.sub(r"[^0-9a-z]+", "", clean(text))


def _is_note(inside: str) -> bool:
    token = inside.strip()
    return bool(_WORD_RE.search(token)) and not _ROMAN.match(token)


def parse_citation(text: str, known_sections: dict[str, set[str]]) -> ParsedCitation | None:
    """Parse citation text; ``known_sections`` maps section -> titles it is registered under.

    Returns None when the text has no recognisable section number.
    """
    rest = clean(text).translate(_BRACKETS)
    title: str | None = None
    forced_section: str | None = None
    if m := _PRIVACY_ACT_RE.match(rest):
        title, forced_section = PRIVACY_ACT
        rest = rest[m.end() :].strip()
    elif m := _TITLE_RE.match(rest):
        title = m.group(1)
        rest = rest[m.end() :].strip()
    elif m := _IRC_RE.match(rest):
        title = IRC_TITLE
        rest = rest[m.end() :].strip()
    elif m := _TITLE_ONLY_RE.match(rest):
        title = m.group(1)
        rest = rest[m.end() :].strip()
    rest = _SECTION_WORD_RE.sub("", rest.lstrip(",.:- ")).strip()

    if forced_section is not None:
        # "Privacy Act § 552a(b)(7)" and "Privacy Act (b)(7)" both mean 5 USC 552a(b)(7).
        m = re.match(r"^(?:5\s*u\s*\.?\s*s\s*\.?\s*c\s*\.?\s*a?\.?\s*)?(?:§+\s*)?552a", rest)
        if m:
            rest = rest[m.end() :]
        section = forced_section
    else:
        m = _SECTION_RE.match(rest)
        if not m:
            return None
        digits, letters = m.group(1), m.group(2)
        # "552a" is a section, "6103i2" is section 6103 subsection (i): the registry's
        # section vocabulary decides, then the next character (a digit after the letter
        # means a paragraph number, so the letter began the path).
        with_letters = digits + letters
        if letters and with_letters in known_sections:
            section, rest = with_letters, rest[m.end() :]
        else:
            section, rest = digits, rest[len(digits) :]
        if title is None:
            titles = known_sections.get(section, set())
            title = next(iter(titles)) if len(titles) == 1 else None

    path: list[str] = []
    rest = rest.strip()
    while rest:
        if (note := _NOTE_PAREN_RE.match(rest)) and _is_note(note.group(1)):
            rest = ""  # "(MOU)", "(ex parte order)": the citation ended before it
            break
        if m := _PAREN_RE.match(rest):
            token = m.group(1)
        elif m := _BARE_RE.match(rest):
            token = m.group(1)
            # A bare word is part of the path only if it is short and shaped like a level
            # ("i2", "l 6"); trailing prose ("request", "per MOU") ends the citation.
            if token.isalpha() and len(token) > 1 and not _ROMAN.match(token):
                break
        else:
            break
        # Bare runs such as "i2a" arrive as one token group per regex step.
        path.append(token)
        rest = rest[m.end() :]
        if _RANGE_END_RE.match(rest):
            rest = ""
            break
        rest = rest.lstrip(" .-")
    if rest[:1] in {"(", ")", "[", "]"}:
        return None  # an unbalanced or garbled subdivision: malformed, not merely unknown
    return ParsedCitation(title=title, section=section, path=tuple(path))


def _path_is_well_formed(path: tuple[str, ...]) -> bool:
    for depth, token in enumerate(path):
        level = depth % 4
        if level == 0 and not (token.isalpha() and len(token) <= 2):
            return False
        if level == 1 and not token.isdigit():
            return False
        if level == 2 and not (token.isalpha() and len(token) <= 2):
            return False
        if level == 3 and not _ROMAN.match(token):
            return False
    return True


@dataclass(frozen=True)
class Classification:
    """How a log's citation text reads: its status and every authority it names, in order."""

    status: CitationStatus
    authority_ids: tuple[str, ...] = ()

    @property
    def authority_id(self) -> str | None:
        return self.authority_ids[0] if self.authority_ids else None


# Words and marks that join several citations in one text ("6103(i)(2) and 6103(l)(3)",
# "(l)(7); (l)(21)", "... or ...", "... & ..."). Commas join them too, but also occur
# inside one citation ("Privacy Act of 1974, 5 U.S.C. 552a(b)(7)"): a split is kept only
# when at least two parts read as citations.
# Logs in other languages join them with "y", "o", "et", "ou", "und", "oder"; "/" and "+"
# too ("6103(i)(2)/(i)(1)", "42 U.S.C. 653 / 26 U.S.C. 6103(l)(6)"), and prose does with
# "as well as", "together with", "in conjunction with". A slash elsewhere (a date, "w/")
# splits off parts that read as no citation, so the text is read whole as before.
_JOINERS_RE = re.compile(
    r"\s*(?:;|,|&|/|\+|\band/or\b|\b(?:as\s+well\s+as|together\s+with|in\s+conjunction\s+with)\b"
    r"|\b(?:and|or|plus|y|o|e|et|ou|und|oder)\b(?!\s*\)))\s*"
)
_STATUS_RANK = {"ok": 0, "general": 1, "unknown": 2, "malformed": 3, "missing": 4}


def classify(text: str | None, registry: Registry) -> tuple[CitationStatus, str | None]:
    """('ok', id) | ('general'|'unknown'|'malformed'|'missing', None): the first authority
    named; :func:`classify_all` gives all of them."""
    reading = classify_all(text, registry)
    return reading.status, reading.authority_id


def classify_all(text: str | None, registry: Registry) -> Classification:
    """Every authority the text names; ok when at least one part is a registered one."""
    if text is None or not clean(text):
        return Classification("missing")
    if placeholder_key(text) in registry.missing_citation_placeholders:
        return Classification("missing")
    alias_hit = registry.alias_index.get(_alias_key(text))
    if alias_hit is not None:
        return Classification("ok", (alias_hit,))
    parts = _split_parts(text, registry)
    if not parts:
        return _classify_one(text, registry)
    ids = tuple(dict.fromkeys(i for part in parts for i in part.authority_ids))
    status = min((part.status for part in parts), key=_STATUS_RANK.__getitem__)
    return Classification(status, ids if status == "ok" else ())


def _split_parts(text: str, registry: Registry) -> list[Classification]:
    """The citations a joined text names, each read on its own; [] when it names fewer
    than two. A part that is only a subdivision ("(l)(21)") continues the previous part.
    A part naming law the registry does not know at all ("26 USC 7216") counts as a
    citation but names nothing; a number in prose ("25 agreement") is no citation."""
    pieces = [p for p in _JOINERS_RE.split(clean(text)) if p.strip()]
    if len(pieces) < 2:
        return []
    readings: list[Classification] = []
    citations = 0
    previous: ParsedCitation | None = None
    for piece in pieces:
        if piece.lstrip().startswith(("(", "[")) and previous is not None:
            piece = _continue(previous, piece)
        reading = _classify_one(piece, registry)
        if reading.status in {"malformed", "missing"}:
            continue
        parsed = parse_citation(piece, registry.known_sections) or _parse_after_prose(
            piece, registry.known_sections
        )
        if parsed is None or (
            parsed.title is None and parsed.section not in registry.known_sections
        ):
            continue
        citations += 1
        previous = parsed
        if reading.status != "unknown" or parsed.section in registry.known_sections:
            readings.append(reading)
    return readings if citations >= 2 and readings else []


def _continue(previous: ParsedCitation, piece: str) -> str:
    """A part that is only a subdivision, as its sibling in the previous part: a number
    is a paragraph of the same subsection ("(i)(2) and (3)" = (i)(3)), a letter after a
    subparagraph is a subparagraph ("(i)(2)(A) or (B)"), any other letter a subsection
    ("(l)(7), (l)(21)")."""
    first = _PAREN_RE.match(piece.strip().translate(_BRACKETS))
    token = first.group(1) if first else ""
    if token.isdigit():
        keep = previous.path[:1]
    elif len(previous.path) >= 3 and len(token) == 1:
        keep = previous.path[:2]
    else:
        keep = ()
    return ParsedCitation(previous.title, previous.section, keep).render() + piece.strip()


def _classify_one(text: str, registry: Registry) -> Classification:
    alias_hit = registry.alias_index.get(_alias_key(text))
    if alias_hit is not None:
        return Classification("ok", (alias_hit,))
    parsed = parse_citation(text, registry.known_sections)
    if parsed is None or not _path_is_well_formed(parsed.path):
        parsed = _parse_after_prose(text, registry.known_sections)
        if parsed is None:
            return Classification("malformed")
    titles = (
        [parsed.title]
        if parsed.title
        else sorted(registry.known_sections.get(parsed.section, set()))
    )
    section = registry.section_spelling.get(parsed.section, parsed.section)
    general = False
    for title in titles:
        found = _resolve(ParsedCitation(title, section, parsed.path), registry)
        if found is not None:
            return Classification("ok", (found,))
        cited = ParsedCitation(title, section, parsed.path).render()
        # A whole section or act, or a subsection whose provisions are registered one by
        # one: it names no provision, so it is not an authority.
        general = general or any(other.startswith(cited + "(") for other in registry.authority_ids)
    return Classification("general" if general else "unknown")


def _resolve(cited: ParsedCitation, registry: Registry) -> str | None:
    """The registered authority the citation is, or whose listed subdivision it is."""
    exact = cited.render()
    if exact in registry.authority_ids:
        return exact
    path = cited.path
    for depth in range(len(path) - 1, -1, -1):
        ancestor = ParsedCitation(cited.title, cited.section, path[:depth]).render()
        auth = registry.authorities_by_id.get(ancestor)
        if auth is not None:
            rest = ParsedCitation(None, "", path[depth:]).render()
            return ancestor if rest.lower() in registry.subdivisions_of(ancestor) else None
    return None


def _parse_after_prose(text: str, known_sections: dict[str, set[str]]) -> ParsedCitation | None:
    """The first well-formed citation that starts after leading prose, or None.

    Only tried when the text does not parse as it stands, so a citation that does is read
    exactly as before. A bare number counts only when the registry knows it as a section
    ("per MOU 2025 request" stays malformed)."""
    folded = clean(text)
    for start in _CITATION_START_RE.finditer(folded):
        tail = folded[start.start() :]
        if (bare := _BARE_SECTION_RE.match(tail)) and not (
            bare.group(1) in known_sections or bare.group(1) + bare.group(2) in known_sections
        ):
            continue
        if folded[start.start() - 1] == "(" and tail.endswith(")"):
            tail = tail[:-1]  # "MOU (26 U.S.C. 6103(i)(2))": the note's own parenthesis
        parsed = parse_citation(tail, known_sections)
        if parsed is not None and _path_is_well_formed(parsed.path):
            return parsed
    return None


def _alias_key(text: str) -> str:
    # Aliases match ignoring case, dashes and all spacing and punctuation around parens.
    return re.sub(r"[\s.§,]", "", clean(text))
