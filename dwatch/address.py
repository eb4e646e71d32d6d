"""Whether a supplied address lets the recipient find the person, judged from its structure.

A mail carrier delivers to a *delivery line* in a *place*: a house number and street, a PO
box, a rural or highway contract route box, General Delivery at a post office, or a
military unit or ship, in a town and state or a ZIP code (USPS Publication 28). The text is
parsed into those parts by ``usaddress`` (a conditional random field trained on US
addresses) and judged by which parts are present and plausible, not by its words: a street
named "Unknown Rd" in a real town is an address, "Unknown" alone or "000 Unknown Rd" is not.

The only words the judge knows are the registry's placeholder vocabulary
(``parameters.address_placeholders``: what requesters write when they do not know the
address, in any language) and its known dummy street lines; they mark an address as
unusable when they make up the whole address, the city, the state, or a street name with
no street type ("123 Unknown, Miami FL"). Everything else is structure.

Every verdict carries its reason ("no street number and street name; only a ZIP"). A
reason quotes only placeholder words and filler numbers, never the rest of an address:
reasons reach alert evidence, and addresses are sensitive.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from itertools import takewhile
from typing import TYPE_CHECKING, Literal

import usaddress

if TYPE_CHECKING:
    from dwatch.policy import Registry

# Bump when the judgement changes, so verdicts stored under the old logic are redone.
JUDGE_VERSION = "1"

# A supplied address longer than this is notes or a pasted record, not an address (the
# longest multi-line addresses with names and care-of lines stay well under it).
MAX_ADDRESS_LENGTH = 1000

Form = Literal["street", "po_box", "route", "general_delivery", "military", "none"]

# USPS state and territory abbreviations and names (Publication 28, appendix B).
_STATES = {
    "al": "alabama", "ak": "alaska", "az": "arizona", "ar": "arkansas", "ca": "california",
    "co": "colorado", "ct": "connecticut", "de": "delaware", "dc": "district of columbia",
    "fl": "florida", "ga": "georgia", "hi": "hawaii", "id": "idaho", "il": "illinois",
    "in": "indiana", "ia": "iowa", "ks": "kansas", "ky": "kentucky", "la": "louisiana",
    "me": "maine", "md": "maryland", "ma": "massachusetts", "mi": "michigan",
    "mn": "minnesota", "ms": "mississippi", "mo": "missouri", "mt": "montana",
    "ne": "nebraska", "nv": "nevada", "nh": "new hampshire", "nj": "new jersey",
    "nm": "new mexico", "ny": "new york", "nc": "north carolina", "nd": "north dakota",
    "oh": "ohio", "ok": "oklahoma", "or": "oregon", "pa": "pennsylvania",
    "ri": "rhode island", "sc": "south carolina", "sd": "south dakota", "tn": "tennessee",
    "tx": "texas", "ut": "utah", "vt": "vermont", "va": "virginia", "wa": "washington",
    "wv": "west virginia", "wi": "wisconsin", "wy": "wyoming", "pr": "puerto rico",
    "vi": "virgin islands", "gu": "guam", "as": "american samoa",
    "mp": "northern mariana islands", "fm": "federated states of micronesia",
    "mh": "marshall islands", "pw": "palau",
}  # fmt: skip
_MILITARY_STATES = {"aa", "ae", "ap"}  # Armed Forces Americas, Europe, Pacific
_MILITARY_PLACES = {"apo", "fpo", "dpo"}
_STATE_KEYS = frozenset(_STATES) | frozenset(_STATES.values()) | _MILITARY_STATES
_STATE_KEYS |= {"us virgin islands", "d c", "wash", "calif", "tex", "fla", "mass", "penn"}
_ROUTE_WORDS = {"rr", "r r", "rural route", "rural rte", "rte", "route", "hc", "h c",
                "highway contract", "highway contract route", "hcr", "star route", "sr"}  # fmt: skip
_MILITARY_BOX_WORDS = {"psc", "cmr", "unit"}
_SHIP_PREFIXES = {"uss", "usns", "usng", "uscgc"}
_NUMBER_WORDS = {
    "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
    "eighteen", "nineteen", "twenty", "thirty", "forty", "fifty", "hundred", "thousand",
}  # fmt: skip
# Spanish-style street lines (Puerto Rico): the number after the street ("Calle Sol #23",
# "Calle Luna 45", "Carr 2 Km 14.5"), which a parser trained on "123 Main St" misses.
_SPANISH_STREET = re.compile(
    r"\b(?:calle|c/|avenida|ave?\.?|carretera|carr\.?|camino|paseo|callej[oó]n)\s+"
    r"(?:(?:[^\W\d]|[0-9])[\w.'-]*\s+)*?"
    r"(?:(?:#|n[uú]m\.?|no\.)\s*([0-9]+[a-z]?)\b"  # Calle 5 #23, Calle Sol Num 4
    r"|km\.?\s*([0-9]+(?:[.,][0-9]+)?)\b)",  # Carr 2 Km 14.5
    re.IGNORECASE,
)
_SPANISH_NAMED = re.compile(
    r"\b(?:calle|avenida|paseo|camino)\s+(?:[^\W\d][\w.'-]*\s+)+([0-9]+[a-z]?)\s*(?:,|$)",
    re.IGNORECASE,
)
_ZIP = re.compile(r"^([0-9]{5})(?:-?[0-9]{4})?$")
# Puerto Rico's Spanish for a PO box (Publication 28 writes it PO BOX).
_APARTADO = re.compile(r"\b(?:apartado|apdo\.?)(?=\s*[0-9])", re.IGNORECASE)
_GENERAL_DELIVERY = re.compile(r"\bgeneral\s+delivery\b", re.IGNORECASE)
# "Frederick MD21701": a state code run into its ZIP
_STATE_ZIP_JOINED = re.compile(r"\b([A-Za-z]{2})([0-9]{5}(?:-[0-9]{4})?)\b")
_SPACES = re.compile(r"\s+")
_LINE_BREAKS = re.compile(r"\s*[\r\n]+\s*")


_NON_DIGIT = re.compile(r"\D")
_DIGIT_RUN = re.compile(r"\d+")
_ORDINAL = re.compile(r"\d+(?:st|nd|rd|th)")
_CODE_MARK = re.compile(r"[/?]")  # "N/A St": a code, not a name
_APOSTROPHES = re.compile(r"['\u2019`]")
_NON_WORD = re.compile(r"[\W_]+")


def fold(text: str) -> str:
    """Lower-case words without accents or punctuation: "Dirección  Desconocida!" ->
    "direccion desconocida"; "N/A" -> "n a"; "don't" -> "dont"."""
    if text.isascii():  # most addresses: no accents to strip
        plain = text.lower()
    else:
        decomposed = unicodedata.normalize("NFKD", text)
        plain = "".join(c for c in decomposed if not unicodedata.combining(c)).lower()
    return " ".join(_NON_WORD.sub(" ", _APOSTROPHES.sub("", plain)).split())


def _is_filler(token: str) -> bool:
    """One character repeated ("xxx", "000", "9999"): what a form gets when no one knew."""
    return len(set(token)) == 1 and (len(token) > 1 or token in {"x", "0"})


@dataclass(frozen=True)
class AddressVocabulary:
    """The registry's placeholder words, folded; see the module docstring."""

    placeholders: frozenset[tuple[str, ...]] = frozenset()
    dummies: frozenset[str] = frozenset()
    longest: int = field(default=1, compare=False)

    @classmethod
    def of(cls, placeholders: Iterable[str], dummies: Iterable[str] = ()) -> AddressVocabulary:
        phrases = frozenset(tuple(fold(p).split()) for p in placeholders if fold(p))
        return cls(
            placeholders=phrases,
            dummies=frozenset(fold(d) for d in dummies if fold(d)),
            longest=max((len(p) for p in phrases), default=1),
        )

    @property
    def fingerprint(self) -> str:
        """Changes when the vocabulary or the judge's logic does."""
        digest = hashlib.sha256(JUDGE_VERSION.encode())
        for phrase in sorted(" ".join(p) for p in self.placeholders):
            digest.update(b"p\0" + phrase.encode() + b"\0")
        for line in sorted(self.dummies):
            digest.update(b"d\0" + line.encode() + b"\0")
        return digest.hexdigest()[:16]

    def placeholder(self, text: str | None) -> str | None:
        """The folded text when it is made only of placeholder phrases and fillers
        ("Unknown", "NA NA", "desconocido", "XXXX"), else None."""
        words = fold(text or "").split()
        if not words:
            return None
        # can words[i:] be split into placeholder phrases and filler tokens?
        ok = [False] * len(words) + [True]
        for i in range(len(words) - 1, -1, -1):
            if _is_filler(words[i]) and ok[i + 1]:
                ok[i] = True
                continue
            for n in range(1, min(self.longest, len(words) - i) + 1):
                if ok[i + n] and tuple(words[i : i + n]) in self.placeholders:
                    ok[i] = True
                    break
        return " ".join(words) if ok[0] else None


