"""The accounting as text, CSV, JSON or HTML, under the report's safety rules.

Every value passes ``dwatch.report.safety``: pseudonyms shortened, taxpayer-id shapes
masked, CSV cells neutralised against formulas, terminal escapes made visible, HTML
autoescaped. A subject is named by its line in the identifier file and its shortened
pseudonym; the identifier itself was never kept.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import jinja2

from dwatch.accounting.lookup import (
    ENTRIES_SQL,
    Accounting,
    AccountingEntry,
    Finding,
    Subject,
    listed_rows,
)
from dwatch.masking import sql_mask_text
from dwatch.report.safety import csv_cell, mask_text, terminal_text

FORMATS = ("text", "csv", "json", "html")
NONE_RECORDED = "no disclosures recorded in the covered sources and windows"
NOT_AN_IDENTIFIER = "the line holds no taxpayer identifier"
CSV_HEADER = (
    "row",
    "taxpayer",
    "occurred_at",
    "event_type",
    "sender",
    "recipient",
    "authority_cited",
    "authority_id",
    "authority_status",
    "purpose",
    "data_elements",
    "record_count",
    "request_id",
    "source_system",
    "event_id",
    "item_no",
    "via",
    "covered_by_finding",
    "findings",
    "note",
)
_OWN_FORMAT = frozenset({"occurred_at", "via", "authority_status"})
_NOT_TEXT = frozenset({"row", "record_count", "item_no", "covered_by_finding"})
_TEMPLATES = Path(__file__).resolve().parent / "templates"


def _when(entry: AccountingEntry) -> str:
    return entry.occurred_at


def _findings(findings: tuple[Finding, ...] | list[Finding]) -> str:
    return "; ".join(f.describe() for f in findings)


def _subject_note(subject: Subject, has_entries: bool) -> str:
    if subject.taxpayer_ref is None:
        return NOT_AN_IDENTIFIER
    return "" if has_entries else NONE_RECORDED


def _coverage_lines(accounting: Accounting, limit: int = 20) -> list[str]:
    lines = []
    if accounting.unattributed_disclosures:
        lines.append(
            f"{accounting.unattributed_disclosures:,} bulk disclosure(s) of"
            f" {accounting.unattributed_records or 0:,} records name no taxpayer and carry no"
            " list of taxpayers: whether a taxpayer's data is in them cannot be told from the logs"
        )
    gaps = accounting.coverage_gaps
    if gaps:
        lines.append(f"{len(gaps)} coverage gap(s): logs that may be incomplete")
        for gap in gaps[:limit]:
            lines.append(
                f"  {gap.source_system} {gap.window_start:%Y-%m-%d} to {gap.window_end:%Y-%m-%d}:"
                f" {gap.message}"
            )
        if len(gaps) > limit:
            lines.append(f"  ... and {len(gaps) - limit} more (--format json lists all)")
    if accounting.unindexed_batches:
        lines.append(
            f"{accounting.unindexed_batches} batch(es) not yet in the accounting index were"
            " read directly (dwatch accounting --refresh, or the next dwatch run, indexes them)"
        )
    return lines


def _once(make_safe: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``make_safe`` computed once per distinct value (keyed by type: True is not 1)."""
    done: dict[tuple[type, Any], Any] = {}

    def safe(value: Any) -> Any:
        key = (type(value), value)
        if key not in done:
            done[key] = make_safe(value)
        return done[key]

    return safe


def _note_rows(accounting: Accounting, listed: set[int]) -> list[tuple[Any, ...]]:
    """A row for each subject with nothing listed, no identifier, or findings on no entry."""
    blank = ("",) * (len(CSV_HEADER) - 5)
    rows = []
    for subject in accounting.subjects:
        other = accounting.other_findings.get(subject.row, [])
        note = _subject_note(subject, subject.row in listed)
        if other:
            extra = f"findings naming the taxpayer on no listed event: {_findings(other)}"
            note = "; ".join(n for n in (note, extra) if n)
        if note:
            rows.append(
                (subject.row, subject.taxpayer_ref, *blank, bool(other), _findings(other), note)
            )
    return rows


