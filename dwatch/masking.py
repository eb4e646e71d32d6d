"""One masking policy for every text that came from outside: taxpayer ids never written raw.

What counts as a taxpayer-id shape (SSN, ITIN, EIN): nine digits not touching another digit,
written undashed ("123456789"), grouped 3-2-4 with dashes, dots, slashes or spaces
("123-45-6789", "123.45.6789", "123 - 45 - 6789", "123 45 6789"), or 2-7 ("12-3456789").
Letters and punctuation around it do not hide it: "ssn:456-78-9012x" and "REQ-567-89-0123"
carry one. Ten digits or more in a row ("5551234567", an account number) are not one.
Long lower-case hexadecimal tokens (pseudonyms, hashes, UUIDs) are digests, not a person's
number, and are left whole.

What happens to a shape depends on where it is:

- free text (descriptions, purposes, agency codes, messages, reports, logs): the shape
  becomes ``[TIN-REDACTED]`` (``mask_text``);
- identifier fields (event, request, agreement and case ids, actor ids, source systems):
  an id carrying a shape becomes the keyed pseudonym of the whole value, so joins across
  files still hold (``pseudonymise_id``). An undashed nine-digit run inside an id
  ("ev-123456789") counts too: a serial number and an SSN cannot be told apart, and
  a pseudonymised serial costs only readability, a leaked SSN costs the taxpayer; but nine
  digits SSA never issues (area 000 or 666, group 00, serial 0000: the zero-padded serial
  "000000416") are not a shape;
- file names: each shape becomes its keyed pseudonym, so two files stay two files
  (``mask_path``).

Numbers typed as numbers (sequence_no, record_count) are numbers, not masked.

Ingest applies the policy at the door, in DuckDB SQL: a cheap RE2 test (a superset of the
shape) picks the rare values that may carry one, and only those call the Python functions
here, registered on every store connection (``register``). Every writer (reports, e-mail,
Prefect artifacts, run records, logs) applies ``mask_text`` once more as a last line.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import re
import weakref
from collections.abc import Sequence
from typing import Any

import duckdb

from dwatch.pseudonym import PREFIX, pseudonymise

MASK = "[TIN-REDACTED]"

_SEP = r"(?: ?[-./] ?| )"
# Both group separators or none: "12822-2026" in a docket-style order id is not a TIN.
SHAPE_CORE = rf"\d{{3}}{_SEP}\d{{2}}{_SEP}\d{{4}}|\d{{9}}|\d{{2}} ?[-./] ?\d{{7}}"
SHAPE = rf"(?<!\d)(?:{SHAPE_CORE})(?!\d)"
# Digests left whole: a standalone lower-case hex token of 16+ characters (pseudonyms,
# SHA-256, uuid4().hex) or a UUID.
_DIGEST = (
    r"(?<![0-9A-Za-z])(?:[0-9a-f]{16,}"
    r"|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})(?![0-9A-Za-z])"
)
_TOKEN_RE = re.compile(rf"(?P<digest>{_DIGEST})|(?P<tin>{SHAPE})")
# RE2 (DuckDB) superset of what _is_tin accepts: any value it misses has no shape; what
# it finds is decided by the Python functions. Grouped forms (separators up to three of
# "-./ " cover _SEP), the 2-7 form, and nine digits in a row only when SSA could issue them
# (area not 000 or 666, group not 00, serial not 0000): zero-padded serials, in nearly every
# row of many logs ("AK-DOR-000000001"), would otherwise send every row to Python.
_SQL_AREA = r"(?:00[1-9]|0[1-9][0-9]|[1-57-9][0-9]{2}|6[0-57-9][0-9]|66[0-57-9])"
_SQL_GROUP = r"(?:0[1-9]|[1-9][0-9])"
_SQL_SERIAL = r"(?:000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})"
# A digit that is not ASCII (Arabic-Indic, full-width): Python's \d reads it as a digit,
# so the value goes to Python.
_SQL_OTHER_DIGIT = r"[^\x00-\x7F\P{Nd}]"
SQL_MAY_HAVE_SHAPE = (
    r"[0-9]{3}[-./ ]{1,3}[0-9]{2}[-./ ]{1,3}[0-9]{4}|[0-9]{2} ?[-./] ?[0-9]{7}"
    rf"|{_SQL_AREA}{_SQL_GROUP}{_SQL_SERIAL}|{_SQL_OTHER_DIGIT}"
)
# The exact RE2 form of has_shape for ASCII text in which no digest can start. RE2 has no
# lookaround, so a shape's edge is a non-digit or an end of the text; each alternative
# spans whole digit runs, so testing for any match anywhere is what finditer decides:
# an unissuable nine-digit run (the only shape that is not a TIN) is one whole run, and
# no other shape can start inside it. The 3-2-4 separators are exactly _SEP.
_SQL_SEP = r"(?: ?[-./] ?| )"
SQL_SHAPE = (
    rf"(?:^|[^0-9])(?:[0-9]{{3}}{_SQL_SEP}[0-9]{{2}}{_SQL_SEP}[0-9]{{4}}"
    rf"|[0-9]{{2}} ?[-./] ?[0-9]{{7}}|{_SQL_AREA}{_SQL_GROUP}{_SQL_SERIAL})(?:[^0-9]|$)"
)
# Where SQL_SHAPE alone is not the policy: a character outside ASCII (Python's \d reads
# other scripts' digits), or a run that may be a digest (left whole by _TOKEN_RE, which can
# hide a shape inside it). Those values, rare in ids, are decided by has_shape in Python.
SQL_SHAPE_NEEDS_PYTHON = (
    r"[^\x00-\x7F]|[0-9a-f]{16}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
)

UDF_MASK_TEXT = "dwatch_mask_text"
UDF_HAS_SHAPE = "dwatch_has_tin_shape"


def _is_tin(match: re.Match[str]) -> bool:
    """A shape the regular expression found that can be a taxpayer id.

    Nine digits written without separators are also every zero-padded serial number
    ("CA-FTB-000000416"); they count only when they could be issued: an SSN or ITIN never
    has area 000 or 666, group 00 or serial 0000 (SSA's rules). Grouped forms always count."""
    text = match.group("tin")
    if not text or not text.isdigit():
        return bool(text)
    return text[:3] not in ("000", "666") and text[3:5] != "00" and text[5:] != "0000"


def has_shape(value: str | None) -> bool:
    """Whether ``value`` carries a taxpayer-id shape outside a digest."""
    if not value:
        return False
    return any(_is_tin(m) for m in _TOKEN_RE.finditer(value))


def mask_text(value: Any) -> Any:
    """``value`` with every taxpayer-id shape replaced by ``[TIN-REDACTED]``; None stays None."""
    if value is None:
        return None
    text = str(value)
    return _TOKEN_RE.sub(lambda m: MASK if _is_tin(m) else m.group(0), text)


# SHAPE_CORE with its leading digit factored out: a pattern that starts with a character
# class lets the regex engine skip to the next digit in C, where SHAPE (a lookbehind first)
# and _TOKEN_RE (a digest alternative first) try the full pattern at every character.
_SHAPE_CANDIDATE_RE = re.compile(
    rf"\d(?:\d{{2}}{_SEP}\d{{2}}{_SEP}\d{{4}}|\d{{8}}|\d ?[-./] ?\d{{7}})"
)
# No match of _TOKEN_RE holds a character outside this set (digests are [0-9a-f-], shapes
# digits and _SEP), and every lookaround of it treats such a character as an edge.
_IN_TOKEN_RUN_RE = re.compile(r"[\w ./-]*")
_TOKEN_RUN_EXTRA = frozenset("_ ./-")


def mask_document(text: str) -> str:
    """``mask_text(text)`` for a whole document, equal to it character for character.

    A document (a report of megabytes) is cut at every character no match can hold (see
    ``_IN_TOKEN_RUN_RE``): the pieces mask independently, and a piece with no match of
    ``SHAPE_CORE`` has no shape, so only the pieces around a candidate go through the full
    policy: a 10M store's 7.3 MB HTML report 0.63 -> 0.17 CPU-s (its digits are mostly the
    chart's coordinates)."""
    pieces: list[str] = []
    done = 0  # text[:done] is in ``pieces``, masked
    for found in _SHAPE_CANDIDATE_RE.finditer(text):
        start = found.start()
        if start < done:
            continue  # inside the run already masked
        while start > done and (text[start - 1].isalnum() or text[start - 1] in _TOKEN_RUN_EXTRA):
            start -= 1  # str.isalnum is re's \w without "_" for str patterns
        run = _IN_TOKEN_RUN_RE.match(text, found.end())
        end = run.end() if run else found.end()
        pieces.append(text[done:start])
        pieces.append(mask_text(text[start:end]))
        done = end
    pieces.append(text[done:])
    return "".join(pieces)


def is_edge(char: str) -> bool:
    """A character no match of the policy holds and every lookaround of it sees as an edge
    (see ``_IN_TOKEN_RUN_RE``): the texts on either side of it mask independently."""
    return not (char.isalnum() or char == "_" or char in _TOKEN_RUN_EXTRA)


def mask_document_parts(parts: Sequence[tuple[str, bool]]) -> str:
    """``mask_document`` of the parts' texts joined, each part ``(text, masked)``.

    A part marked masked is the output of ``mask_document`` (a report's kept case section,
    masked when rendered), which masking leaves as it is, and starts and ends with an edge
    (``is_edge``), so it masks independently of its neighbours: it is put in as it is and
    only the text between such parts is masked."""
    out: list[str] = []
    pending: list[str] = []
    for text, masked in parts:
        if not masked:
            pending.append(text)
            continue
        if text and not (is_edge(text[0]) and is_edge(text[-1])):
            raise ValueError("a masked part must start and end with an edge character")
        out.append(mask_document("".join(pending)))
        out.append(text)
        pending = []
    out.append(mask_document("".join(pending)))
    return "".join(out)


def _digest(normalised: str, key: bytes) -> str:
    return PREFIX + hmac.new(key, normalised.encode("utf-8"), hashlib.sha256).hexdigest()[:32]


def pseudonymise_id(value: str | None, key: bytes) -> str | None:
    """An identifier carrying a shape becomes the keyed pseudonym of the whole value.

    The same normalisation as taxpayer refs ('123-45-6789' used as a user id is the same
    subject as the TIN 123456789); an id that also looks masked ('XX-123-45-6789') still
    gets one (it names something, unlike a bare masked TIN)."""
    if value is None or not has_shape(value):
        return value
    return pseudonymise(value, key) or _digest(re.sub(r"[^0-9A-Za-z]", "", value).upper(), key)


def mask_path(path: object, key: bytes | None) -> str:
    """A file name or path with each shape replaced by its keyed pseudonym (MASK without a
    key), so two files named by two SSNs stay two files."""
    text = str(path)
    if key is None:
        return mask_text(text)

    def replace(m: re.Match[str]) -> str:
        if not _is_tin(m):
            return m.group(0)
        return pseudonymise(m.group(0), key) or MASK

    return _TOKEN_RE.sub(replace, text)


def mask_json(value: Any, key: bytes | None) -> Any:
    """Parsed JSON (dicts, lists, strings) with every string and key passed through
    ``mask_path``; numbers and booleans unchanged."""
    if isinstance(value, str):
        return mask_path(value, key)
    if isinstance(value, dict):
        return {mask_path(k, key): mask_json(v, key) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_json(v, key) for v in value]
    return value


def sql_may_have_shape(expr: str) -> str:
    return f"regexp_matches({expr}, '{SQL_MAY_HAVE_SHAPE}')"


def sql_may_have_shape_any(exprs: list[str]) -> str:
    """One RE2 test over several text columns of a row (one call instead of one each):
    joined by a unit separator, which no shape spans."""
    if not exprs:
        return "false"
    return sql_may_have_shape(f"concat_ws(chr(31), {', '.join(exprs)})")


def sql_mask_text(expr: str, may: str | None = None) -> str:
    """DuckDB expression: ``mask_text(expr)``; only values RE2 flags reach Python. ``may``
    is a precomputed flag (sql_may_have_shape_any) to use instead of testing ``expr``."""
    return (
        f"CASE WHEN {may or sql_may_have_shape(expr)} THEN {UDF_MASK_TEXT}(CAST({expr} AS VARCHAR))"
        f" ELSE CAST({expr} AS VARCHAR) END"
    )


def sql_has_shape(expr: str) -> str:
    """DuckDB expression equal to ``has_shape(expr)`` (NULL for NULL): RE2 alone for the
    usual id (ASCII, nothing digest-like), Python for the rest.

    At 100M events every serial past 1,010,000 ('GA-DOR-001234567') is nine digits SSA
    could issue; each such id went to Python for this answer."""
    return (
        f"CASE WHEN regexp_matches({expr}, '{SQL_SHAPE_NEEDS_PYTHON}')"
        f" THEN {UDF_HAS_SHAPE}({expr}) ELSE regexp_matches({expr}, '{SQL_SHAPE}') END"
    )


def sql_pseudonymise_id(expr: str, pseudonym_sql: str, may: str | None = None) -> str:
    """DuckDB expression: ``pseudonymise_id(expr)``; ``pseudonym_sql`` is the keyed
    pseudonym expression of ``expr`` (dwatch.pseudonym.sql_pseudonymise)."""
    return (
        f"CASE WHEN {may or sql_may_have_shape(expr)} THEN"
        f" CASE WHEN {sql_has_shape(expr)} THEN {pseudonym_sql} ELSE {expr} END"
        f" ELSE {expr} END"
    )


_REGISTERED: weakref.WeakSet[duckdb.DuckDBPyConnection] = weakref.WeakSet()


def register(con: duckdb.DuckDBPyConnection) -> None:
    """Make the policy's functions callable from SQL on ``con`` (idempotent)."""
    from duckdb.sqltypes import BOOLEAN, VARCHAR

    if con in _REGISTERED:
        return
    for name, function, returns in (
        (UDF_MASK_TEXT, mask_text, VARCHAR),
        (UDF_HAS_SHAPE, has_shape, BOOLEAN),
    ):
        # Already registered: on this connection, or on another one to the same database
        # in this process (DuckDB shares the function catalog between them).
        with contextlib.suppress(duckdb.NotImplementedException, duckdb.CatalogException):
            con.create_function(name, function, [VARCHAR], returns, side_effects=False)
    _REGISTERED.add(con)


class _MaskingRecordFactory:
    """Wraps the logging record factory: a record's message and traceback are masked when
    the record is made, before any handler (console, file, Prefect's API) sees it."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self.inner(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a malformed format string: leave it to logging to report
            return record
        masked = mask_text(message)
        if masked != message or record.args:
            record.msg, record.args = masked, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = mask_text(logging.Formatter().formatException(record.exc_info))
        return record


def install_log_guard() -> None:
    """Mask every log record of the process (idempotent)."""
    current = logging.getLogRecordFactory()
    if not isinstance(current, _MaskingRecordFactory):
        logging.setLogRecordFactory(_MaskingRecordFactory(current))
