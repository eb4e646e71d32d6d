"""Making log-derived values safe to show: masking, CSV neutralising, Markdown and terminal text.

Everything that came from a log (actor ids, descriptions, request ids, evidence) was written
by someone else and may hold markup, spreadsheet formulas or terminal escapes. HTML escaping
is Jinja2's autoescape (see ``render``); this module covers the other outputs, and masks
taxpayer pseudonyms everywhere.
"""

from __future__ import annotations

import html
import json
import re
from functools import lru_cache
from typing import Any

from dwatch import masking
from dwatch.pseudonym import PREFIX, mask_ref

_PSEUDONYM_RE = re.compile(re.escape(PREFIX) + r"[0-9a-f]{32}")
# Spreadsheet apps evaluate a cell starting with these as a formula (OWASP CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# Values always sit inside a table cell or after a fixed prefix, so line-start syntax (#, -, +)
# cannot trigger; these are the characters that act anywhere in a line.
_MARKDOWN_SPECIAL_RE = re.compile(r"([\\`*_\[\]|~])")


def mask_text(value: object) -> str:
    """Text with every taxpayer pseudonym shortened and every taxpayer-id shape masked
    (dwatch.masking: ids carrying one were pseudonymised on ingest; this is the last line)."""
    if value is None:
        return ""
    return _masked(value if isinstance(value, str) else str(value))


# A report repeats the same few values (agencies, logs, event types, days) in thousands of
# cells; masking is a pure function of the text, so each distinct text is masked once, by
# ``mask_document`` (equal to ``masking.mask_text`` character for character: tests/
# test_masking_document.py), which skips in C to the few places a shape can start: long
# texts (evidence, explanations) mask about 3.5x faster.
@lru_cache(maxsize=1 << 16)
def _masked(text: str) -> str:
    return masking.mask_document(_PSEUDONYM_RE.sub(lambda m: mask_ref(m.group(0)), text))


def mask_free_text(value: object) -> str:
    """Free text (descriptions, notes, explanations): the same policy as ``mask_text``."""
    return mask_text(value)


# What a JSON text can start with, after JSON whitespace (json.loads raises on any other).
_JSON_STARTS = frozenset('"{[-0123456789')
_JSON_WORDS = ("true", "false", "null", "NaN", "Infinity")


def _may_be_json(text: str) -> bool:
    """False when ``json.loads(text)`` is sure to raise: a report's evidence holds tens of
    thousands of strings (event ids, names), and raising for each cost more than masking."""
    head = text.lstrip(" \t\n\r")
    return bool(head) and (head[0] in _JSON_STARTS or head.startswith(_JSON_WORDS))


def mask_json(value: object) -> Any:
    """Parsed evidence with every string masked (keys included). A string that is JSON
    itself is parsed too (a number, a list in a string) and masked as parsed."""
    if isinstance(value, str):
        if not _may_be_json(value):
            return mask_free_text(value)
        try:
            value = json.loads(value)
        except ValueError:
            return mask_free_text(value)
    if isinstance(value, dict):
        return {mask_text(k): mask_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_json(v) for v in value]
    if isinstance(value, str):
        return mask_free_text(value)
    return value


def evidence_pairs(value: object) -> list[tuple[str, str]]:
    """Evidence as (key, value) text pairs for tables; nested values as compact JSON."""
    masked = mask_json(value)
    if masked in (None, "", {}):
        return []
    if not isinstance(masked, dict):
        return [("evidence", masked if isinstance(masked, str) else json.dumps(masked))]
    return [
        (k, v if isinstance(v, str) else json.dumps(v, ensure_ascii=False))
        for k, v in masked.items()
    ]


def csv_cell(value: object) -> object:
    """A CSV cell a spreadsheet will not execute: text starting =, +, -, @, tab or CR gets a quote."""
    if value is None:
        return ""
    if isinstance(value, bool | int | float):
        return value
    text = mask_text(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def terminal_text(value: object, *, free_text: bool = False) -> str:
    """Text for a terminal: masked, with control characters (escape sequences) made visible."""
    masked = mask_free_text(value) if free_text else mask_text(value)
    return _CONTROL_RE.sub(lambda m: f"\\x{ord(m.group(0)):02x}", masked)


def markdown_text(value: object) -> str:
    """Markdown inline text that renders literally: no HTML, links, emphasis or table breaks."""
    text = html.escape(mask_text(value), quote=False)
    text = _MARKDOWN_SPECIAL_RE.sub(r"\\\1", text)
    return _CONTROL_RE.sub(" ", text.replace("\r", " ").replace("\n", " "))
