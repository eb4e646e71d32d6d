"""Every recorded handling of one or many taxpayers' data, with authority and findings.

The accounting a taxpayer (or a court) may ask for: for each request, disclosure, receipt,
access, redisclosure and disposal of their records, the date, the sender and recipient,
the authority cited and whether the registry knows it and had it in force that day, the
purpose, and the findings on it with their triage state. Found in ``accounting_keys``
(batches not yet indexed are read from the canonical tables by ``ingest_run_id``
above a rowid bound, ``accounting.bounds.first_rowids``); the events' fields are read back
by row id and checked (``accounting.readback``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, NamedTuple

import duckdb

from dwatch.accounting.index import (
    TABLE,
    index_present,
    lookup_key,
    pending_entries,
    sql_lookup_key,
    unindexed_batches,
)
from dwatch.accounting.readback import ReadBack, read_events
from dwatch.pseudonym import PREFIX, normalise_identifier, pseudonymise


@dataclass(frozen=True)
class Subject:
    """One taxpayer asked about: ``row`` is the line of the identifier file (1 when one
    taxpayer was given); ``taxpayer_ref`` is None when the line held no identifier."""

    row: int
    taxpayer_ref: str | None


@dataclass(frozen=True)
class Finding:
    alert_id: str
    detector_id: str
    severity: str
    status: str
    case_id: str | None
    triage_state: str | None
    resolution: str | None

    def describe(self) -> str:
        state = self.triage_state or "new"
        if self.resolution:
            state += f": {self.resolution}"
        return f"{self.alert_id} ({self.detector_id}, {self.severity}, {self.status}, {state})"


class AccountingEntry(NamedTuple):
    """One handling of a subject's data (a tuple: 100,000 taxpayers make hundreds of thousands)."""

    row: int
    taxpayer_ref: str
    occurred_at: str  # ISO 8601 in UTC
    event_type: str
    sender: str
    recipient: str
    authority_cited: str | None
    authority_id: str | None
    authority_status: str
    purpose: str | None
    data_elements: str  # comma-separated
    record_count: int
    request_id: str | None
    source_system: str
    event_id: str
    item_no: int | None
    via: str
    findings: tuple[Finding, ...] = ()


@dataclass(frozen=True)
class CoverageGap:
    source_system: str
    window_start: datetime | None
    window_end: datetime | None
    expectation: str
    message: str


# Columns of Accounting.rows: AccountingEntry's fields, then the findings as text.
ROW_COLUMNS = (*AccountingEntry._fields[:-1], "covered_by_finding", "findings_text")


@dataclass
class Accounting:
    """The entries as plain rows (ROW_COLUMNS; 100,000 taxpayers are written from these
    without an object per entry) and, on demand, as ``AccountingEntry`` with findings."""

    subjects: list[Subject]
    rows: list[tuple[Any, ...]]
    finding_rows: list[tuple[Any, ...]] = field(default_factory=list)
    coverage_gaps: list[CoverageGap] = field(default_factory=list)
    unattributed_disclosures: int | None = None
    unattributed_records: int | None = None
    unindexed_batches: int = 0
    read: ReadBack | None = None  # how the entries' events were read back
    generated_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @cached_property
    def _findings_by_entry(self) -> dict[tuple[int, str, str], list[Finding]]:
        found: dict[tuple[int, str, str], list[Finding]] = {}
        for row_no, source_system, event_id, *rest in self.finding_rows:
            key = (row_no, source_system or "", event_id or "")
            found.setdefault(key, []).append(Finding(*rest))
        return found

    @cached_property
    def entries(self) -> list[AccountingEntry]:
        found = self._findings_by_entry
        width = len(AccountingEntry._fields) - 1
        return [
            AccountingEntry(*r[:width], tuple(found.get((r[0], r[13], r[14]), ())))
            for r in self.rows
        ]

    @cached_property
    def other_findings(self) -> dict[int, list[Finding]]:
        """Findings that name a subject but no event listed for them (row -> findings)."""
        return {row: f for (row, src, ev), f in self._findings_by_entry.items() if not (src or ev)}

    def entries_by_row(self) -> dict[int, list[AccountingEntry]]:
        grouped: dict[int, list[AccountingEntry]] = {}
        for entry in self.entries:
            grouped.setdefault(entry.row, []).append(entry)
        return grouped


def subjects_from_identifiers(lines: Iterable[str], key: bytes) -> list[Subject]:
    """One subject per non-blank line, pseudonymised at once; the raw text is dropped."""
    subjects = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        ref = pseudonymise(line.strip(), key) if normalise_identifier(line.strip()) else None
        subjects.append(Subject(number, ref))
    return subjects


def subjects_from_pseudonyms(refs: Iterable[str]) -> list[Subject]:
    subjects = []
    for number, ref in enumerate(refs, start=1):
        text = ref.strip()
        if text:
            subjects.append(Subject(number, text if text.startswith(PREFIX) else None))
    return subjects


