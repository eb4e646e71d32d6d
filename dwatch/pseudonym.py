"""Keyed pseudonymisation of taxpayer identifiers, and masking for output.

A raw TIN/SSN never reaches the store: on ingest it becomes ``tp_`` + 32 hex characters of
HMAC-SHA256(key, normalised identifier). The same identifier under the same key always
gives the same pseudonym, so subjects can be counted and joined across logs; without the
key the pseudonym cannot be reversed or recomputed. The key comes from
``DWATCH_PSEUDONYM_KEY`` (or config); the demo uses a fixed, published demo key and says so.

The SQL form computes exactly the same HMAC inside DuckDB, so ingest stays set-wise.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re

from dwatch.errors import ConfigError

ENV_KEY = "DWATCH_PSEUDONYM_KEY"
DEMO_KEY = "dwatch-demo-key-NOT-FOR-REAL-DATA"
PREFIX = "tp_"
_HEX_CHARS = 32
_BLOCK = 64  # SHA-256 block size in bytes

# SSN/TIN/EIN/ITIN shapes: 9 digits, optionally grouped 3-2-4 (SSN/ITIN) or 2-7 (EIN).
# Groups are separated as agencies write them: dash, dot or slash, with or without spaces
# around it ("123.45.6789", "123 - 45 - 6789"), or one space.
_TIN_SEP = r"(?: ?[-./] ?| )"
TIN_CORE = rf"\d{{3}}{_TIN_SEP}?\d{{2}}{_TIN_SEP}?\d{{4}}|\d{{2}} ?[-./] ?\d{{7}}"
TIN_PATTERN = rf"(?<![0-9A-Za-z])(?:{TIN_CORE})(?![0-9A-Za-z])"
TIN_RE = re.compile(TIN_PATTERN)


def resolve_key(explicit: str | None = None, *, allow_demo: bool = False) -> bytes:
    """The pseudonymisation key: explicit, else the environment, else (demo only) DEMO_KEY."""
    key = explicit or os.environ.get(ENV_KEY)
    if not key:
        if allow_demo:
            return DEMO_KEY.encode("utf-8")
        raise ConfigError(
            f"no pseudonymisation key: {ENV_KEY} is not set",
            where="environment",
            fix=f"export {ENV_KEY}=<a long random secret kept outside the store>, "
            "e.g. $(python -c 'import secrets; print(secrets.token_hex(32))')",
        )
    if len(key) < 16:
        raise ConfigError(
            f"{ENV_KEY} is too short ({len(key)} characters)",
            where="environment",
            fix="use at least 16 random characters (32 hex bytes recommended)",
        )
    return key.encode("utf-8")


# A TIN is nine digits. Spreadsheets and integer-typed columns drop leading zeros
# (012-34-5678 arrives as 12345678), so seven or eight digits alone are padded back.
_SHORTENED_TIN = (7, 8)
# A masked TIN ("XXX-XX-6789", "***-**-6789") names no one: the last digits are shared by
# many taxpayers, so it becomes no subject rather than one pseudonym for all of them.
_MASK = r"[Xx*#]{2}"
_MASK_RE = re.compile(_MASK)


def normalise_identifier(value: str) -> str:
    """'123-45-6789', ' 123 45 6789 ' and '123456789' are the same subject, and so are
    '012-34-5678' and 12345678; a masked 'XXX-XX-6789' is none ('')."""
    if _MASK_RE.search(value):
        return ""
    norm = re.sub(r"[^0-9A-Za-z]", "", value).upper()
    if len(norm) in _SHORTENED_TIN and norm.isdigit():
        return norm.zfill(9)
    return norm


def pseudonymise(value: str | None, key: bytes) -> str | None:
    if value is None:
        return None
    norm = normalise_identifier(value)
    if not norm:
        return None
    digest = hmac.new(key, norm.encode("utf-8"), hashlib.sha256).hexdigest()
    return PREFIX + digest[:_HEX_CHARS]


def hmac_pads(key: bytes) -> tuple[bytes, bytes]:
    """Inner and outer HMAC pads, to bind as BLOB parameters of ``sql_pseudonymise``."""
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_BLOCK, b"\x00")
    return bytes(b ^ 0x36 for b in key), bytes(b ^ 0x5C for b in key)


# Letters, digits and dashes, never two of X or x side by side (RE2 has no lookaround: each
# X is followed by another character or ends the text).
_PLAIN_ID = "(?:[0-9A-WYZa-wyz-]|[Xx][0-9A-WYZa-wyz-])*[Xx]?"


def sql_pseudonymise(expr: str, ipad_param: str = "$ipad", opad_param: str = "$opad") -> str:
    """DuckDB expression computing ``pseudonymise(expr)`` with pads bound as parameters.

    HMAC(k, m) = H(k^opad || H(k^ipad || m)); DuckDB's sha256 takes BLOBs.
    """
    # The normalised value is written once: NULL (no value, or nothing alphanumeric) flows
    # through encode, ||, sha256 and substr, so no CASE has to evaluate it again.
    # One pass: a masked value matches the first alternative whole and becomes '' (NULL);
    # otherwise every non-alphanumeric is dropped (a separate CASE for the mask cost ~30%).
    stripped = (
        f"nullif(upper(regexp_replace(CAST({expr} AS VARCHAR),"
        f" '^.*{_MASK}.*$|[^0-9A-Za-z]', '', 'g')), '')"
    )
    # Leading zeros restored as normalise_identifier does. The stripped value is bound once
    # by a one-element lambda: written out, the CASE evaluated the stripping regexp three
    # times (909,179 serial ids that look like issuable SSNs, as at 100M: 2.40 -> 1.85 CPU-s).
    shortened = (
        f"list_transform([{stripped}], lambda s: CASE WHEN length(s) BETWEEN"
        f" {min(_SHORTENED_TIN)} AND {max(_SHORTENED_TIN)} AND regexp_full_match(s, '[0-9]+')"
        " THEN lpad(s, 9, '0') ELSE s END)[1]"
    )
    # The usual SSN shape ('123-45-6789') normalises to its digits: one full match and a
    # replace instead of the stripping regexp (measured at 1M events: about 0.6 CPU-s of
    # the 1.5 the pseudonym costs).
    # An id of ASCII letters, digits and dashes with a letter and no two X's side by side
    # ('GA-DOR-001234567': a serial past 1,010,000 has nine digits SSA could issue, so the
    # whole id is pseudonymised) normalises to itself upper-cased without its dashes: the
    # stripping regexp removes only the dashes, its mask alternative needs two of [Xx*#]
    # side by side, and a letter means no leading zeros to restore. Two cheap tests instead
    # of the stripping regexp and its lambda: 0.86 -> 0.24 CPU-s a million such ids.
    plain_id = (
        f"WHEN regexp_full_match(CAST({expr} AS VARCHAR), '{_PLAIN_ID}')"
        f" AND regexp_matches(CAST({expr} AS VARCHAR), '[A-Za-z]')"
        f" THEN upper(replace(CAST({expr} AS VARCHAR), '-', ''))"
    )
    norm = (
        f"(CASE WHEN regexp_full_match(CAST({expr} AS VARCHAR), '[0-9]{{3}}-[0-9]{{2}}-[0-9]{{4}}')"
        f" THEN replace(CAST({expr} AS VARCHAR), '-', '') {plain_id} ELSE {shortened} END)"
    )
    inner = f"unhex(sha256({ipad_param} || encode({norm})))"
    return f"'{PREFIX}' || substr(sha256({opad_param} || {inner}), 1, {_HEX_CHARS})"


def mask_ref(ref: str | None) -> str:
    """Shorten a pseudonym for reports: enough to tell subjects apart, not to look one up."""
    if not ref:
        return ""
    return ref[:7] + "…" if ref.startswith(PREFIX) else "***"


def scrub_identifiers(text: str, key: bytes) -> str:
    """Replace every SSN/TIN-shaped string in free text with its pseudonym."""
    return TIN_RE.sub(lambda m: pseudonymise(m.group(0), key) or "", text)
