"""Watermarks: what the pipeline has read and judged, so runs are incremental and gap-free.

Three records in the store (migration 0007) carry the state, so nothing depends on the
previous run having succeeded:

``source_files``
    every file read, with size, mtime and content hash. A file whose size and mtime are
    unchanged is skipped *without being read*; a changed file is handed to ingest, which
    still skips content it has loaded before (``ingest_runs.content_sha256``).
``run_batches``
    which run took each ingest batch into detection. A loaded batch with no row here is
    pending, whoever loaded it (a crashed run, or ``dwatch ingest`` by hand).
``run_windows``
    event-time windows (whole UTC days per source) to judge again: opened when a pending
    batch lands events in them (``late_events`` when older than the source's watermark),
    by ``--backfill``, and closed only by the run that finished judging them. A window a
    failed run left open is a gap the next run notices and fills.

``source_watermarks`` holds, per source, the latest event time a successful run judged.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb

from dwatch.accounting.bounds import first_rowids
from dwatch.ingest import IngestResult, expand_paths, file_sha256
from dwatch.masking import mask_path
from dwatch.schema import load_schema
from dwatch.store import transaction


@dataclass
class FileScan:
    """Files under the inputs, split by whether they must be read."""

    to_read: list[Path] = field(default_factory=list)
    unchanged: list[Path] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)
    stats: dict[Path, os.stat_result] = field(default_factory=dict)

    @property
    def seen(self) -> int:
        return len(self.to_read) + len(self.unchanged)


def scan_inputs(
    con: duckdb.DuckDBPyConnection,
    paths: Iterable[str | Path],
    *,
    reread: bool = False,
    key: bytes | None = None,
) -> FileScan:
    """Which files under ``paths`` are new or changed since they were last read (stat only)."""
    files, problems = expand_paths(paths)
    scan = FileScan(problems=problems)
    known = {
        row[0]: (row[1], row[2])
        for row in con.execute(
            "SELECT path, size_bytes, mtime_ns FROM source_files WHERE status <> 'failed'"
        ).fetchall()
    }
    for path in files:
        st = path.stat()
        scan.stats[path] = st
        stored = mask_path(str(path.resolve()), key)  # as record_files stores it
        if not reread and known.get(stored) == (st.st_size, st.st_mtime_ns):
            scan.unchanged.append(path)
        else:
            scan.to_read.append(path)
    return scan


def record_files(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    results: Sequence[IngestResult],
    stats: dict[Path, os.stat_result],
    *,
    key: bytes | None = None,
) -> None:
    """Remember each file read this run with the batch holding its content (the path with
    taxpayer-id shapes replaced by their pseudonyms, dwatch.masking)."""
    by_name = {str(p): st for p, st in stats.items()}
    read = [(r, by_name[r.source_file]) for r in results if r.source_file in by_name]
    # (a path that named nothing is recorded as a problem, not a file)
    if not read:
        return
    loaded_ids = sorted({r.run_id for r, _ in read if r.status == "loaded"})
    sha_of_batch = dict(
        con.execute(
            "SELECT run_id, content_sha256 FROM ingest_runs WHERE list_contains(?, run_id)",
            [loaded_ids],
        ).fetchall()
        if loaded_ids
        else []
    )
    # Same content was loaded before (by another path or an earlier run): point at it.
    skipped_sha = {
        r.source_file: file_sha256(Path(r.source_file)) for r, _ in read if r.status == "skipped"
    }
    batch_of_sha = dict(
        con.execute(
            "SELECT content_sha256, arg_max(run_id, finished_at) FROM ingest_runs"
            " WHERE status = 'loaded' AND list_contains(?, content_sha256)"
            " GROUP BY content_sha256",
            [sorted(set(skipped_sha.values()))],
        ).fetchall()
        if skipped_sha
        else []
    )
    rows: list[tuple[object, ...]] = []
    for r, st in read:
        sha = batch = None
        if r.status == "loaded":
            batch, sha, status = r.run_id, sha_of_batch.get(r.run_id), "loaded"
        elif r.status == "skipped":
            sha = skipped_sha[r.source_file]
            batch, status = batch_of_sha.get(sha), "duplicate_content"
        else:
            status = "failed"
        path = mask_path(str(Path(r.source_file).resolve()), key)
        rows.append((path, st.st_size, st.st_mtime_ns, sha, batch, status, run_id, run_id))
    # A statement per file cost ~9 ms each (0.65 s for 73 files): one per 500 files. A path
    # named twice keeps its last result, as one upsert after another did.
    unique = list({row[0]: row for row in rows}.values())
    for start in range(0, len(unique), 500):
        chunk = unique[start : start + 500]
        values = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, now())"] * len(chunk))
        con.execute(
            f"""
            INSERT INTO source_files (path, size_bytes, mtime_ns, content_sha256,
                                      ingest_run_id, status, first_seen_run_id,
                                      last_read_run_id, last_read_at)
            VALUES {values}
            ON CONFLICT (path) DO UPDATE SET size_bytes = excluded.size_bytes,
                mtime_ns = excluded.mtime_ns, content_sha256 = excluded.content_sha256,
                ingest_run_id = excluded.ingest_run_id, status = excluded.status,
                last_read_run_id = excluded.last_read_run_id, last_read_at = now()
            """,
            [v for row in chunk for v in row],
        )


@dataclass
class Claim:
    """What a run took on: pending batches and the windows they opened."""

    batches: list[str] = field(default_factory=list)
    windows_opened: int = 0
    late_events: int = 0
    late_sources: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # batch -> why it stays pending


def claim_pending(con: duckdb.DuckDBPyConnection, run_id: str) -> Claim:
    """Take every loaded, unclaimed batch into this run and open the windows it touches.

    Claims and windows land together or not at all. All batches go in one transaction; if
    that fails, each batch goes in one of its own, and a batch that still cannot be planned
    stays pending (``Claim.failed`` names it with the reason) while the others go on."""
    claim = Claim()
    pending = [
        r[0]
        for r in con.execute(
            "SELECT run_id FROM ingest_runs WHERE status = 'loaded'"
            " AND run_id NOT IN (SELECT ingest_run_id FROM run_batches) ORDER BY started_at, run_id"
        ).fetchall()
    ]
    if not pending:
        return claim
    groups = [pending] + ([[b] for b in pending] if len(pending) > 1 else [])
    for batches in groups:
        try:
            with transaction(con):
                opened = _open_windows_of(con, run_id, batches)
        except Exception as exc:  # one batch must not keep the others from being judged
            if len(batches) == 1:
                claim.failed[batches[0]] = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
            continue
        _add(claim, batches, opened)
        if batches is pending:
            break
    return claim


def _add(claim: Claim, batches: list[str], opened: tuple[int, dict[str, int]]) -> None:
    windows, late = opened
    claim.batches += batches
    claim.windows_opened += windows
    claim.late_events += sum(late.values())
    claim.late_sources = sorted(set(claim.late_sources) | set(late))


def _open_windows_of(
    con: duckdb.DuckDBPyConnection, run_id: str, batches: list[str]
) -> tuple[int, dict[str, int]]:
    """Claim ``batches`` and open the day windows their events touch (caller's transaction).

    Returns the windows opened and the late events per source. Instants outside the
    plausible window (schemas/canonical.yaml: instants) open none: validation moves those
    rows to quarantine, and a day around year 294247 cannot even be computed."""
    schema = load_schema()
    con.execute(
        "INSERT INTO run_batches (ingest_run_id, claimed_by_run_id) SELECT unnest(?::VARCHAR[]), ?",
        [batches, run_id],
    )
    # Days touched by the batches' events, and by the events their request items belong to
    # (items arriving after their events still change what those days show). The batches'
    # rows are read from the row id none of theirs lies below (batch ids skip no row group);
    # the items' events lie anywhere, so the events are narrowed to the items' sources (a
    # constant list: row groups of other logs are skipped by their zone maps).
    low = first_rowids(con, batches)
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _touched AS
        SELECT source_system, occurred_at FROM (
            SELECT e.source_system, e.occurred_at
            FROM disclosure_events e WHERE e.rowid >= $events_low
             AND e.ingest_run_id IN (SELECT unnest($batches::VARCHAR[]))
            UNION ALL
            SELECT e.source_system, e.occurred_at
            FROM request_items i JOIN disclosure_events e
              ON e.event_id = i.event_id AND (i.source_system IS NULL OR i.source_system = e.source_system)
            WHERE i.rowid >= $items_low AND i.ingest_run_id IN (SELECT unnest($batches::VARCHAR[]))
              {_item_event_sources(con, batches, low.items)}
        ) WHERE isfinite(occurred_at) AND occurred_at >= $floor
          AND occurred_at <= now() + to_seconds($ahead)
        """,
        {
            "batches": batches,
            "events_low": low.events,
            "items_low": low.items,
            "floor": schema.instants_not_before,
            "ahead": schema.instants_ahead_of_ingest.total_seconds(),
        },
    )
    late = con.execute(
        """
        SELECT t.source_system, count(*) FROM _touched t JOIN source_watermarks w USING (source_system)
        WHERE t.occurred_at <= w.events_through GROUP BY 1 ORDER BY 1
        """
    ).fetchall()
    row = con.execute(
        """
        INSERT INTO run_windows (source_system, window_start, window_end, reason, events, opened_by_run_id)
        SELECT t.source_system, date_trunc('day', t.occurred_at) AS day_start,
               date_trunc('day', t.occurred_at) + INTERVAL 1 DAY,
               CASE WHEN bool_or(t.occurred_at <= w.events_through) THEN 'late_events' ELSE 'new_events' END,
               count(*), $run
        FROM _touched t LEFT JOIN source_watermarks w USING (source_system)
        GROUP BY t.source_system, day_start
        RETURNING window_no
        """,
        {"run": run_id},
    ).fetchall()
    con.execute("DROP TABLE _touched")
    return len(row), {str(r[0]): int(r[1]) for r in late}