_AUTHORITY_STATUS = """
    CASE WHEN h.authority_id IS NULL AND h.legal_authority IS NULL THEN 'none cited'
         WHEN h.authority_id IS NULL THEN 'not recognised'
         WHEN r.authority_id IS NULL THEN 'not in the registry'
         WHEN (r.effective_from IS NULL OR h.occurred_at >= r.effective_from)
          AND (r.effective_to IS NULL OR h.occurred_at < r.effective_to) THEN 'in force'
         ELSE 'not in force on that date' END
"""


# An entry's columns from its keys (k) and its event read back (e), as migration 0024's
# accounting_index held them (less lookup_key and taxpayer_ref).
_ENTRY_COLUMNS = (
    "k.via, e.source_system, e.event_id, e.request_id, e.occurred_at, e.event_type,"
    " e.disclosing_agency, e.recipient_agency, e.legal_authority, e.authority_id, e.purpose,"
    " e.data_elements, e.record_count, k.item_no, k.match_method, k.ingest_run_id,"
    " k.item_run_id"
)


def _entries_of(
    con: duckdb.DuckDBPyConnection, keys_sql: str, into: str, where: str = "true"
) -> ReadBack:
    """Temp table ``into``: the entries of the keys ``keys_sql`` selects (``row_no``,
    ``subject_ref`` and accounting_keys' columns), their events read back (``readback``);
    ``where`` may test the key (k) and the event (e)."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE _acct_keys AS {keys_sql}")
    read = read_events(con, "_acct_keys", "_acct_events")
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {into} AS
        SELECT k.row_no, k.subject_ref AS taxpayer_ref, {_ENTRY_COLUMNS}
        FROM _acct_keys k JOIN _acct_events e
          ON e.ingest_run_id = k.ingest_run_id AND e.source_row IS NOT DISTINCT FROM k.source_row
        WHERE {where}
        """
    )
    con.execute("DROP TABLE _acct_keys")
    con.execute("DROP TABLE _acct_events")
    return read


def _collect_hits(con: duckdb.DuckDBPyConnection, sources: list[str]) -> ReadBack:
    """Rows naming each subject, and the chain events of requests that disclosed them."""
    # an event row is found by its key and checked against the event's own taxpayer_ref
    named = " UNION ALL ".join(
        f"SELECT s.row_no, s.taxpayer_ref AS subject_ref, k.* FROM _acct_subjects s JOIN {t} k"
        " ON k.lookup_key = s.lookup_key AND k.via <> 'request_chain'"
        " AND (k.via = 'event' OR k.taxpayer_ref = s.taxpayer_ref)"
        for t in sources
    )
    read = _entries_of(
        con, named, "_acct_named", "k.via = 'request_item' OR e.taxpayer_ref = k.subject_ref"
    )
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _acct_requests AS
        SELECT DISTINCT row_no, taxpayer_ref, request_id, {sql_lookup_key("request_id")} AS lookup_key
        FROM _acct_named
        WHERE request_id IS NOT NULL AND event_type IN ('disclosure', 'redisclosure')
        """
    )
    chained = " UNION ALL ".join(
        f"SELECT r.row_no, r.taxpayer_ref AS subject_ref, k.* FROM _acct_requests r JOIN {t} k"
        " ON k.lookup_key = r.lookup_key AND k.via = 'request_chain'"
        " AND k.request_id = r.request_id"
        for t in sources
    )
    requests = con.execute("SELECT count(*) FROM _acct_requests").fetchone()
    if requests and requests[0]:
        more = _entries_of(con, chained, "_acct_chained")
    else:  # no disclosure under a request: no chain event to read
        con.execute("CREATE OR REPLACE TEMP TABLE _acct_chained AS FROM _acct_named LIMIT 0")
        more = ReadBack(0, 0, 0)
    # Rows read directly from unindexed batches may repeat what the index holds.
    distinct = (
        "SELECT DISTINCT ON (row_no, via, source_system, event_id, item_no) *"
        if len(sources) > 1
        else "SELECT *"
    )
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _acct_hits AS
        {distinct} FROM (
            SELECT * FROM _acct_named
            UNION ALL
            -- a chain event that also names or carries the subject is listed once, by that
            SELECT * FROM _acct_chained c WHERE NOT EXISTS (
                SELECT 1 FROM _acct_named n WHERE n.row_no = c.row_no
                AND n.source_system = c.source_system AND n.event_id = c.event_id)
        )
        """
    )
    return ReadBack(
        read.events + more.events, read.by_rowid + more.by_rowid, read.by_key + more.by_key
    )


_FINDING_TEXT = (
    "a.alert_id || ' (' || a.detector_id || ', ' || a.severity || ', ' || a.status || ', '"
    " || coalesce(t.triage_state, 'new') || coalesce(': ' || t.resolution, '') || ')'"
)


