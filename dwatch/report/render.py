"""Write the report: self-contained HTML (inline CSS, inline SVG chart, no script), CSV, Markdown.

Safety is structural: the HTML environment autoescapes every value and the template never
marks anything safe; the Markdown environment runs every value through ``markdown_text``;
every CSV cell goes through ``csv_cell``. Report files are written to a temporary name and
renamed, so a reader never sees half a report. (A report that is e-mailed is also copied to
``outbox/`` by ``notify``, so a retry sends what was announced even after later runs.)
"""

from __future__ import annotations

import csv
import json
import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import jinja2
import markupsafe

from dwatch import masking
from dwatch.errors import InputError, StoreError
from dwatch.report.cases import CaseBuildResult, alert_rows, build_cases
from dwatch.report.citations import CitationDirectory, load_directory
from dwatch.report.data import ReportData, gather, log_scale
from dwatch.report.safety import csv_cell, markdown_text
from dwatch.report.sections import MARKDOWN_KEPT_FILE, MARKDOWN_TEMPLATE, CaseSections

TEMPLATES = Path(__file__).resolve().parent / "templates"
FORMATS: tuple[str, ...] = ("html", "csv", "md")


def html_environment() -> jinja2.Environment:
    # autoescape=True for every template, whatever its name: log values are never trusted.
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _markdown_value(value: object) -> object:
    # A case's section (Markup) was rendered by this environment from case_section.md.j2:
    # every value in it went through markdown_text already. Nothing from a log is Markup.
    return value if isinstance(value, markupsafe.Markup) else markdown_text(value)


def markdown_environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=False,
        finalize=_markdown_value,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


# ---------------------------------------------------------------------------- the chart


@dataclass
class ChartPoint:
    x: float
    r: float
    day: str
    events: int
    records: int


@dataclass
class ChartRow:
    label: str
    y: float
    flagged: bool
    points: list[ChartPoint] = field(default_factory=list)


@dataclass
class ChartMark:
    x: float
    label: str
    label_y: float
    anchor_end: bool = False


def merged_marks(marks: list[tuple[date, str, str]]) -> dict[tuple[date, str], list[str]]:
    """One mark per order and day: 'issued' and 'in force' on the same day share a line."""
    merged: dict[tuple[date, str], list[str]] = {}
    for day, label, what in sorted(marks):
        merged.setdefault((day, label), []).append(what)
    return merged


@dataclass
class ChartTick:
    x: float
    label: str


@dataclass
class Chart:
    width: int
    height: int
    plot_left: int
    plot_right: int
    plot_top: int
    plot_bottom: int
    rows: list[ChartRow]
    marks: list[ChartMark]
    ticks: list[ChartTick]


def _month_starts(start: date, end: date) -> list[date]:
    months = []
    day = start.replace(day=1)
    while day <= end:
        if day >= start:
            months.append(day)
        day = (day.replace(day=28) + timedelta(days=4)).replace(day=1)
    return months