def _item_event_sources(con: duckdb.DuckDBPyConnection, batches: list[str], low: int) -> str:
    """SQL (``AND ...`` or empty): the sources of the events the batches' request items
    belong to, as constants DuckDB's zone maps test (a whole log's row groups are skipped).
    Empty when an item names no source (it may belong to an event of any log); ``AND
    FALSE`` when the batches hold no item."""
    rows = con.execute(
        "SELECT DISTINCT source_system FROM request_items WHERE rowid >= ?"
        " AND ingest_run_id IN (SELECT unnest(?::VARCHAR[])) ORDER BY 1 NULLS FIRST",
        [low, batches],
    ).fetchall()
    if not rows:
        return "AND FALSE"
    if any(r[0] is None for r in rows):
        return ""
    return "AND e.source_system IN (" + ", ".join(_literal(str(r[0])) for r in rows) + ")"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def open_backfill(
    con: duckdb.DuckDBPyConnection, run_id: str, start: datetime, end: datetime
) -> None:
    """Open [start, end) over every source for re-judging."""
    con.execute(
        "INSERT INTO run_windows (source_system, window_start, window_end, reason, events, opened_by_run_id)"
        " SELECT '*', ?, ?, 'backfill', (SELECT count(*) FROM disclosure_events"
        " WHERE occurred_at >= ? AND occurred_at < ?), ?",
        [start, end, start, end, run_id],
    )