def _findings(con: duckdb.DuckDBPyConnection) -> list[tuple[Any, ...]]:
    """Findings on each listed entry, and those naming a subject on no listed entry."""
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _acct_found AS
        WITH covering AS (
            SELECT h.row_no, h.source_system, h.event_id, s.alert_id
            FROM _acct_hits h JOIN alert_subjects s
              ON s.taxpayer_ref = h.taxpayer_ref AND s.event_id = h.event_id
             AND (s.source_system IS NULL OR s.source_system = h.source_system)
            UNION
            SELECT h.row_no, h.source_system, h.event_id, ae.alert_id
            FROM _acct_hits h JOIN alert_events ae
              ON ae.source_system = h.source_system AND ae.event_id = h.event_id
             AND ae.role = 'finding'
            UNION
            SELECT s.row_no, NULL, NULL, a.alert_id
            FROM _acct_subjects s JOIN alert_subjects a ON a.taxpayer_ref = s.taxpayer_ref
            WHERE NOT EXISTS (SELECT 1 FROM _acct_hits h WHERE h.row_no = s.row_no
                              AND h.event_id = a.event_id)
        )
        SELECT DISTINCT c.row_no, c.source_system, c.event_id, a.alert_id, a.detector_id,
               a.severity, a.status, t.case_id, t.triage_state, t.resolution,
               {_FINDING_TEXT} AS described
        FROM covering c JOIN alerts a USING (alert_id)
        LEFT JOIN alert_triage_state t USING (alert_id)
        """
    )
    return con.execute(
        "SELECT * EXCLUDE (described) FROM _acct_found ORDER BY row_no, alert_id"
    ).fetchall()


# The entries in ROW_COLUMNS order, then their time, from the temp tables of a build.
ENTRIES_SQL = f"""
    WITH found AS (
        SELECT row_no, source_system, event_id,
               string_agg(described, '; ' ORDER BY alert_id) AS findings_text
        FROM _acct_found WHERE event_id IS NOT NULL GROUP BY ALL
    )
    SELECT h.row_no, h.taxpayer_ref, strftime(h.occurred_at, '%Y-%m-%dT%H:%M:%SZ'),
           h.event_type, h.disclosing_agency, h.recipient_agency, h.legal_authority,
           h.authority_id, {_AUTHORITY_STATUS}, h.purpose,
           array_to_string(h.data_elements, ','), coalesce(h.record_count, 0),
           h.request_id, h.source_system, h.event_id, h.item_no, h.via,
           f.findings_text IS NOT NULL, coalesce(f.findings_text, ''), h.occurred_at
    FROM _acct_hits h LEFT JOIN registry_authorities r ON r.authority_id = h.authority_id
    LEFT JOIN found f ON f.row_no = h.row_no AND f.source_system = h.source_system
                     AND f.event_id = h.event_id
"""


def _entries(con: duckdb.DuckDBPyConnection) -> list[tuple[Any, ...]]:
    # row, time, source_system, event_id, item_no
    rows = con.execute(f"{ENTRIES_SQL} ORDER BY 1, 20, 14, 15, 16").fetchall()
    return [r[:-1] for r in rows]


def listed_rows(con: duckdb.DuckDBPyConnection) -> set[int]:
    """Subjects (rows) the last build found entries for."""
    return {r[0] for r in con.execute("SELECT DISTINCT row_no FROM _acct_hits").fetchall()}


def _coverage(con: duckdb.DuckDBPyConnection, result: Accounting) -> None:
    result.coverage_gaps = [
        CoverageGap(*r)
        for r in con.execute(
            "SELECT source_system, window_start, window_end, expectation, message"
            " FROM coverage_gaps ORDER BY source_system, window_start, expectation"
        ).fetchall()
    ]
    try:
        row = con.execute(
            "SELECT unattributed_disclosures, unattributed_records FROM accounting_index_state"
        ).fetchone()
    except duckdb.CatalogException:  # a snapshot older than migration 0024
        return
    if row:
        result.unattributed_disclosures, result.unattributed_records = row


def build_accounting(
    con: duckdb.DuckDBPyConnection, subjects: list[Subject], *, fetch: bool = True
) -> Accounting:
    """The accounting for ``subjects`` (works on a read-only snapshot: temp tables only).

    ``fetch=False`` leaves the entries in the connection's temp tables, for ``copy_csv``."""
    known = [s for s in subjects if s.taxpayer_ref]
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _acct_subjects"
        " (row_no BIGINT, taxpayer_ref VARCHAR, lookup_key BIGINT)"
    )
    if known:
        con.execute(
            "INSERT INTO _acct_subjects SELECT unnest($r), unnest($t), unnest($k)",
            {
                "r": [s.row for s in known],
                "t": [s.taxpayer_ref for s in known],
                "k": [lookup_key(s.taxpayer_ref or "") for s in known],
            },
        )
    present = index_present(con)
    sources = [TABLE] if present else []
    pending = unindexed_batches(con, present=present)
    if pending or not present:
        pending_entries(con, pending, "_acct_pending")
        sources.append("_acct_pending")
    read = _collect_hits(con, sources)
    finding_rows = _findings(con)
    rows = _entries(con) if fetch else []
    result = Accounting(subjects, rows, finding_rows, unindexed_batches=len(pending), read=read)
    _coverage(con, result)
    return result