@dataclass(frozen=True)
class AddressParts:
    """The parts a carrier reads, as written (None when absent)."""

    number: str | None = None
    street_name: str | None = None
    street_type: str | None = None
    unit: str | None = None
    place: str | None = None
    state: str | None = None
    zip_code: str | None = None
    box_type: str | None = None
    box_id: str | None = None
    route_type: str | None = None
    route_id: str | None = None
    other: str | None = None  # recipient, care-of, building or landmark lines
    general_delivery: bool = False
    intersection: bool = False
    ship: bool = False

    @property
    def street(self) -> str | None:
        return " ".join(p for p in (self.street_name, self.street_type) if p) or None


@dataclass(frozen=True)
class AddressVerdict:
    """Usable or not, why, and the kind of delivery line found."""

    usable: bool
    reason: str
    form: Form = "none"
    parts: AddressParts | None = None


def _clean_token(token: str) -> str:
    return token.strip(",;:()[]{}\"'")


def parse_address(text: str) -> AddressParts:
    """Parts of a free-text address (line breaks read as commas).

    ``usaddress.tag`` refuses an address whose label repeats (``RepeatedLabelError``: two
    box types in "PSC 817 Box 41", two addresses in one field); ``usaddress.parse`` gives
    the same labels token by token, so the parts are grouped here and the first run of
    each label kept, which also makes the order of tokens available (intersections,
    "General Delivery" wherever the parser put it).
    """
    flat = _LINE_BREAKS.sub(", ", text.strip())
    flat = _STATE_ZIP_JOINED.sub(
        lambda m: f"{m[1]} {m[2]}" if m[1].lower() in _STATE_KEYS else m[0], flat
    )
    flat = _APARTADO.sub("PO Box", flat)
    # "General Delivery" is the whole delivery line; the rest must be the post office,
    # which the parser reads better without it ("General Delivery, Reno NV").
    general_delivery = _GENERAL_DELIVERY.search(flat)
    if general_delivery:
        flat = f"{flat[: general_delivery.start()]}, {flat[general_delivery.end() :]}".strip(" ,")
    runs: dict[str, list[list[str]]] = {}
    previous = None
    for raw, label in usaddress.parse(flat):
        token = _clean_token(raw)
        if not token:
            previous = label
            continue
        if label != previous or label not in runs:
            runs.setdefault(label, []).append([])
        runs[label][-1].append(token)
        previous = label

    def first(*labels: str) -> str | None:
        words = [w for label in labels for w in (runs.get(label) or [[]])[0]]
        return " ".join(words) or None

    box_types = [" ".join(r) for r in runs.get("USPSBoxType", [])]
    box_ids = [" ".join(r) for r in runs.get("USPSBoxID", [])]
    route_type = first("USPSBoxGroupType")
    route_id = first("USPSBoxGroupID")
    # "PSC 817 Box 41": the first box run is a military box group, the second the box.
    if route_type is None and len(box_types) > 1 and fold(box_types[0]) in _MILITARY_BOX_WORDS:
        route_type, route_id = box_types.pop(0), (box_ids.pop(0) if len(box_ids) > 1 else None)
    unit = first("OccupancyType", "OccupancyIdentifier") or first(
        "SubaddressType", "SubaddressIdentifier"
    )
    others = [" ".join(r) for label in ("Recipient", "BuildingName", "LandmarkName", "NotAddress")
              for r in runs.get(label, [])]  # fmt: skip
    folded = f" {fold(flat)} "
    parts = AddressParts(
        number=first("AddressNumberPrefix", "AddressNumber", "AddressNumberSuffix"),
        street_name=first(
            "StreetNamePreModifier",
            "StreetNamePreDirectional",
            "StreetName",
            "StreetNamePostDirectional",
        ),
        street_type=first("StreetNamePreType", "StreetNamePostType"),
        unit=unit,
        place=first("PlaceName"),
        state=first("StateName"),
        zip_code=first("ZipCode"),
        box_type=box_types[0] if box_types else None,
        box_id=box_ids[0] if box_ids else None,
        route_type=route_type,
        route_id=route_id,
        other=", ".join(others) or None,
        general_delivery=general_delivery is not None,
        intersection="IntersectionSeparator" in runs or "CornerOf" in runs,
        ship=any(f" {p} " in folded for p in _SHIP_PREFIXES),
    )
    if parts.number is None and parts.street_name:
        # "Twenty Two Elm St": the parser takes spelled numbers for the street's name
        words = parts.street_name.split()
        spelled = len(list(takewhile(lambda w: fold(w) in _NUMBER_WORDS, words)))
        if 0 < spelled < len(words):
            parts = replace(
                parts, number=" ".join(words[:spelled]), street_name=" ".join(words[spelled:])
            )
    if general_delivery and not (parts.place and parts.state):
        return replace(parts, **_post_office(flat))
    return parts