@dataclass(frozen=True)
class Window:
    window_no: int
    source_system: str
    start: datetime
    end: datetime
    reason: str
    opened_by_run_id: str


def open_windows(con: duckdb.DuckDBPyConnection) -> list[Window]:
    """Every window still to judge, oldest first."""
    return [
        Window(*row)
        for row in con.execute(
            "SELECT window_no, source_system, window_start, window_end, reason, opened_by_run_id"
            " FROM run_windows WHERE closed_by_run_id IS NULL ORDER BY window_start, window_no"
        ).fetchall()
    ]


def merged_ranges(
    windows: Iterable[Window], *, max_ranges: int = 24
) -> list[tuple[datetime, datetime]]:
    """Disjoint [start, end) ranges covering the windows (sources merged: ML scores all).

    Touching ranges are joined; beyond ``max_ranges`` the closest ones are joined too, so a
    scatter of late events costs a bounded number of scoring passes."""
    spans = sorted((w.start, w.end) for w in windows)
    ranges: list[list[datetime]] = []
    for start, end in spans:
        if ranges and start <= ranges[-1][1]:
            ranges[-1][1] = max(ranges[-1][1], end)
        else:
            ranges.append([start, end])
    while len(ranges) > max_ranges:
        gaps = [(ranges[i + 1][0] - ranges[i][1], i) for i in range(len(ranges) - 1)]
        _, i = min(gaps)
        ranges[i][1] = ranges[i + 1][1]
        del ranges[i + 1]
    return [(r[0], r[1]) for r in ranges]


