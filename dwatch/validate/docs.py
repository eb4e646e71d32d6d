"""Data Docs that open on a closed network.

GX's Data Docs pages load Bootstrap, jQuery, Font Awesome, Vega and a logo from CDNs.
Agency networks are often closed, and a page that calls out also tells the CDN who is
reading validation results. After GX builds the site, every reference to an asset on the
internet is removed (stylesheets, scripts, images, CSS imports; outbound links keep their
text but lose the address) and a small stylesheet written here is inlined instead, so the
tables read well with no network. The pages' own GX content is static HTML and stays.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

from dwatch.validate.gx_duckdb import DOCS_SITE

# Any attribute or CSS url() pointing off the machine: http:, https: or protocol-relative.
EXTERNAL = r"(?:https?:)?//"
_LINK_TAG = re.compile(rf"<link\b[^>]*\bhref\s*=\s*[\"']{EXTERNAL}[^>]*>", re.I)
_SCRIPT_TAG = re.compile(
    rf"<script\b[^>]*\bsrc\s*=\s*[\"']{EXTERNAL}[^>]*>\s*</script\s*>", re.I | re.S
)
_IMG_TAG = re.compile(rf"<img\b[^>]*\bsrc\s*=\s*[\"']{EXTERNAL}[^>]*>", re.I)
_ANCHOR_HREF = re.compile(rf"\s\bhref\s*=\s*([\"']){EXTERNAL}.*?\1", re.I | re.S)
_OTHER_SRC = re.compile(rf"\s\b(?:src|srcset|data-src|action)\s*=\s*([\"']){EXTERNAL}.*?\1", re.I)
_CSS_IMPORT = re.compile(rf"@import\s+(?:url\()?\s*[\"']?{EXTERNAL}[^;]*;", re.I)
_CSS_URL = re.compile(rf"url\(\s*[\"']?{EXTERNAL}[^)]*\)", re.I)
# What must not remain: any asset reference off the machine (used by the tests too).
EXTERNAL_ASSET = re.compile(
    rf"(?:\b(?:src|href|srcset|data-src|action)\s*=\s*[\"']{EXTERNAL}|url\(\s*[\"']?{EXTERNAL}"
    rf"|@import\s+[\"']{EXTERNAL})",
    re.I,
)

OFFLINE_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0;
       color: #1d2733; background: #fff; line-height: 1.45; }
.container, .container-fluid { max-width: 1200px; margin: 0 auto; padding: 0 1rem; }
nav, .navbar { background: #24323f; color: #fff; padding: .6rem 1rem; }
nav a, .navbar a { color: #fff; }
h1, h2, h3, h4, h5 { margin: .8em 0 .4em; }
table { border-collapse: collapse; width: 100%; margin: .5rem 0 1rem; font-size: .92rem; }
th, td { border: 1px solid #c9d1d9; padding: .3rem .5rem; text-align: left; vertical-align: top; }
th { background: #eef2f5; }
.card { border: 1px solid #c9d1d9; border-radius: 4px; margin: 1rem 0; padding: .5rem 1rem; }
.text-danger, .fa-times { color: #b42318; }
.text-success, .fa-check-circle { color: #067647; }
code, pre { background: #f4f6f8; padding: 0 .2rem; white-space: pre-wrap; word-break: break-word; }
.d-none, .modal, footer, button[onclick] { display: none; }
/* Font Awesome is not loaded: status icons become characters. */
.fa-check-circle::before { content: "✔"; }
.fa-times::before, .fa-times-circle::before { content: "✘"; }
.fa-exclamation-triangle::before { content: "!"; }
.dwatch-index td.failed { color: #b42318; font-weight: 600; }
.dwatch-index td.passed { color: #067647; }
.dwatch-offline-note { background: #fff8e1; border-bottom: 1px solid #e0c66a; padding: .4rem 1rem;
                       font-size: .85rem; }
"""
_NOTE = (
    '<div class="dwatch-offline-note">Offline Data Docs: internet assets were removed so this'
    " page renders on a closed network; tables are complete, interactive filters are not.</div>"
)