def _post_office(text: str) -> dict[str, str]:
    """City, state and ZIP read from the end of a post office's line ("Reno, Nevada")
    when the parser, trained on street addresses, read them as a name."""
    words = fold(text).split()
    found: dict[str, str] = {}
    if words and _ZIP.match(words[-1]):
        found["zip_code"] = words.pop()
    for n in (4, 3, 2, 1):
        if len(words) >= n and " ".join(words[-n:]) in _STATE_KEYS:
            found["state"] = " ".join(words[-n:])
            words = words[:-n]
            break
    if words:
        found["place"] = " ".join(words)
    return found


# ----------------------------------------------------------------------------- judging


@dataclass(frozen=True)
class _Place:
    ok: bool  # a ZIP, or a city with its state: enough to route the mail
    problem: str | None = None  # a form's dummy where the place should be
    military: bool = False
    described: str = ""  # what of a place is there, for reasons
    dropped: str = ""  # placeholder parts read as absent, for reasons


@dataclass(frozen=True)
class _Line:
    form: Form
    problem: str | None = None
    described: str = ""


_COUNTRY_SUFFIX = re.compile(r"\s+(?:usa|us|u s a|u s|united states(?: of america)?)$")


def _state_key(state: str | None) -> str | None:
    if not state:
        return None
    key = _COUNTRY_SUFFIX.sub("", fold(state))
    return key if key in _STATE_KEYS else None