def close_windows(con: duckdb.DuckDBPyConnection, run_id: str, windows: Iterable[Window]) -> int:
    numbers = [w.window_no for w in windows]
    if numbers:
        con.execute(
            "UPDATE run_windows SET closed_by_run_id = ?, closed_at = now()"
            " WHERE window_no IN (SELECT unnest(?::BIGINT[]))",
            [run_id, numbers],
        )
    return len(numbers)


def advance_watermarks(con: duckdb.DuckDBPyConnection, run_id: str, batches: Sequence[str]) -> None:
    """Move each source's watermark to the latest event judged (never backwards).

    The batches' events are read from the row id no row of theirs lies below
    (``first_rowids``: ingest appends, so a daily run's batches are the table's tail): a
    batch id skips no row group, a row id does (a 10M 1% run: 0.11 -> 0.02 CPU-s)."""
    from dwatch.accounting.bounds import first_rowids

    if not batches:
        return
    low = first_rowids(con, list(batches)).events
    con.execute(
        """
        INSERT INTO source_watermarks (source_system, events_through, events_judged, last_run_id, updated_at)
        SELECT source_system, max(occurred_at), count(*), $run, now()
        FROM disclosure_events
        WHERE rowid >= $low AND ingest_run_id IN (SELECT unnest($batches::VARCHAR[]))
        GROUP BY source_system
        ON CONFLICT (source_system) DO UPDATE SET
            events_through = greatest(source_watermarks.events_through, excluded.events_through),
            events_judged = source_watermarks.events_judged + excluded.events_judged,
            last_run_id = excluded.last_run_id, updated_at = now()
        """,
        {"run": run_id, "batches": list(batches), "low": low},
    )


def abandon_stale_runs(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Runs still 'running' when a new run holds the write lock died mid-way: say so."""
    stale = [
        r[0]
        for r in con.execute(
            "SELECT run_id FROM runs WHERE status = 'running' ORDER BY started_at"
        ).fetchall()
    ]
    if stale:
        con.execute(
            "UPDATE runs SET status = 'abandoned', finished_at = coalesce(finished_at, now()),"
            " error = coalesce(error, 'the process ended before the run finished (killed or crashed);"
            " its pending batches and open windows are picked up by the next run')"
            " WHERE run_id IN (SELECT unnest(?::VARCHAR[]))",
            [stale],
        )
    return stale


def missed_schedules(
    con: duckdb.DuckDBPyConnection,
    cron: str,
    *,
    timezone: str = "UTC",
    now: datetime | None = None,
    limit: int = 1000,
) -> tuple[int, datetime | None]:
    """Scheduled fire times since the last successful run that no successful run followed.

    Returns (count, last successful run's start). The schedule's own current fire is not
    counted: the run asking is the one filling it."""
    from zoneinfo import ZoneInfo

    from cronsim import CronSim

    row = con.execute(
        "SELECT max(started_at) FROM runs WHERE status IN ('succeeded', 'partial')"
    ).fetchone()
    last_ok: datetime | None = row[0] if row else None
    if last_ok is None:
        return 0, None
    zone = ZoneInfo(timezone)
    current = (now or datetime.now(UTC)).astimezone(zone)
    # Allow a little lateness: a run started a minute after its fire time still "is" that fire.
    slack = timedelta(minutes=5)
    fires = []
    for fire in CronSim(cron, current, reverse=True):
        if fire <= last_ok.astimezone(zone) + slack or len(fires) >= limit:
            break
        fires.append(fire)
    return max(0, len(fires) - 1), last_ok
