"""Each case's evidence section of the report (HTML and Markdown), rendered once for what it shows.

A report shows every case's section, and most cases do not change from one day to the next.
A section is a pure function of its case's view (``CaseView``: everything the section shows,
already masked, registry labels included) and the section template, so it is kept beside the
report (``.report-sections.json``) under the SHA-256 of the view's ``repr`` and rendered again
only when the key is new: any change to what a case shows (an alert's status, an alert added,
a registry label, a masking policy that masks differently, the case no longer new) makes a
new key, and a kept section is never shown for a changed case. The file holds the sections of
the last report only, and is ignored whole when the template, the environment's options or
the Jinja2 or MarkupSafe version changed.

A changed case is rendered again, but most of its section is its alerts' rows and its
evidence events' rows, and most of those did not change (every case changes on the day it
stops being new). Each row is rendered alone from its own template (``case_alert_row``,
``case_event_row``: the loop body the section template held), masked as a whole report is,
and kept in the same file under the SHA-256 of its view's ``repr``; a section puts its rows
in after masking the text around them (``masking.mask_document_parts``: a row starts and
ends with an edge character), so the section is the one rendered with the rows inline.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from importlib import metadata
from pathlib import Path

import jinja2
import markupsafe

from dwatch import masking
from dwatch.report import safety
from dwatch.report.data import CaseView

TEMPLATE = "case_section.html.j2"
KEPT_FILE = ".report-sections.json"
MARKDOWN_TEMPLATE = "case_section.md.j2"
MARKDOWN_KEPT_FILE = ".report-sections-md.json"
# The rows a section template puts in through these names, each rendered from the template
# of the same name and the section template's suffix (``case_alert_row.html.j2``).
ROW_KINDS: tuple[tuple[str, str], ...] = (("case_alert_row", "a"), ("case_event_row", "e"))


def row_template(section_template: str, kind: str) -> str:
    """The row template beside a section template: ``case_section.html.j2`` -> ``kind.html.j2``."""
    return kind + section_template[len("case_section") :]


def _fingerprint(env: jinja2.Environment, template_path: Path) -> str:
    """What a kept section was rendered with: the template and how it is rendered."""
    options = (
        env.autoescape,
        env.trim_blocks,
        env.lstrip_blocks,
        env.keep_trailing_newline,
        # the function's name, not its repr (which holds an address that changes each run)
        getattr(env.finalize, "__module__", None),
        getattr(env.finalize, "__qualname__", None),
        metadata.version("jinja2"),
        metadata.version("markupsafe"),
    )
    # and the masking policy a kept section was masked with (a report puts kept sections
    # in without masking them again: ``CaseSections.fill``)
    policy = Path(masking.__file__).read_bytes() + Path(safety.__file__).read_bytes()
    rows = b"".join(
        (template_path.parent / row_template(template_path.name, kind)).read_bytes()
        for kind, _name in ROW_KINDS
    )
    return hashlib.sha256(
        template_path.read_bytes() + rows + repr(options).encode() + policy
    ).hexdigest()


def _key(view: object) -> str:
    return hashlib.sha256(repr(view).encode("utf-8")).hexdigest()


class KeptRows:
    """``case_alert_row(a)`` (or ``case_event_row(e)``) for the section template: the row,
    kept or rendered, masked. While a section renders (``placed`` set), each row that starts
    and ends with an edge character is put in as ``token`` and listed in ``placed``."""

    def __init__(self, template: jinja2.Template, name: str, kept: object) -> None:
        self.template, self.name = template, name
        self.kept: dict[str, str] = kept if isinstance(kept, dict) else {}
        self.shown: dict[str, str] = {}
        self.rendered = 0
        self.token = ""
        self.placed: list[str] | None = None
        self.used: list[str] = []  # the keys of the rows of the section being rendered

    def row(self, key: str) -> str | None:
        """The row kept or shown under ``key``, if any."""
        row = self.shown.get(key) or self.kept.get(key)
        return row if isinstance(row, str) else None

    def __call__(self, view: object) -> markupsafe.Markup:
        key = _key(view)
        self.used.append(key)
        row = self.shown.get(key) or self.kept.get(key)
        if not isinstance(row, str):
            # masked as the whole report is (a row is a pure function of its view)
            row = masking.mask_document(self.template.render({self.name: view}))
            self.rendered += 1
        self.shown[key] = row
        if self.placed is not None and row and masking.is_edge(row[0]) and masking.is_edge(row[-1]):
            self.placed.append(row)  # masks apart from the text around it
            return markupsafe.Markup(self.token)
        # Rendered from our row template by the section's environment, which escapes every
        # value: markup of ours, put in whole (and masked again with the section's text:
        # masking masked text changes nothing).
        return markupsafe.Markup(row)


class CaseSections:
    """``case_section(case)`` for the report template: the section's HTML, kept or rendered."""

    def __init__(
        self,
        env: jinja2.Environment,
        templates: Path,
        out_dir: Path | None,
        *,
        template: str = TEMPLATE,
        kept_file: str = KEPT_FILE,
    ) -> None:
        """``out_dir``: the report's folder, where sections are kept (None: kept nowhere);
        ``template`` and ``kept_file``: the HTML section's, or the Markdown one's."""
        self.template = env.get_template(template)
        self.fingerprint = _fingerprint(env, templates / template)
        self.path = out_dir / kept_file if out_dir is not None else None
        kept = self._load()
        sections = kept.get("sections")
        self.kept: dict[str, str] = sections if isinstance(sections, dict) else {}
        # each kept section's rows, by kind: their keys (the rows kept are those of the
        # sections shown, rendered again or not)
        section_rows = kept.get("section_rows")
        self.kept_rows: dict[str, dict[str, list[str]]] = (
            section_rows if isinstance(section_rows, dict) else {}
        )
        self.shown_rows: dict[str, dict[str, list[str]]] = {}
        rows = kept.get("rows")
        self.rows = {
            kind: KeptRows(
                env.get_template(row_template(template, kind)),
                name,
                rows.get(kind) if isinstance(rows, dict) else None,
            )
            for kind, name in ROW_KINDS
        }
        # Each row of a section being rendered is put in as this token (random, as below).
        self.row_token = f"dw-case-row-{secrets.token_hex(16)}"
        self._used: dict[str, list[str]] = {}
        self.shown: dict[str, str] = {}
        self.rendered = 0
        # With ``fill``: each section is put in the rendered report as this token (random:
        # no value from a log can hold it), and ``fill`` puts the sections in after masking
        # the text around them.
        self.token = f"dw-case-section-{secrets.token_hex(16)}"
        self.placed: list[str] | None = None

    def _load(self) -> dict[str, object]:
        if self.path is None:
            return {}
        try:
            kept = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}  # none yet, or unreadable: every section is rendered
        if not isinstance(kept, dict) or kept.get("fingerprint") != self.fingerprint:
            return {}
        return kept

    def _render(self, case: CaseView) -> str:
        """The case's section, masked: ``mask_document`` of the section rendered with its
        rows inline, made as the section's text masked around its rows (each masked when
        rendered or kept, starting and ending with an edge: ``mask_document_parts``)."""
        placed: list[str] = []  # the rows in the order the template put them in
        for rows in self.rows.values():
            rows.token, rows.placed, rows.used = self.row_token, placed, []
        try:
            rendered = self.template.render(c=case, **self.rows)
        finally:
            for rows in self.rows.values():
                rows.token, rows.placed = "", None
        self._used = {kind: rows.used for kind, rows in self.rows.items()}
        pieces = rendered.split(self.row_token)
        if len(pieces) != len(placed) + 1:
            raise ValueError("the section does not hold each row once")
        parts: list[tuple[str, bool]] = [(pieces[0], False)]
        for row, after in zip(placed, pieces[1:], strict=True):
            parts += [(row, True), (after, False)]
        return masking.mask_document_parts(parts)

    def __call__(self, case: CaseView) -> markupsafe.Markup:
        key = hashlib.sha256(repr(case).encode("utf-8")).hexdigest()
        html = self.shown.get(key) or self.kept.get(key)
        if not isinstance(html, str):
            # masked as the whole report is (so the kept file never holds more than the
            # report shows); the report's last pass leaves masked text as it is
            html = self._render(case)
            self.rendered += 1
            self.shown_rows[key] = self._used
        elif key not in self.shown_rows and isinstance(self.kept_rows.get(key), dict):
            self.shown_rows[key] = self.kept_rows[key]
        self.shown[key] = html
        if (
            self.placed is not None
            and html
            and masking.is_edge(html[0])
            and masking.is_edge(html[-1])
        ):
            self.placed.append(html)  # masks apart from the text around it
            return markupsafe.Markup(self.token)
        # Rendered from our section template by the environment that escapes every value:
        # markup of ours, put in whole (never a value from a log).
        return markupsafe.Markup(html)

    def hold(self) -> None:
        """From now on put each section in as the token; ``fill`` puts them in."""
        self.placed = []

    def fill(self, rendered: str) -> str:
        """The masked report: ``rendered`` (made after ``hold``) with the text around the
        sections masked (``masking.mask_document``) and each section put in where its
        token stands. Every section was masked when rendered (``__call__``), so the result
        is ``mask_document`` of the report rendered with the sections in place, character
        for character (tests/report/test_sections.py)."""
        placed, self.placed = self.placed or [], None
        pieces = rendered.split(self.token)
        if len(pieces) != len(placed) + 1:  # not rendered after ``hold``: mask it all
            raise ValueError("the report does not hold each section once")
        parts: list[tuple[str, bool]] = [(pieces[0], False)]
        for html, after in zip(placed, pieces[1:], strict=True):
            parts += [(html, True), (after, False)]
        return masking.mask_document_parts(parts)

    def save(self) -> None:
        """Keep the sections this report showed and their rows (written to a temporary name,
        then renamed)."""
        if self.path is None:
            return
        if (
            not self.rendered
            and not any(r.rendered for r in self.rows.values())
            and self.shown.keys() == self.kept.keys()
            and self.path.exists()
        ):
            return  # the file holds these sections and their rows already (nothing changed)
        rows: dict[str, dict[str, str]] = {kind: {} for kind in self.rows}
        for used in self.shown_rows.values():
            for kind, keys in used.items():
                kept = self.rows.get(kind)
                for key in keys if kept is not None and isinstance(keys, list) else []:
                    row = kept.row(key)
                    if row is not None:
                        rows[kind][key] = row
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(
            json.dumps(
                {
                    "fingerprint": self.fingerprint,
                    "sections": self.shown,
                    "section_rows": self.shown_rows,
                    "rows": rows,
                }
            ),
            encoding="utf-8",
        )
        os.replace(tmp, self.path)
