"""Headless Chromium for the report tests: dump the DOM after load, or take a screenshot."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pytest

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser")
# No network, no background services, no first-run UI: the report must stand on its own.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
)


def chromium_path() -> str:
    for candidate in CHROMIUM_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    pytest.fail(
        "Chromium is not installed, so the report cannot be opened in a browser. "
        "Run `make browser` (as root: apt-get update && apt-get install -y chromium).",
        pytrace=False,
    )


def _run(args: list[str], timeout: int = 120) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="dwatch-chromium-") as profile:
        return subprocess.run(
            [chromium_path(), *FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def dump_dom(page: Path) -> str:
    """The DOM after the page loaded (and any script on it ran), serialised as HTML."""
    done = _run(["--virtual-time-budget=3000", "--dump-dom", page.resolve().as_uri()])
    assert done.returncode == 0 and "<html" in done.stdout, (
        f"chromium failed: {done.stderr[-2000:]}"
    )
    return done.stdout


def screenshot(page: Path, out: Path, *, width: int = 1280, height: int = 1600) -> Path:
    done = _run(
        [
            f"--window-size={width},{height}",
            f"--screenshot={out.resolve()}",
            page.resolve().as_uri(),
        ]
    )
    assert done.returncode == 0 and out.is_file(), (
        f"chromium screenshot failed: {done.stderr[-2000:]}"
    )
    return out


class DomText(HTMLParser):
    """Visible text, the document title and the element counts of a dumped DOM."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title = ""
        self.text: list[str] = []
        self.tags: dict[str, int] = {}
        self._stack: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] = self.tags.get(tag, 0) + 1
        self._stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        while self._stack:
            if self._stack.pop() == tag:
                break

    def handle_data(self, data: str) -> None:
        current = self._stack[-1] if self._stack else ""
        if current == "title" and "svg" not in self._stack:
            self.title += data
        elif current not in ("style", "script"):
            self.text.append(data)

    @property
    def visible_text(self) -> str:
        return " ".join(" ".join(self.text).split())


def parse_dom(dom: str) -> DomText:
    parser = DomText()
    parser.feed(dom)
    return parser