def layout_chart(report: ReportData, *, width: int = 1180) -> Chart:
    """Geometry of the timeline SVG: one row per recipient, markers sized by records (log)."""
    timeline = report.timeline
    flagged = {c.recipient_agency for c in report.attention if c.recipient_agency}
    marks_in = timeline.order_marks
    label_rows = max(1, min(len(merged_marks(marks_in)), 4))
    left, right = 150, width - 30
    top = 22 + 14 * label_rows
    row_height = 34
    bottom = top + row_height * max(len(timeline.rows), 1)
    chart = Chart(width, bottom + 30, left, right, top, bottom, [], [], [])
    if not timeline.rows or timeline.start is None or timeline.end is None:
        return chart
    start = timeline.start - timedelta(days=3)
    span = max((timeline.end + timedelta(days=3) - start).days, 1)

    def x_of(day: date) -> float:
        return round(left + (right - left) * (day - start).days / span, 1)

    top_records = max((p[2] for row in timeline.rows for p in row.points), default=1)
    for i, row in enumerate(timeline.rows):
        chart_row = ChartRow(
            row.recipient, top + row_height * i + row_height / 2, row.recipient in flagged
        )
        for day, events, records in row.points:
            radius = round(2.0 + 11.0 * log_scale(records, top_records), 1)
            chart_row.points.append(ChartPoint(x_of(day), radius, day.isoformat(), events, records))
        chart.rows.append(chart_row)
    for i, ((day, label), whats) in enumerate(merged_marks(marks_in).items()):
        x = x_of(day)
        text = f"{label}: {', '.join(whats)} {day.isoformat()}"
        # A label that would run past the right edge runs leftwards instead (~6.2 px a character).
        anchor_end = x + 6.2 * len(text) > width - 4
        chart.marks.append(ChartMark(x, text, 16 + 14 * (i % label_rows), anchor_end))
    months = _month_starts(start, start + timedelta(days=span))
    step = max(1, len(months) // 12 + (1 if len(months) % 12 else 0))
    chart.ticks = [ChartTick(x_of(m), m.strftime("%Y-%m")) for m in months[::step]]
    return chart


_POINT = (
    '  <circle cx="{x}" cy="{y}" r="{r}" fill="{fill}" fill-opacity="0.55" stroke="{stroke}"'
    ' stroke-width="0.8"><title>{label} {day}: {records} records in {events} event(s)</title>'
    "</circle>\n"
)


def chart_points(row: ChartRow) -> markupsafe.Markup:
    """A chart row's points as SVG, each line what report.html.j2 wrote with one autoescaped
    ``{{ }}`` per value (28k points at 10M: 0.4 CPU-s through the template): every value is
    escaped (``markupsafe.escape``, as the template's autoescape does) or is a number."""
    label = markupsafe.escape(row.label)
    y = markupsafe.escape(row.y)
    fill, stroke = ("#c2410c", "#8b1020") if row.flagged else ("#3b82a6", "#1e5a7a")
    return markupsafe.Markup(
        "".join(
            _POINT.format(
                x=markupsafe.escape(p.x),
                y=y,
                r=markupsafe.escape(p.r),
                fill=fill,
                stroke=stroke,
                label=label,
                day=markupsafe.escape(p.day),
                records=markupsafe.escape(f"{p.records:,}"),
                events=markupsafe.escape(p.events),
            )
            for p in row.points
        )
    )


def monthly_summary(report: ReportData) -> dict[str, str]:
    """Per recipient, 'YYYY-MM: records' for the Markdown and CSV timeline."""
    result: dict[str, str] = {}
    for row in report.timeline.rows:
        per_month: dict[str, int] = defaultdict(int)
        for day, _events, records in row.points:
            per_month[day.strftime("%Y-%m")] += records
        result[row.recipient] = "; ".join(f"{m}: {n:,}" for m, n in sorted(per_month.items()))
    return result


# ---------------------------------------------------------------------------- writers


def _write_atomic(path: Path, text: str, *, masked: bool = False) -> None:
    """Write ``text`` to ``path`` (a temporary name, then renamed), masked unless ``masked``
    says the caller masked it (``CaseSections.fill``)."""
    tmp = path.with_name(f".{path.name}.tmp")
    # Values were masked as they were gathered; the whole document once more, last line
    # (mask_document: the same policy, only the runs around a digit candidate go through it).
    tmp.write_text(text if masked else masking.mask_document(text), encoding="utf-8")
    os.replace(tmp, path)


class _SafeTexts(dict[str, object]):
    """``csv_cell`` of each text, worked out once per distinct text (a report repeats its
    agencies, logs, statuses and days in thousands of cells): a dict lookup in C for a text
    seen before, ``csv_cell`` for a new one."""

    def __missing__(self, text: str) -> object:
        safe = self[text] = csv_cell(text)
        return safe


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """A CSV with every cell neutralised against formula injection (``csv_cell``: texts
    through ``_SafeTexts``, every other value through ``csv_cell`` itself)."""
    tmp = path.with_name(f".{path.name}.tmp")
    texts = _SafeTexts()
    with tmp.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([csv_cell(h) for h in header])
        for row in rows:
            writer.writerow([texts[v] if v.__class__ is str else csv_cell(v) for v in row])
    os.replace(tmp, path)


def render_html(report: ReportData, sections: CaseSections | None = None) -> str:
    """The HTML report; ``sections`` keeps each case's section between reports (rendered
    here, kept nowhere, when None)."""
    env = html_environment()
    case_section = sections or CaseSections(env, TEMPLATES, None)
    return env.get_template("report.html.j2").render(
        r=report, chart=layout_chart(report), case_section=case_section, chart_points=chart_points
    )


def render_markdown(report: ReportData, sections: CaseSections | None = None) -> str:
    """The Markdown report; ``sections`` as for :func:`render_html`."""
    env = markdown_environment()
    case_section = sections or _markdown_sections(env, None)
    return env.get_template("report.md.j2").render(
        r=report, monthly=monthly_summary(report), case_section=case_section
    )


def _markdown_sections(env: jinja2.Environment, out_dir: Path | None) -> CaseSections:
    return CaseSections(
        env, TEMPLATES, out_dir, template=MARKDOWN_TEMPLATE, kept_file=MARKDOWN_KEPT_FILE
    )


def write_csvs(report: ReportData, out_dir: Path) -> list[Path]:
    paths: list[Path] = []

    def emit(name: str, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        path = out_dir / f"report-{name}.csv"
        write_csv(path, header, rows)
        paths.append(path)

    emit(
        "summary",
        ["measure", "value"],
        [(k, json.dumps(v) if isinstance(v, dict) else v) for k, v in report.summary.items()],
    )
    emit(
        "cases",
        [
            "case_id",
            "severity",
            "risk_score",
            "risk_explained",
            "status",
            "triage_state",
            "resolution",
            "new",
            "title",
            "recipient_agency",
            "request_id",
            "court_orders",
            "citations",
            "subjects_affected",
            "records_affected",
            "alerts",
            "active_alerts",
            "suppressed_alerts",
            "retracted_alerts",
            "data_elements",
            "coverage_incomplete",
            "window",
            "first_seen_at",
            "explanation",
        ],
        [
            (
                c.case_id,
                c.severity,
                c.risk_score,
                c.risk_explained,
                c.status,
                c.triage_state,
                c.resolution,
                c.is_new,
                c.title,
                c.recipient_agency,
                c.request_id,
                "; ".join(o.label for o in c.court_orders),
                "; ".join(i.label for i in c.citations),
                c.subjects_affected,
                c.records_affected,
                c.alert_count,
                c.open_alert_count,
                c.suppressed_alert_count,
                c.retracted_alert_count,
                ", ".join(c.data_elements),
                c.coverage_incomplete,
                c.window,
                c.first_seen_at,
                c.explanation,
            )
            for c in report.cases
        ],
    )
    emit(
        "alerts",
        [
            "case_id",
            "alert_id",
            "detector_id",
            "detector_kind",
            "detector_version",
            "severity",
            "score",
            "status",
            "triage_state",
            "resolution",
            "entity",
            "actor_id",
            "source_system",
            "window",
            "subjects_affected",
            "records_affected",
            "event_count",
            "citations",
            "coverage_incomplete",
            "suppression_id",
            "retracted_reason",
            "explanation",
            "evidence",
        ],
        [
            (
                c.case_id,
                a.alert_id,
                a.detector_id,
                a.detector_kind,
                a.detector_version,
                a.severity,
                a.score,
                a.status,
                a.triage_state,
                a.resolution,
                a.entity,
                a.actor_id,
                a.source_system,
                a.window,
                a.subjects_affected,
                a.records_affected,
                a.event_count,
                "; ".join(a.citations),
                a.coverage_incomplete,
                a.suppression_id,
                a.retracted_reason,
                a.explanation,
                "; ".join(f"{k}: {v}" for k, v in a.evidence),
            )
            for c in report.cases
            for a in c.alerts
        ],
    )
    emit(
        "evidence-events",
        [
            "case_id",
            "occurred_at",
            "source_system",
            "event_id",
            "event_type",
            "flow",
            "actor_id",
            "request_id",
            "legal_authority",
            "data_elements",
            "record_count",
            "taxpayer_ref",
            "channel",
            "description",
        ],
        [
            (
                c.case_id,
                e.occurred_at,
                e.source_system,
                e.event_id,
                e.event_type,
                e.flow,
                e.actor_id,
                e.request_id,
                e.legal_authority,
                e.data_elements,
                e.record_count,
                e.taxpayer_ref,
                e.channel,
                e.description,
            )
            for c in report.cases
            for e in c.events
        ],
    )
    emit(
        "citations",
        [
            "citation_id",
            "kind",
            "name",
            "reference",
            "dates",
            "open_cases",
            "subjects",
            "highest_severity",
            "case_ids",
        ],
        [
            (
                s.info.citation_id,
                s.info.kind,
                s.info.name,
                s.info.reference,
                "; ".join(f"{w} {d.isoformat()}" for w, d in s.info.dates),
                s.open_cases,
                s.subjects,
                s.highest_severity,
                "; ".join(s.case_ids),
            )
            for s in [*report.orders, *report.authorities, *report.other_citations]
        ],
    )
    emit(
        "timeline",
        ["recipient_agency", "day", "events", "records"],
        [
            (row.recipient, day.isoformat(), events, records)
            for row in report.timeline.rows
            for day, events, records in row.points
        ],
    )
    emit(
        "order-dates",
        ["day", "court_order", "what"],
        [(day.isoformat(), label, what) for day, label, what in report.timeline.order_marks],
    )
    emit(
        "coverage",
        ["source_system", "windows", "span", "expectation", "example_message"],
        [
            (g.source_system, g.windows, g.window, g.expectation, g.message)
            for g in report.coverage.gaps
        ],
    )
    emit(
        "suppressed",
        [
            "alert_id",
            "case_id",
            "detector_id",
            "severity",
            "entity",
            "explanation",
            "suppression_id",
        ],
        [
            (
                s.alert_id,
                s.case_id,
                s.detector_id,
                s.severity,
                s.entity,
                s.explanation,
                s.suppression_id,
            )
            for s in report.suppressed
        ],
    )
    emit(
        "suppressions",
        [
            "suppression_id",
            "criteria",
            "reason",
            "owner",
            "expires_on",
            "active",
            "alerts_suppressed",
        ],
        [
            (
                s.suppression_id,
                s.criteria,
                s.reason,
                s.owner,
                s.expires_on,
                s.active,
                s.alerts_suppressed,
            )
            for s in report.suppressions
        ],
    )
    return paths


# ---------------------------------------------------------------------------- the whole report


@dataclass
class ReportResult:
    out_dir: Path
    files: list[Path]
    html_path: Path | None
    cases: CaseBuildResult
    data: ReportData


LAST_REPORT_MARKER = ".last-report"


def _previous_report_time(out_dir: Path) -> datetime | None:
    marker = out_dir / LAST_REPORT_MARKER
    try:
        return datetime.fromisoformat(marker.read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return None  # first report here (or an unreadable marker): every case is new


def parse_formats(text: str) -> list[str]:
    wanted = [f.strip().lower() for f in text.split(",") if f.strip()]
    unknown = [f for f in wanted if f not in FORMATS]
    if unknown or not wanted:
        raise InputError(
            f"unknown report format(s): {', '.join(unknown) or '(none given)'}",
            where="--format",
            fix=f"use a comma-separated list of {', '.join(FORMATS)}",
        )
    return wanted


def build_report(
    con: duckdb.DuckDBPyConnection,
    out_dir: Path,
    *,
    formats: Sequence[str] = FORMATS,
    directory: CitationDirectory | None = None,
    data_docs: Path | None = None,
    as_of: date | None = None,
    title: str = "Disclosure Watch report",
) -> ReportResult:
    """Refresh cases from alerts, then write the report in each format to ``out_dir``."""
    directory = directory or load_directory(con)
    rows = alert_rows(con)  # one pass over the events for the cases and their evidence
    cases = build_cases(con, directory=directory, as_of=as_of, event_rows=rows)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(
            f"cannot create the report folder: {exc}",
            where=str(out_dir),
            fix="choose a writable --out folder",
        ) from exc
    data = gather(
        con,
        directory,
        out_dir=out_dir,
        new_since=_previous_report_time(out_dir),
        data_docs=data_docs,
        as_of=as_of,
        title=title,
        event_rows=rows,
    )
    con.execute(f"DROP TABLE IF EXISTS {rows}")
    files: list[Path] = []
    html_path = None
    # "New" is relative to the last report in this folder, not to whoever last built cases
    # (``dwatch alerts list`` builds them too).
    if "html" in formats:
        sections = CaseSections(html_environment(), TEMPLATES, out_dir)
        sections.hold()  # the last masking pass leaves out the sections, masked already
        html = sections.fill(render_html(data, sections))
        html_path = out_dir / "report.html"
        _write_atomic(html_path, html, masked=True)
        sections.save()
        files.append(html_path)
    if "md" in formats:
        md_sections = _markdown_sections(markdown_environment(), out_dir)
        md_sections.hold()
        md_path = out_dir / "report.md"
        _write_atomic(md_path, md_sections.fill(render_markdown(data, md_sections)), masked=True)
        md_sections.save()
        files.append(md_path)
    if "csv" in formats:
        files.extend(write_csvs(data, out_dir))
    _write_atomic(out_dir / LAST_REPORT_MARKER, data.generated_at.isoformat() + "\n")
    return ReportResult(out_dir, files, html_path, cases, data)
