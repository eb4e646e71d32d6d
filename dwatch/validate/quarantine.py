"""Quarantine of rows that fail validation: moved, never deleted, counts kept whole.

Rows go from ``disclosure_events`` / ``request_items`` to ``quarantine`` (stage
'validate', reason_code = the expectation, field, message, the row as JSON with
SSN/TIN-shaped text masked), and the batch's ``ingest_runs`` row moves the same number
from rows_loaded to rows_quarantined, so rows read = rows loaded + rows quarantined
across both stages. The caller owns the transaction (the same one that records the
validation outcomes).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

import duckdb

from dwatch.masking import sql_mask_text
from dwatch.schema import TableSpec
from dwatch.validate.suites import Check, sql_literal


class BatchRef(Protocol):
    run_id: str
    kind: str
    table: str
    source_file: str


def count_of(con: duckdb.DuckDBPyConnection, sql: str, params: list[object] | None = None) -> int:
    # fetchall, not fetchone: a half-read DuckDB result blocks the caller's next register().
    rows = con.execute(sql, params or []).fetchall()
    return int(rows[0][0]) if rows and rows[0][0] is not None else 0


def batch_relation(
    table: str,
    run_id: str | Sequence[str] | None,
    source: str | None = None,
    rowids: Sequence[tuple[int, int]] = (),
) -> str:
    """The batch as a relation: the table's rows of one ingest run (or of several small
    runs validated together), plus their rowid.

    ``rowids``: rowid ranges holding those rows, as a scan found them with nothing written
    since (DuckDB then reads only their row groups; run ids share their first bytes, so
    their own statistics skip none)."""
    if isinstance(run_id, str):
        where = [f"t.ingest_run_id = {sql_literal(run_id)}"]
    elif run_id:
        where = [f"t.ingest_run_id IN ({', '.join(sql_literal(r) for r in run_id)})"]
    else:
        where = []
    if source is not None:
        where.append(f"t.source_system = {sql_literal(source)}")
    if rowids:
        ranges = " OR ".join(f"t.rowid BETWEEN {int(lo)} AND {int(hi)}" for lo, hi in rowids)
        where.append(f"({ranges})")
    cond = f" WHERE {' AND '.join(where)}" if where else ""
    return f"SELECT t.*, t.rowid AS dw_rowid FROM {table} t{cond}"


def _raw_row_sql(table: TableSpec) -> str:
    """The row as JSON for quarantine; free text has SSN/TIN-shaped strings masked."""
    parts = []
    for f in table.fields:
        expr = f"t.{f.name}"
        if f.free_text or f.sensitive:
            expr = sql_mask_text(expr)
        parts.append(f"'{f.name}', {expr}")
    parts.append(f"'extra', {sql_mask_text('t.extra')}")
    return f"json_object({', '.join(parts)})::VARCHAR"


def quarantine_rows(
    con: duckdb.DuckDBPyConnection,
    batch: BatchRef,
    table: TableSpec,
    failing: list[tuple[Check, str | None]],
) -> int:
    """Move the batch's rows failing ``failing`` checks to quarantine (caller's transaction).

    ``failing`` pairs each check with the source it applies to (None: every row of the
    batch). Each row moves once, with the first failing check as its reason_code and all
    of them in the message; the batch's ingest_runs counts move with it.
    """
    if not failing:
        return 0
    conds = []
    for check, source in failing:
        cond = f"({check.predicate_for(batch.run_id)})"
        if source is not None:
            cond = f"(b.source_system = {sql_literal(source)} AND {cond})"
        conds.append(cond)
    checks = [check for check, _ in failing]
    # Each condition once per row (a flag), then the reason, field and message from the
    # flags: written out in each of them, a cross-row condition (a duplicate check reads
    # the table) was planned and run four times.
    flags = ", ".join(f"{c} AS q{i}" for i, c in enumerate(conds))
    reason = " ".join(
        f"WHEN q{i} THEN {sql_literal(ch.expectation_type)}" for i, ch in enumerate(checks)
    )
    fld = " ".join(f"WHEN q{i} THEN {sql_literal(ch.field or '')}" for i, ch in enumerate(checks))
    messages = ", ".join(
        f"CASE WHEN q{i} THEN {sql_literal(ch.name + ': ' + ch.description)} END"
        for i, ch in enumerate(checks)
    )
    any_fails = " OR ".join(f"q{i}" for i in range(len(checks)))
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _dw_failing AS"
        f" SELECT dw_rowid, CASE {reason} END AS reason_code, CASE {fld} END AS field,"
        f" 'validation: ' || concat_ws('; ', {messages}) AS message"
        f" FROM (SELECT b.dw_rowid, {flags}"
        f" FROM ({batch_relation(table.name, batch.run_id)}) b) WHERE {any_fails}"
    )
    return _move_failing(con, batch, table)


def quarantine_impossible_instants(
    con: duckdb.DuckDBPyConnection,
    batch: BatchRef,
    table: TableSpec,
    not_before: datetime,
    not_after: datetime,
) -> dict[str, int]:
    """Move the batch's rows holding an instant no disclosure can have (caller's transaction).

    Ingest refuses them (schemas/canonical.yaml: instants); a store written before it did
    may hold them still, and one such value (year 294247, infinity) broke every later step
    that reads it as a Python datetime or computes its day. Reason ``out_of_range``, as at
    ingest. Returns the rows moved per field.
    """
    names = [f.name for f in table.fields if f.type == "TIMESTAMPTZ"]
    if not names:
        return {}
    window = (
        f"not before {not_before.date().isoformat()}, at most"
        f" {not_after.isoformat(timespec='seconds')} (the later of ingest and now, plus the lead instants allow)"
    )
    bad = {
        n: f"(b.{n} IS NOT NULL AND (NOT isfinite(b.{n}) OR b.{n} < {sql_literal(not_before)}"
        f" OR b.{n} > {sql_literal(not_after)}))"
        for n in names
    }
    fld = " ".join(f"WHEN {c} THEN {sql_literal(n)}" for n, c in bad.items())
    messages = " ".join(
        f"WHEN {c} THEN {sql_literal(n + ' ')} || CAST(b.{n} AS VARCHAR)"
        f" || {sql_literal(' is outside the plausible window (' + window + '); the row was stored before ingest checked instants')}"
        for n, c in bad.items()
    )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _dw_failing AS"
        f" SELECT b.dw_rowid, 'out_of_range' AS reason_code, CASE {fld} END AS field,"
        f" 'validation: ' || CASE {messages} END AS message"
        f" FROM ({batch_relation(table.name, batch.run_id)}) b WHERE {' OR '.join(bad.values())}"
    )
    per_field = dict(
        con.execute("SELECT field, count(*) FROM _dw_failing GROUP BY 1 ORDER BY 1").fetchall()
    )
    _move_failing(con, batch, table)
    return {str(k): int(v) for k, v in per_field.items()}


def _move_failing(con: duckdb.DuckDBPyConnection, batch: BatchRef, table: TableSpec) -> int:
    """Move the rows listed in _dw_failing to quarantine and keep the batch's counts whole."""
    moved = count_of(con, "SELECT count(*) FROM _dw_failing")
    con.execute(
        "INSERT INTO quarantine (ingest_run_id, source_file, source_row, source_line, kind,"
        " reason_code, field, message, raw_row, stage)"
        f" SELECT ?, ?, t.source_row, NULL, ?, f.reason_code, nullif(f.field, ''),"
        f" f.message, {_raw_row_sql(table)}, 'validate'"
        f" FROM {table.name} t JOIN _dw_failing f ON t.rowid = f.dw_rowid",
        [batch.run_id, batch.source_file, batch.kind],
    )
    con.execute(f"DELETE FROM {table.name} WHERE rowid IN (SELECT dw_rowid FROM _dw_failing)")
    con.execute(
        "UPDATE ingest_runs SET rows_loaded = coalesce(rows_loaded, 0) - ?,"
        " rows_quarantined = coalesce(rows_quarantined, 0) + ? WHERE run_id = ?",
        [moved, moved, batch.run_id],
    )
    con.execute("DROP TABLE _dw_failing")
    return moved