def write_csv(accounting: Accounting) -> str:
    """One row per entry (and per subject with a note), every text cell made safe.

    Column by column: each distinct text passes ``csv_cell`` once (agencies, citations and
    events repeat across taxpayers; 100,000 taxpayers write hundreds of thousands of rows)."""
    entries = [(*r, "") for r in accounting.rows]  # ROW_COLUMNS is CSV_HEADER without note
    notes = _note_rows(accounting, {r[0] for r in accounting.rows})
    table = sorted(entries + notes, key=lambda r: r[0]) if notes else entries
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_HEADER)
    if table:
        columns = []
        for name, column in zip(CSV_HEADER, zip(*table, strict=True), strict=True):
            # occurred_at, via and authority_status are written by dwatch's own SQL in a fixed
            # vocabulary and format (no shape, no formula start): nothing to make safe.
            if name == "covered_by_finding":
                column = tuple("true" if v else "false" for v in column)  # as DuckDB writes it
            elif name not in _OWN_FORMAT and any(isinstance(v, str) for v in column):
                safe = {v: csv_cell(v) for v in set(column)}  # csv_cell(None) is ""
                column = tuple(map(safe.__getitem__, column))
            columns.append(column)
        writer.writerows(zip(*columns, strict=True))
    return buffer.getvalue()


def _sql_csv_cell(column: str) -> str:
    """``csv_cell`` in DuckDB SQL, without the formula quote (added by ``_sql_formula``):
    pseudonyms shortened as ``mask_ref`` does, then id shapes masked by the masking policy
    (RE2 pre-test, the Python policy on flagged values only). Checked against ``csv_cell``
    in tests/accounting."""
    shortened = f"regexp_replace({column}, 'tp_([0-9a-f]{{4}})[0-9a-f]{{28}}', 'tp_\\1…', 'g')"
    return sql_mask_text(shortened)


def _sql_formula(column: str) -> str:
    """A quote before a cell a spreadsheet would run (=, +, -, @, tab, CR), as csv_cell."""
    return (
        f"CASE WHEN regexp_matches({column}, '^[=+@\\t\\r-]') THEN '''' || {column}"
        f" ELSE {column} END"
    )


def copy_csv(con: duckdb.DuckDBPyConnection, accounting: Accounting, target: Path) -> int:
    """Write the CSV of a build made with ``fetch=False`` with DuckDB (100,000 taxpayers
    make hundreds of thousands of rows); the same cells as ``write_csv``. Returns rows."""
    notes = _note_rows(accounting, listed_rows(con))
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _acct_notes (row_no BIGINT, taxpayer_ref VARCHAR,"
        " covered BOOLEAN, findings VARCHAR, note VARCHAR)"
    )
    if notes:
        columns = {"r": 0, "t": 1, "c": -3, "f": -2, "n": -1}
        con.execute(
            "INSERT INTO _acct_notes SELECT unnest($r), unnest($t), unnest($c), unnest($f),"
            " unnest($n)",
            {name: [n[i] for n in notes] for name, i in columns.items()},
        )
    text = [c for c in CSV_HEADER if c not in _OWN_FORMAT and c not in _NOT_TEXT]
    masked = ", ".join(f"{_sql_csv_cell(c)} AS {c}" if c in text else c for c in CSV_HEADER)
    quoted = ", ".join(f"{_sql_formula(c)} AS {c}" if c in text else c for c in CSV_HEADER)
    names = ", ".join((*CSV_HEADER[:-1], "sort_at"))
    con.execute(
        f"""
        COPY (
            WITH entries({names}) AS ({ENTRIES_SQL}), lines AS (
                SELECT *, 0 AS _order FROM entries
                UNION ALL BY NAME
                SELECT row_no AS row, taxpayer_ref AS taxpayer, covered AS covered_by_finding,
                       findings, note, 1 AS _order
                FROM _acct_notes
            ), masked AS (
                SELECT {masked}, _order, sort_at FROM lines
            )
            SELECT {quoted} FROM masked
            ORDER BY row, _order, sort_at, source_system, event_id, item_no
        ) TO '{str(target).replace("'", "''")}' (HEADER, DELIMITER ',')
        """
    )
    row = con.execute("SELECT count(*) FROM _acct_hits").fetchone()
    return (int(row[0]) if row else 0) + len(notes)