def make_offline(html: str) -> str:
    """The page without references to internet assets, with the local stylesheet inlined."""
    html = _SCRIPT_TAG.sub("", html)
    html = _LINK_TAG.sub("", html)
    html = _IMG_TAG.sub("", html)
    html = _OTHER_SRC.sub("", html)
    html = _ANCHOR_HREF.sub("", html)
    html = _CSS_IMPORT.sub("", html)
    html = _CSS_URL.sub("none", html)
    style = f'<style id="dwatch-offline">{OFFLINE_CSS}</style>'
    if 'id="dwatch-offline"' not in html:
        html = re.sub(r"</head\s*>", style + "</head>", html, count=1, flags=re.I)
        html = re.sub(r"(<body\b[^>]*>)", r"\1" + _NOTE, html, count=1, flags=re.I)
    return html


def make_site_offline(docs_dir: Path) -> list[Path]:
    """Rewrite every HTML and CSS file of the site; returns the files changed."""
    changed = []
    for path in sorted(docs_dir.rglob("*")):
        if path.suffix.lower() not in {".html", ".htm", ".css"} or not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if path.suffix.lower() == ".css":
            new = _CSS_URL.sub("none", _CSS_IMPORT.sub("", text))
        else:
            new = make_offline(text)
        if new != text:
            path.write_text(new, encoding="utf-8")
            changed.append(path)
    return changed


def external_assets(docs_dir: Path) -> dict[Path, list[str]]:
    """Every remaining reference to an internet asset, by file (empty when offline-clean)."""
    found: dict[Path, list[str]] = {}
    for path in sorted(docs_dir.rglob("*")):
        if path.suffix.lower() in {".html", ".htm", ".css", ".js"} and path.is_file():
            hits = EXTERNAL_ASSET.findall(path.read_text(encoding="utf-8", errors="replace"))
            if hits:
                found[path] = hits
    return found


_STATUS_FAILED = re.compile(r"Status:</span>\s*<i class=\"[^\"]*fa-times", re.I)


def _static_listing(docs_dir: Path) -> str:
    """The index's lists as plain HTML (GX fills them with JavaScript from a CDN)."""
    rows = []
    for page in sorted((docs_dir / "validations").rglob("*.html"), reverse=True):
        parts = page.relative_to(docs_dir / "validations").parts
        suite = ".".join(parts[:-3])
        run_time = parts[-2]
        asset = page.stem.split("-", 1)[-1]
        failed = bool(_STATUS_FAILED.search(page.read_text(encoding="utf-8", errors="replace")))
        status = '<td class="failed">failed</td>' if failed else '<td class="passed">passed</td>'
        rows.append(
            f"<tr>{status}<td>{html.escape(run_time)}</td><td>{html.escape(suite)}</td>"
            f'<td><a href="{html.escape(page.relative_to(docs_dir).as_posix())}">'
            f"{html.escape(asset)}</a></td></tr>"
        )
    suites = [
        f'<li><a href="{html.escape(p.relative_to(docs_dir).as_posix())}">'
        f"{html.escape('.'.join(p.relative_to(docs_dir / 'expectations').with_suffix('').parts))}"
        "</a></li>"
        for p in sorted((docs_dir / "expectations").rglob("*.html"))
    ]
    return (
        '<section class="dwatch-index container"><h2>Validation results</h2>'
        "<table><tr><th>status</th><th>run time (UTC)</th><th>suite</th><th>batch</th></tr>"
        + "".join(rows)
        + "</table><h2>Expectation suites</h2><ul>"
        + "".join(suites)
        + "</ul></section>"
    )


def build_offline_docs(context: Any, docs_dir: Path) -> Path:
    """Build the GX Data Docs site into ``docs_dir``, make it offline; returns index.html."""
    docs_dir.mkdir(parents=True, exist_ok=True)
    context.build_data_docs(site_names=[DOCS_SITE])
    make_site_offline(docs_dir)
    index = docs_dir / "index.html"
    if not index.is_file():
        raise FileNotFoundError(f"GX built no index.html in {docs_dir}")
    text = index.read_text(encoding="utf-8")
    text = re.sub(r"<section class=\"dwatch-index.*?</section>", "", text, flags=re.S)
    text = re.sub(r"(</div>\s*)?(<footer\b)", _static_listing(docs_dir) + r"\2", text, count=1)
    if 'class="dwatch-index' not in text:
        text = re.sub(r"</body\s*>", _static_listing(docs_dir) + "</body>", text, count=1)
    index.write_text(text, encoding="utf-8")
    return index
