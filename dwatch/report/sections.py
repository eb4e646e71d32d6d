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
    return hashlib.sha256(template_path.read_bytes() + repr(options).encode() + policy).hexdigest()


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
        self.kept = self._load()
        self.shown: dict[str, str] = {}
        self.rendered = 0
        # With ``fill``: each section is put in the rendered report as this token (random:
        # no value from a log can hold it), and ``fill`` puts the sections in after masking
        # the text around them.
        self.token = f"dw-case-section-{secrets.token_hex(16)}"
        self.placed: list[str] | None = None

    def _load(self) -> dict[str, str]:
        if self.path is None:
            return {}
        try:
            kept = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}  # none yet, or unreadable: every section is rendered
        if not isinstance(kept, dict) or kept.get("fingerprint") != self.fingerprint:
            return {}
        sections = kept.get("sections")
        return sections if isinstance(sections, dict) else {}

    def __call__(self, case: CaseView) -> markupsafe.Markup:
        key = hashlib.sha256(repr(case).encode("utf-8")).hexdigest()
        html = self.shown.get(key) or self.kept.get(key)
        if not isinstance(html, str):
            # masked as the whole report is (so the kept file never holds more than the
            # report shows); the report's last pass leaves masked text as it is
            html = masking.mask_document(self.template.render(c=case))
            self.rendered += 1
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
        """Keep the sections this report showed (written to a temporary name, then renamed)."""
        if self.path is None:
            return
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(
            json.dumps({"fingerprint": self.fingerprint, "sections": self.shown}),
            encoding="utf-8",
        )
        os.replace(tmp, self.path)