def _finding_json(f: Finding) -> dict[str, Any]:
    return {k: mask_text(v) if v is not None else None for k, v in f.__dict__.items()}


def to_json(accounting: Accounting) -> dict[str, Any]:
    by_row = accounting.entries_by_row()
    subjects = []
    for subject in accounting.subjects:
        entries = by_row.get(subject.row, [])
        subjects.append(
            {
                "row": subject.row,
                "taxpayer": mask_text(subject.taxpayer_ref) or None,
                "note": _subject_note(subject, bool(entries)) or None,
                "entries": [
                    {
                        "occurred_at": _when(e),
                        **{
                            k: mask_text(getattr(e, k)) if getattr(e, k) is not None else None
                            for k in (
                                "event_type",
                                "sender",
                                "recipient",
                                "authority_cited",
                                "authority_id",
                                "authority_status",
                                "purpose",
                                "request_id",
                                "source_system",
                                "event_id",
                                "via",
                            )
                        },
                        "data_elements": [mask_text(d) for d in e.data_elements.split(",") if d],
                        "record_count": e.record_count,
                        "item_no": e.item_no,
                        "findings": [_finding_json(f) for f in e.findings],
                    }
                    for e in entries
                ],
                "other_findings": [
                    _finding_json(f) for f in accounting.other_findings.get(subject.row, [])
                ],
            }
        )
    return {
        "generated_at": accounting.generated_at.isoformat(),
        "subjects": subjects,
        "coverage": {
            "unattributed_bulk_disclosures": accounting.unattributed_disclosures,
            "unattributed_records": accounting.unattributed_records,
            "coverage_gaps": [
                {
                    "source_system": mask_text(g.source_system),
                    "window_start": g.window_start.isoformat() if g.window_start else None,
                    "window_end": g.window_end.isoformat() if g.window_end else None,
                    "expectation": mask_text(g.expectation),
                    "message": mask_text(g.message),
                }
                for g in accounting.coverage_gaps
            ],
            "unindexed_batches_read": accounting.unindexed_batches,
        },
    }


def write_json(accounting: Accounting) -> str:
    return json.dumps(to_json(accounting), indent=2, ensure_ascii=False) + "\n"


def write_text(accounting: Accounting) -> str:
    by_row = accounting.entries_by_row()
    shown = _once(terminal_text)
    out = []
    for subject in accounting.subjects:
        entries = by_row.get(subject.row, [])
        out.append(f"taxpayer {shown(subject.taxpayer_ref) or '-'} (line {subject.row})")
        note = _subject_note(subject, bool(entries))
        if note:
            out.append(f"  {note}")
        for e in entries:
            out.append(
                f"  {_when(e)}  {e.event_type:<12} {shown(e.sender)} -> {shown(e.recipient)}"
                f"  authority {shown(e.authority_cited) or '-'} [{e.authority_status}]"
                f"  purpose {shown(e.purpose) or '-'}"
                f"  ({shown(e.source_system)} {shown(e.event_id)}, via {e.via})"
            )
            for f in e.findings:
                out.append(f"      finding {shown(f.describe())}")
        for f in accounting.other_findings.get(subject.row, []):
            out.append(f"  finding on no listed event: {shown(f.describe())}")
    out.extend(terminal_text(line) for line in _coverage_lines(accounting))
    return "\n".join(out) + "\n"


def write_html(accounting: Accounting) -> str:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_TEMPLATES),
        autoescape=True,  # every value from a log is untrusted
        finalize=lambda v: mask_text(v) if isinstance(v, str) else v,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    by_row = accounting.entries_by_row()
    subjects = [
        {
            "subject": s,
            "entries": by_row.get(s.row, []),
            "note": _subject_note(s, bool(by_row.get(s.row))),
            "other": accounting.other_findings.get(s.row, []),
        }
        for s in accounting.subjects
    ]
    html = environment.get_template("accounting.html.j2").render(
        accounting=accounting,
        subjects=subjects,
        coverage=_coverage_lines(accounting, limit=len(accounting.coverage_gaps)),
        when=_when,
    )
    return mask_text(html)


WRITERS = {"text": write_text, "csv": write_csv, "json": write_json, "html": write_html}