def _judge_place(parts: AddressParts, vocabulary: AddressVocabulary) -> _Place:
    """A placeholder city, state or ZIP is read as absent: the ZIP of "12 Oak St, Unknown,
    TX 78701" still routes it. A form's dummy town ("Anytown") makes the address an
    example, not anyone's address."""
    dropped = []
    city = parts.place
    if city and fold(city) in vocabulary.dummies:
        return _Place(False, f"a form's dummy town ('{fold(city)}')")
    if city and (phrase := vocabulary.placeholder(city)):
        city, dropped = None, [f"the city is a placeholder ('{phrase}')"]
    state = _state_key(parts.state)
    if parts.state and state is None and (phrase := vocabulary.placeholder(parts.state)):
        dropped.append(f"the state is a placeholder ('{phrase}')")
    zip_ok = False
    if parts.zip_code and (m := _ZIP.match(parts.zip_code.replace(" ", ""))):
        zip_ok = not _is_filler(m.group(1))
        if not zip_ok:
            dropped.append(f"the ZIP '{m.group(1)}' is a filler")
    military = bool(city) and fold(city or "") in _MILITARY_PLACES and state in _MILITARY_STATES
    present = [w for w, there in (("city", city), ("state", state), ("ZIP", zip_ok)) if there]
    return _Place(
        ok=zip_ok or (bool(city) and state is not None),
        military=military,
        described="/".join(present),
        dropped="; ".join(dropped),
    )


def _number_problem(number: str, *, house: bool = True) -> str | None:
    """Why a house (or box) number cannot be real, or None. Box numbers run longer
    (San Juan's PO boxes have seven digits)."""
    words = fold(number).split()
    if words and all(w in _NUMBER_WORDS for w in words):
        return None  # "One Apple Park Way"
    digits = _NON_DIGIT.sub("", number)
    if not digits:
        return "the house number has no digits"
    if set(digits) == {"0"}:
        return f"the number '{number}' is zero, not a real number"
    if _ORDINAL.fullmatch(words[0] if words else ""):
        return "an ordinal ('5th') where the house number should be"
    if len(digits) >= 5 and set(digits) == {"9"}:
        return f"the number '{number}' is a filler of nines"
    if house and len(max(_DIGIT_RUN.findall(number), key=len)) > 6:
        return "a house number longer than any real one (7+ digits)"
    return None


def _street_line(parts: AddressParts, vocabulary: AddressVocabulary) -> _Line:
    number = parts.number or ""
    if problem := _number_problem(number):
        return _Line("street", problem)
    name = parts.street_name or parts.street or ""
    # A typed street keeps an odd name ("Unknown Rd"); a name written as a code ("N/A St")
    # or with no type ("123 Unknown") is only a placeholder.
    phrase = vocabulary.placeholder(name)
    if phrase and (parts.street_type is None or _CODE_MARK.search(name)):
        return _Line("street", f"the street name is a placeholder ('{phrase}')")
    key = f"{fold(number)} {fold(parts.street_name or '')}".strip()
    if key in vocabulary.dummies:
        return _Line("street", f"a form's dummy street line ('{key}')")
    return _Line("street", None, "a house number and street")


