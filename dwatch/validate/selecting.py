"""Which batches a validation run reads: the new ones, and old ones new rows may change.

A batch is one ``ingest_runs`` row; its rows carry ``ingest_run_id``. Batch ids skip no
row groups (DuckDB keeps only a prefix of each string's min and max, and ids of one day
share it), so reads of the batches' rows also bound the rowid (``first_rows``): ingest
appends, and new rows are the table's last. History is read only where a check needs it
(a source's neighbours, rhythm and duplicates).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import duckdb

from dwatch.errors import InputError

KIND_TABLE = {"events": "disclosure_events", "request_items": "request_items"}


@dataclass(frozen=True)
class Batch:
    run_id: str
    kind: str
    table: str
    source_file: str
    started_at: datetime | None
    # Why an already validated batch is read again (None: never validated).
    revisit_reason: str | None = None


_LOADED = (
    "SELECT run_id, kind, source_file, started_at FROM ingest_runs"
    " WHERE status = 'loaded' AND kind IN ('events', 'request_items')"
)


def select_batches(con: duckdb.DuckDBPyConnection, run_ids: list[str] | None) -> list[Batch]:
    """Loaded batches in load order: ``run_ids``, or every one not validated yet."""
    if run_ids is None:
        rows = con.execute(
            _LOADED + " AND run_id NOT IN (SELECT DISTINCT ingest_run_id FROM validation_results"
            " WHERE ingest_run_id IS NOT NULL) ORDER BY started_at, run_id"
        ).fetchall()
    else:
        rows = con.execute(
            _LOADED + " AND run_id IN (SELECT unnest(?::VARCHAR[])) ORDER BY started_at, run_id",
            [run_ids],
        ).fetchall()
        found = {r[0] for r in rows}
        unknown = [r for r in run_ids if r not in found]
        if unknown:
            raise InputError(
                f"no loaded ingest run {', '.join(unknown)}",
                where="ingest_runs",
                fix="list runs with: SELECT run_id, status, source_file FROM ingest_runs",
            )
    return [Batch(r[0], r[1], KIND_TABLE[r[1]], r[2], r[3]) for r in rows]


def batches_reopened(
    con: duckdb.DuckDBPyConnection, new_sources: dict[str, list[str]], exclude: set[str]
) -> list[Batch]:
    """Old batches whose open coverage gaps new rows may close, each with the reason.

    Only gaps a validation found can close when checked again (not those ingest knows of);
    a gap can close only when its source has new rows (a late file can fill a sequence gap
    or a silence, and more history changes the source's rhythm). ``new_sources`` maps each
    source with new rows to the batches that brought them.
    """
    if not new_sources:
        return []
    rows = con.execute(
        "SELECT r.run_id, r.kind, r.source_file, r.started_at,"
        " list(DISTINCT g.source_system ORDER BY g.source_system), count(*)"
        " FROM coverage_gaps g JOIN ingest_runs r ON r.run_id = g.ingest_run_id"
        " WHERE r.status = 'loaded' AND g.validation_run_id IS NOT NULL"
        " AND g.source_system IN (SELECT unnest(?::VARCHAR[]))"
        " GROUP BY ALL ORDER BY r.started_at, r.run_id",
        [sorted(new_sources)],
    ).fetchall()
    out = []
    for run_id, kind, source_file, started_at, sources, gaps in rows:
        if run_id in exclude:
            continue
        by = sorted({b for s in sources for b in new_sources.get(s, [])})
        shown = ", ".join(by[:3]) + (f" and {len(by) - 3} more" if len(by) > 3 else "")
        reason = (
            f"{gaps} open coverage gap(s) on {', '.join(sources)}; new rows of the same"
            f" source(s) from {shown} may fill them (coverage checks only)"
        )
        out.append(Batch(run_id, kind, KIND_TABLE[kind], source_file, started_at, reason))
    return out


# A row group: DuckDB skips row groups by their rowid range.
_ROW_GROUP = 122_880


def first_rows(con: duckdb.DuckDBPyConnection, batches: list[Batch]) -> dict[str, int]:
    """Per table, a rowid no row of ``batches`` lies below (0: not known), so reads of
    their rows skip the row groups of history.

    Batch ids skip no row groups (ids of one day share the first bytes DuckDB keeps of
    each string's min and max), row ids do. Ingest appends, so new rows are the table's
    last: its tail is read, widened until it holds as many of the batches' rows as their
    ``ingest_runs`` counts say the table holds (old batches checked again lie anywhere)."""
    out: dict[str, int] = {}
    for table in sorted({b.table for b in batches}):
        ids = [b.run_id for b in batches if b.table == table]
        row = con.execute(
            f"SELECT (SELECT count(*) FROM {table}), (SELECT coalesce(sum(rows_loaded), 0)"
            " FROM ingest_runs WHERE run_id IN (SELECT unnest($ids::VARCHAR[])))",
            {"ids": ids},
        ).fetchall()
        total, expected = (int(v) for v in row[0])
        out[table] = 0
        tail = max(2 * expected, _ROW_GROUP)
        while tail < total:
            found = con.execute(
                f"SELECT count(*), min(rowid) FROM {table} WHERE rowid >= $from"
                " AND ingest_run_id IN (SELECT unnest($ids::VARCHAR[]))",
                {"ids": ids, "from": total - tail},
            ).fetchall()[0]
            if int(found[0]) == expected:
                out[table] = int(found[1]) if found[0] else total
                break
            tail *= 4
    return out