def _box_line(parts: AddressParts, place: _Place) -> _Line:
    route = fold(parts.route_type or "")
    if route in _MILITARY_BOX_WORDS or (place.military and fold(parts.unit or "")[:4] == "unit"):
        return _Line("military", None, "a military unit and box")
    if route:
        # "RR 1" alone: the parser reads the route's number as a box id
        if not (parts.box_type and parts.box_id):
            return _Line("route", "a rural or highway contract route with no box number")
        if problem := _number_problem(parts.box_id, house=False):
            return _Line("route", problem)
        return _Line("route", None, "a route and box number")
    if not parts.box_id:
        return _Line("po_box", "a PO box with no box number")
    if problem := _number_problem(parts.box_id, house=False):
        return _Line("po_box", problem)
    return _Line("military" if place.military else "po_box", None, "a PO box")


def _spanish_line(text: str) -> _Line | None:
    m = _SPANISH_STREET.search(text) or _SPANISH_NAMED.search(text)
    if m is None:
        return None
    number = next(g for g in m.groups() if g)
    if problem := _number_problem(number):
        return _Line("street", problem)
    return _Line("street", None, "a street and number")


def _missing_line(parts: AddressParts, place: _Place) -> str:
    """Why nothing a carrier could deliver to was found, naming what there is instead."""
    if parts.intersection:
        return "an intersection of streets, not a delivery address"
    if parts.street_name and not parts.number:
        return "a street name but no house number"
    if parts.number and not (parts.street_name or parts.street_type):
        return "a house number but no street name"
    if parts.other:
        where = f" and a {place.described}" if place.described else ""
        return f"no street, PO box or route: a name or facility only{where}"
    if place.described == "ZIP":
        return "no street number and street name; only a ZIP"
    if place.described:
        return f"no street number and street name; only a {place.described}"
    return "no street number and street name, PO box or route"


def _delivery_line(
    parts: AddressParts, text: str, place: _Place, vocabulary: AddressVocabulary
) -> _Line:
    if parts.box_type or parts.box_id or parts.route_type:
        return _box_line(parts, place)
    if parts.intersection:
        return _Line("none", _missing_line(parts, place))
    if parts.number and (parts.street_name or parts.street_type):
        return _street_line(parts, vocabulary)
    if parts.general_delivery:
        return _Line("general_delivery", None, "General Delivery")
    if place.military and (parts.ship or parts.unit):
        return _Line("military", None, "a military unit or ship")
    if (spanish := _spanish_line(text)) is not None:
        return spanish
    return _Line("none", _missing_line(parts, place))


_USABLE = {
    "street": "usable: house number, street and place",
    "po_box": "usable: PO box and place",
    "route": "usable: route box and place",
    "general_delivery": "usable: General Delivery at a named post office",
    "military": "usable: military unit, box or ship at APO/FPO/DPO",
}


def judge_address(text: str | None, vocabulary: AddressVocabulary) -> AddressVerdict:
    """Could a carrier deliver to this address? See the module docstring."""
    if text is None or not text.strip():
        return AddressVerdict(False, "blank: no address given")
    if len(text) > MAX_ADDRESS_LENGTH:
        return AddressVerdict(False, f"longer than any address ({len(text):,} characters)")
    if not fold(text):
        return AddressVerdict(False, "no letters or digits: not an address")
    if phrase := vocabulary.placeholder(text):
        return AddressVerdict(False, f"a placeholder ('{phrase}'), not an address")
    parts = parse_address(text)
    place = _judge_place(parts, vocabulary)
    if place.problem:
        return AddressVerdict(False, place.problem, "none", parts)
    line = _delivery_line(parts, text, place, vocabulary)
    if line.problem:
        return AddressVerdict(False, line.problem, line.form, parts)
    if not place.ok:
        only = f" (only a {place.described})" if place.described else ""
        lacks = "without the post office's" if line.form == "general_delivery" else "but no"
        reason = f"{line.described} {lacks} city and state or ZIP{only}"
        if place.dropped:
            reason += f"; {place.dropped}"
        return AddressVerdict(False, reason, line.form, parts)
    return AddressVerdict(True, _USABLE[line.form], line.form, parts)


def vocabulary_of(registry: Registry) -> AddressVocabulary:
    """The registry's placeholder words and dummy street lines."""
    return AddressVocabulary.of(
        registry.parameters.address_placeholders, registry.parameters.address_dummies
    )
