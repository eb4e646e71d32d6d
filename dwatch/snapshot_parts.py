"""The big tables of an analyst snapshot as Parquet files of rowid ranges, written once.

A snapshot used to be a whole copy of the store, so each run rewrote all history. Now the
tables that grow with the logs (``PARTITIONED``: events, request items and the accounting
index) are written as immutable Parquet files under ``<snapshots>/parts/<table>/``, each
holding one range of the table's rowids (a *segment*), and the snapshot's DuckDB file holds
views over the files it lists; every other table is small and copied whole.

The segments of a table tile its rowids from 0 up. A publish writes, in one ``COPY`` per
segment of at most ``SEGMENT_ROWS`` rowids (a first publish: a few large COPYs, about the
cost of copying the table once):

* the rows appended since the previous publish (rowids past its last one), as new segments;
  the newest small segments are folded into them while no larger than the rows added (a
  log-structured merge: each row is rewritten a bounded number of times, and the folder does
  not gather one small file per run);
* every earlier segment whose rows changed, rewritten from the same range.

A segment changed when a block of ``BLOCK_ROWS`` rowids it overlaps has another count of
rows or another sum of hashes of each row's rowid, identity columns (``IDENTITY``) and the
columns the store updates in place (``UPDATED_IN_PLACE``) than the previous publish recorded
(the sums are kept in the snapshot's manifest). So a publish reads those narrow columns
once, and the rows of what changed: validation moving rows of a loaded batch to quarantine
changes a count, re-reading citations (``authority_id``) a hash, the accounting index
deleting and re-adding a stale batch moves its rows to new rowids, and a checkpoint that
renumbers rowids, or the index rewriting itself in key order, changes the hashes of the
blocks it moved. A migration that adds or retypes a column starts the table afresh. The
files an older snapshot lists are never touched, so it keeps showing its own run. Rows
are only added to these tables by appending, and nothing else in them is rewritten in
place (a test holds every ``UPDATE`` in the code to ``UPDATED_IN_PLACE``).

The old rows are not read at all when the previous publish's marks hold (``_vouched``):
as many rows at or below its last row id, the same row at it (a delete lowers the count; a
checkpoint moving later rows down raises it or puts another row there), the same sum of
the in-place columns' hashes with the row id (``UPDATED_IN_PLACE``: one narrow column of
the events), and the same number of rewrites (``partition_rewrites``, migration 0061: a
step that deletes rows and adds them again in another order, which a checkpoint may move
back onto the same row ids, says so; the accounting index does). Any mark missing or
different: the hash check above, as before.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import duckdb

PARTITIONED = ("disclosure_events", "request_items", "accounting_keys")
# Columns rewritten in place after a row is added (see the module docstring).
UPDATED_IN_PLACE: dict[str, tuple[str, ...]] = {
    "disclosure_events": ("authority_id",),
    "request_items": (),
    "accounting_keys": (),
}
# Columns that tell one row from another, hashed with its rowid: a row moved to another
# rowid by a checkpoint changes the hash of both blocks.
IDENTITY: dict[str, tuple[str, ...]] = {
    "disclosure_events": ("ingest_run_id", "source_row"),
    "request_items": ("ingest_run_id", "source_row"),
    "accounting_keys": ("ingest_run_id", "source_row", "lookup_key"),
}
# Tables hashed by their whole rows (none now: kept for callers that name it).
WHOLE_ROWS: frozenset[str] = frozenset()
PARTS = "parts"
# zstd's fastest level: files as small as its default level's, for less CPU (clients of any
# level read them alike)
PARQUET = "FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL 1"
SCHEMA = "schema"  # the zero-row file that fixes a view's columns when the table is empty
RANGE = "range"
BLOCK_ROWS = 122_880  # DuckDB's row group: the unit a change is found in
SEGMENT_ROWS = 8 * BLOCK_ROWS  # the most rowids one file holds: what a correction rewrites


@dataclass(frozen=True)
class Part:
    """One immutable Parquet file of a partitioned table (``file`` relative to the folder):
    the rows of rowids ``lo``..``hi``, or the zero-row ``SCHEMA`` file. A range whose rows
    were all deleted keeps its place with no file (``file`` None), so ranges still tile."""

    table: str
    lo: int
    hi: int
    rows: int
    file: str | None
    kind: str = RANGE


REWRITES = "partition_rewrites"


@dataclass(frozen=True)
class TableState:
    """What a publish recorded of one table: the next publish compares against it."""

    spec: str  # the columns and types: another spec starts the table afresh
    last_rowid: int  # the highest rowid the segments cover (-1: none)
    blocks: dict[int, tuple[int, str]] = field(default_factory=dict)  # block: (rows, hash sum)
    # The marks that vouch for the rows up to last_rowid without reading them (None: not
    # recorded, e.g. by an older publish): the hash of the row at last_rowid, the sum of
    # the in-place columns' hashes over those rows, the table's partition_rewrites count.
    tail: str | None = None
    in_place: str | None = None
    rewrites: int | None = None


@dataclass(frozen=True)
class PartsWritten:
    parts: list[Part]
    written: list[Part]
    bytes_written: int
    state: dict[str, TableState] = field(default_factory=dict)


def _digest(*values: object) -> str:
    return hashlib.sha256("\x1f".join(str(v) for v in values).encode()).hexdigest()[:16]


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def present_tables(con: duckdb.DuckDBPyConnection, *, kind: str = "TABLE") -> list[str]:
    """The partitioned tables this database holds as ``kind`` (TABLE in a store, VIEW in a
    snapshot); a bare test store may have none."""
    catalog = "duckdb_views()" if kind == "VIEW" else "duckdb_tables()"
    column = "view_name" if kind == "VIEW" else "table_name"
    found = {
        row[0]
        for row in con.execute(
            f"SELECT {column} FROM {catalog} WHERE database_name = current_database()"
            " AND schema_name = 'main' AND NOT temporary"
        ).fetchall()
    }
    return [t for t in PARTITIONED if t in found]


def _schema_spec(con: duckdb.DuckDBPyConnection, table: str) -> str:
    columns = con.execute(f"DESCRIBE main.{_quote(table)}").fetchall()
    return ",".join(f"{c[0]} {c[1]}" for c in columns)


@dataclass(frozen=True)
class Scan:
    """One scan of a table's narrow columns: per block, the rows up to the previous
    publish's last rowid (``old``) and all rows (``now``), and the highest rowid.
    ``grouped_old``: the old rows were counted block by block (False: their totals matched
    what the previous publish recorded, so its blocks were taken as they are)."""

    old: dict[int, tuple[int, str]]
    now: dict[int, tuple[int, str]]
    last_rowid: int
    grouped_old: bool = True
    # the sum of the in-place columns' hashes over every row now (None: not computed)
    in_place: str | None = None
    read_old: bool = True  # False: the old rows were vouched for by the marks, not read


def _hashed(table: str) -> str:
    return ", ".join(["rowid", *(_quote(c) for c in (*IDENTITY[table], *UPDATED_IN_PLACE[table]))])


def _in_place_sum(table: str) -> str:
    """SQL: the sum of the in-place columns' hashes with the row id ('0' when none)."""
    cols = UPDATED_IN_PLACE[table]
    if not cols:
        return "0::HUGEINT"
    return f"coalesce(sum(hash(rowid, {', '.join(_quote(c) for c in cols)})), 0)"


def tail_hash(con: duckdb.DuckDBPyConnection, table: str, rowid: int) -> str | None:
    """The hash of the row at ``rowid`` (row id, identity, in-place columns); None: no row."""
    if rowid < 0:
        return None
    row = con.execute(
        f"SELECT hash({_hashed(table)}) FROM main.{_quote(table)} WHERE rowid = {int(rowid)}"
    ).fetchone()
    return str(row[0]) if row else None


def _has_rewrites(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the store has ``partition_rewrites`` (migration 0061). Asked of the catalog:
    a failing statement would abort the caller's transaction."""
    row = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database()"
        " AND schema_name = 'main' AND table_name = ?",
        [REWRITES],
    ).fetchone()
    return bool(row and row[0])


def rewrites_of(con: duckdb.DuckDBPyConnection, table: str) -> int | None:
    """How many rewrites ``partition_rewrites`` counts for ``table`` (None: no such table,
    a store before migration 0061)."""
    if not _has_rewrites(con):
        return None
    found = con.execute(f"SELECT rewrites FROM {REWRITES} WHERE table_name = ?", [table]).fetchone()
    return int(found[0]) if found else 0


def note_rewrite(con: duckdb.DuckDBPyConnection, table: str) -> None:
    """Record that a step deleted rows of ``table`` it may add again in another order (a
    publish then reads the old rows, whatever its other marks say). Inside the step's
    transaction, so the mark and the change are committed together. A store before
    migration 0061 has nowhere to say it, and no publish trusts its marks."""
    if not _has_rewrites(con):
        return
    con.execute(
        f"INSERT INTO {REWRITES} VALUES (?, 1)"
        " ON CONFLICT (table_name) DO UPDATE SET rewrites = rewrites + 1",
        [table],
    )


def _vouched(
    con: duckdb.DuckDBPyConnection,
    table: str,
    since: int,
    known: dict[int, tuple[int, str]],
    marks: TableState,
) -> bool:
    """Whether the previous publish's marks hold for the rows up to ``since`` (its last
    row id): then none of them was deleted, moved or updated in place since."""
    cols = UPDATED_IN_PLACE[table]
    if marks.tail is None or marks.rewrites is None or (cols and marks.in_place is None):
        return False
    if rewrites_of(con, table) != marks.rewrites:
        return False
    row = con.execute(
        f"SELECT count(*), {_in_place_sum(table)} FROM main.{_quote(table)}"
        f" WHERE rowid <= {int(since)}"
    ).fetchone()
    if row is None or int(row[0]) != sum(n for n, _ in known.values()):
        return False
    if cols and str(row[1]) != marks.in_place:
        return False
    return tail_hash(con, table, since) == marks.tail


def scan_blocks(
    con: duckdb.DuckDBPyConnection,
    table: str,
    since: int,
    known: dict[int, tuple[int, str]] | None = None,
    marks: TableState | None = None,
) -> Scan:
    """Count and hash each block's rows (rowid, identity, updated columns: never whole rows),
    split at ``since`` (the previous publish's last rowid).

    ``known``: the blocks the previous publish recorded, ``marks`` its state (for its
    marks). When the marks hold (``_vouched``) the old rows are not read: only the rows
    past ``since`` are grouped. Otherwise, when the rows up to ``since`` have their count
    and hash sum in total (one aggregate, no grouping), nothing old changed: the row id is
    hashed with the identity, so a row deleted, moved or updated in place changes the
    total as it changes its block's. Then too only the rows past ``since`` are grouped
    (a 10M 1% run: events 0.17 -> 0.07 CPU-s, index 0.23 -> 0.12); otherwise every row,
    as before."""
    hashed = _hashed(table)
    if known is not None and since >= 0:
        if marks is not None and _vouched(con, table, since, known, marks):
            return _fresh_blocks(con, table, since, known, since, marks.in_place, False)
        count, total, top, in_place = con.execute(
            f"SELECT count(*), coalesce(sum(hash({hashed})), 0), coalesce(max(rowid), -1),"
            f" {_in_place_sum(table)} FROM main.{_quote(table)} WHERE rowid <= {int(since)}"
        ).fetchone()  # type: ignore[misc]
        if (int(count), int(total)) == (
            sum(n for n, _ in known.values()),
            sum(int(h) for _, h in known.values()),
        ):
            return _fresh_blocks(con, table, since, known, int(top), str(in_place))
    rows = con.execute(
        f"SELECT rowid // {BLOCK_ROWS} AS block, rowid > {int(since)} AS fresh, count(*),"
        f" sum(hash({hashed})), max(rowid), {_in_place_sum(table)}"
        f" FROM main.{_quote(table)} GROUP BY ALL"
    ).fetchall()
    old: dict[int, tuple[int, str]] = {}
    now: dict[int, list[int]] = {}
    last = -1
    in_place = 0
    for block, fresh, count, total, top, place in rows:
        if not fresh:
            old[int(block)] = (int(count), str(total))
        acc = now.setdefault(int(block), [0, 0])
        acc[0] += int(count)
        acc[1] += int(total)
        last = max(last, int(top))
        in_place += int(place)
    return Scan(old, {b: (c, str(t)) for b, (c, t) in now.items()}, last, in_place=str(in_place))


def _fresh_blocks(
    con: duckdb.DuckDBPyConnection,
    table: str,
    since: int,
    known: dict[int, tuple[int, str]],
    top: int,
    in_place: str | None,
    read_old: bool = True,
) -> Scan:
    """The old blocks as ``known`` recorded them, with the rows past ``since`` added
    (``in_place``: the old rows' sum of in-place hashes, the fresh rows' added to it)."""
    now = {b: [n, int(h)] for b, (n, h) in known.items()}
    last = top
    place = int(in_place) if in_place is not None else 0
    for block, count, total, high, fresh_place in con.execute(
        f"SELECT rowid // {BLOCK_ROWS} AS block, count(*), sum(hash({_hashed(table)})),"
        f" max(rowid), {_in_place_sum(table)} FROM main.{_quote(table)}"
        f" WHERE rowid > {int(since)} GROUP BY ALL"
    ).fetchall():
        acc = now.setdefault(int(block), [0, 0])
        acc[0] += int(count)
        acc[1] += int(total)
        last = max(last, int(high))
        place += int(fresh_place)
    return Scan(
        dict(known),
        {b: (n, str(h)) for b, (n, h) in now.items()},
        last,
        False,
        str(place) if in_place is not None else None,
        read_old,
    )


def _settle(partial: Path, target: Path) -> int:
    """Make a written file durable, then give it its final, read-only name; its size."""
    with partial.open("rb") as fh:
        os.fsync(fh.fileno())
    os.replace(partial, target)
    target.chmod(0o444)
    return target.stat().st_size


def _write_one(con: duckdb.DuckDBPyConnection, query: str, target: Path) -> tuple[int, int]:
    """Write ``query`` to ``target`` (under a temporary name, then renamed): rows and size;
    no file for no rows."""
    partial = target.with_name(f".{target.name}.partial")
    partial.unlink(missing_ok=True)
    try:
        row = con.execute(f"COPY ({query}) TO '{partial}' ({PARQUET})").fetchone()
        rows = int(row[0]) if row else 0
        if not rows and not target.name.startswith(SCHEMA):
            return 0, 0
        return rows, _settle(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def _write_all(
    con: duckdb.DuckDBPyConnection, jobs: list[tuple[str, Path]], *, cursors: bool
) -> list[tuple[int, int]]:
    """``_write_one`` of each (query, target), in order: with ``cursors`` and two jobs or
    more, on one cursor per DuckDB thread at once, each statement on one thread.

    One COPY of a wide table on two threads costs DuckDB more than on one (it gathers the
    threads' chunks back into row groups in order): a 983,040-row segment of the events,
    1.6-1.8 CPU-s against 1.2, the same file. Two cursors keep both cores busy. ``threads``
    is the database's setting, so it is restored after; cursors are other connections and
    see what is committed: the caller passes ``cursors`` only when nothing is uncommitted."""
    threads = int(con.execute("SELECT current_setting('threads')").fetchone()[0])  # type: ignore[index]
    if not cursors or len(jobs) < 2 or threads < 2:
        return [_write_one(con, query, target) for query, target in jobs]
    zone = str(con.execute("SELECT current_setting('TimeZone')").fetchone()[0])  # type: ignore[index]
    workers = min(threads, len(jobs))
    results: list[tuple[int, int]] = [(0, 0)] * len(jobs)
    opened: list[duckdb.DuckDBPyConnection] = []
    con.execute("SET threads = 1")
    try:
        for _ in range(workers):
            opened.append(con.cursor())
            opened[-1].execute(f"SET TimeZone = '{zone}'")

        def stripe(k: int) -> None:
            for i in range(k, len(jobs), workers):
                results[i] = _write_one(opened[k], *jobs[i])

        with ThreadPoolExecutor(workers) as pool:
            for done in [pool.submit(stripe, k) for k in range(workers)]:
                done.result()
    finally:
        for cursor in opened:
            cursor.close()
        con.execute(f"SET threads = {threads}")
    return results


Range = tuple[int, int]


def _changed_blocks(previous: TableState, scan: Scan) -> set[int]:
    """Blocks whose rows up to the previous publish's last rowid differ from what it saw."""
    return {b for b in previous.blocks.keys() | scan.old.keys()
            if previous.blocks.get(b) != scan.old.get(b)}  # fmt: skip


def _to_write(
    kept: list[Part], dirty: list[Part], since: int, last: int
) -> tuple[list[Part], list[Range]]:
    """The segments kept as they are, and the rowid ranges to write: the changed segments,
    the new rows past ``since`` (in segments of ``SEGMENT_ROWS``), and the newest small
    segments folded into the new rows while no larger than them."""
    ranges = [(p.lo, p.hi) for p in dirty]
    kept = sorted(kept, key=lambda p: p.lo)
    if last > since:
        lo = since + 1
        while kept and kept[-1].hi + 1 == lo and kept[-1].hi - kept[-1].lo <= last - lo:
            if last - kept[-1].lo + 1 > SEGMENT_ROWS:
                break
            lo = kept.pop().lo
        ranges.append((lo, last))
    merged: list[Range] = []
    for lo, hi in sorted(ranges):
        if merged and merged[-1][1] + 1 == lo and hi - merged[-1][0] < SEGMENT_ROWS:
            merged[-1] = (merged[-1][0], hi)
        else:
            merged.append((lo, hi))
    split = [
        (start, min(hi, start + SEGMENT_ROWS - 1))
        for lo, hi in merged
        for start in range(lo, hi + 1, SEGMENT_ROWS)
    ]
    return kept, split


def write_parts(
    con: duckdb.DuckDBPyConnection,
    snapshot_dir: Path,
    previous: dict[str, tuple[TableState, list[Part]]] | None = None,
    *,
    run_id: str = "",
) -> PartsWritten:
    """Write the segments that changed or are new since ``previous`` (each table's state and
    segments as the last publish recorded them); list all that are current.

    Rowids are read in one transaction and used while nothing writes the store, so they
    name the same rows: the files are written by cursors (``_write_all``) only when that
    transaction is the publisher's own (the caller had none open, so nothing it wrote is
    uncommitted); inside a caller's transaction, by ``con`` itself."""
    with _reading(con) as own:
        return _write_parts(con, snapshot_dir, previous or {}, run_id, own)


def in_transaction(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether ``con`` has a transaction open: its id stays the same from one statement to
    the next (each auto-committed statement gets its own). A ``BEGIN`` that fails inside an
    open transaction would abort the caller's transaction with it."""
    first = con.execute("SELECT txid_current()").fetchone()
    return first == con.execute("SELECT txid_current()").fetchone()


@contextmanager
def _reading(con: duckdb.DuckDBPyConnection) -> Iterator[bool]:
    """One read-only transaction around the reads (or the caller's, when one is open);
    yields whether it is our own."""
    if in_transaction(con):
        yield False  # the caller's transaction already holds one view of the store
        return
    con.execute("BEGIN TRANSACTION")
    try:
        yield True
    finally:
        con.execute("ROLLBACK")  # nothing was written to the store


def _usable(snapshot_dir: Path, spec: str, known: tuple[TableState, list[Part]] | None) -> bool:
    """Whether the previous publish's record of a table can be built on: same columns, its
    segments tile its rowids from 0, and their files are still there."""
    if known is None or known[0].spec != spec:
        return False
    state, segments = known
    edge = -1
    for part in sorted(segments, key=lambda p: p.lo):
        if part.lo != edge + 1 or (part.file and not (snapshot_dir / part.file).exists()):
            return False
        edge = part.hi
    return edge == state.last_rowid


def _write_table(
    con: duckdb.DuckDBPyConnection,
    snapshot_dir: Path,
    table: str,
    known: tuple[TableState, list[Part]] | None,
    run_id: str,
    cursors: bool = False,
) -> tuple[list[Part], list[Part], int, TableState]:
    """One table: (parts listed, parts written, bytes written, state for the next publish)."""
    (snapshot_dir / PARTS / table).mkdir(parents=True, exist_ok=True)
    spec = _schema_spec(con, table)
    schema = Part(table, 0, -1, 0, f"{PARTS}/{table}/{SCHEMA}-{_digest(spec)}.parquet", SCHEMA)
    written: list[Part] = []
    size = 0
    if not (snapshot_dir / str(schema.file)).exists():
        _, size = _write_one(
            con, f"SELECT * FROM main.{_quote(table)} LIMIT 0", snapshot_dir / str(schema.file)
        )
        written.append(schema)
    if not _usable(snapshot_dir, spec, known):
        known = (TableState(spec, -1), [])
    previous, segments = known  # type: ignore[misc]
    scan = scan_blocks(con, table, previous.last_rowid, previous.blocks, previous)
    changed = _changed_blocks(previous, scan)
    dirty = [p for p in segments
             if any(p.lo // BLOCK_ROWS <= b <= p.hi // BLOCK_ROWS for b in changed)]  # fmt: skip
    kept, ranges = _to_write(
        [p for p in segments if p not in dirty], dirty, previous.last_rowid, scan.last_rowid
    )
    names = [
        f"{PARTS}/{table}/{_digest(table, lo, hi)}-{_digest(spec, run_id, lo, hi)}.parquet"
        for lo, hi in ranges
    ]
    jobs = [
        (f"SELECT * FROM main.{_quote(table)} WHERE rowid BETWEEN {lo} AND {hi}", snapshot_dir / n)
        for (lo, hi), n in zip(ranges, names, strict=True)
    ]
    for (lo, hi), name, (rows, bytes_) in zip(
        ranges, names, _write_all(con, jobs, cursors=cursors), strict=True
    ):
        part = Part(table, lo, hi, rows, name if rows else None)
        kept.append(part)
        if rows:
            written.append(part)
        size += bytes_
    kept.sort(key=lambda p: p.lo)
    last = max(previous.last_rowid, scan.last_rowid)
    # the marks the next publish checks: the row at ``last`` (none when rows at the end
    # were deleted: then it reads the old rows), the in-place sum over every row (all lie
    # at or below ``last``), the rewrites counted now
    tail = tail_hash(con, table, last) if last == scan.last_rowid else None
    marks = TableState(spec, last, scan.now, tail, scan.in_place, rewrites_of(con, table))
    return [schema, *kept], written, size, marks


def _write_parts(
    con: duckdb.DuckDBPyConnection,
    snapshot_dir: Path,
    previous: dict[str, tuple[TableState, list[Part]]],
    run_id: str,
    cursors: bool = False,
) -> PartsWritten:
    parts: list[Part] = []
    written: list[Part] = []
    states: dict[str, TableState] = {}
    size = 0
    for table in present_tables(con):
        listed, new, bytes_, state = _write_table(
            con, snapshot_dir, table, previous.get(table), run_id, cursors
        )
        parts.extend(listed)
        written.extend(new)
        states[table] = state
        size += bytes_
    return PartsWritten(parts, written, size, states)


def view_sql(snapshot_dir: Path, table: str, parts: list[Part]) -> str:
    """The snapshot's view of ``table``: its listed files in rowid order, by absolute path.

    The zero-row schema file comes last: DuckDB estimates a Parquet list's rows from its
    first file, and a first file of no rows made every join put the whole table on the
    build side (a one-taxpayer accounting read all 1M index rows at 1M events)."""
    listed_parts = sorted(
        (p for p in parts if p.table == table and p.file), key=lambda p: p.kind == SCHEMA
    )
    files = [str((snapshot_dir / str(p.file)).resolve()) for p in listed_parts]
    listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
    return f"SELECT * FROM read_parquet([{listed}])"


def manifest_path(snapshot: Path) -> Path:
    return snapshot.with_suffix(".parts.json")


def write_manifest(
    snapshot: Path,
    run_id: str,
    parts: list[Part],
    state: dict[str, TableState] | None = None,
) -> Path:
    """``<snapshot>.parts.json``: the files a snapshot reads (what pruning must keep), and
    each table's block counts and hashes (what the next publish compares against)."""
    target = manifest_path(snapshot)
    tmp = target.with_name(f".{target.name}.tmp")
    body = {
        "run_id": run_id,
        "parts": [asdict(p) for p in parts],
        "tables": {
            table: {
                "spec": s.spec,
                "last_rowid": s.last_rowid,
                "blocks": [[b, n, h] for b, (n, h) in sorted(s.blocks.items())],
                "tail": s.tail,
                "in_place": s.in_place,
                "rewrites": s.rewrites,
            }
            for table, s in (state or {}).items()
        },
    }
    tmp.write_text(json.dumps(body, separators=(",", ":")) + "\n", encoding="utf-8")
    os.replace(tmp, target)
    return target


def read_manifest(snapshot: Path) -> dict[str, tuple[TableState, list[Part]]]:
    """Each table's state and segments as the publish of ``snapshot`` recorded them (none
    for a snapshot of an older version: its tables are written afresh)."""
    manifest = manifest_path(snapshot)
    if not manifest.exists():
        return {}
    body = json.loads(manifest.read_text(encoding="utf-8"))
    tables = body.get("tables") or {}
    found: dict[str, tuple[TableState, list[Part]]] = {}
    for table, state in tables.items():
        blocks = {int(b): (int(n), str(h)) for b, n, h in state["blocks"]}
        segments = [
            Part(**p) for p in body["parts"] if p["table"] == table and p.get("kind") == RANGE
        ]
        rewrites = state.get("rewrites")
        found[table] = (
            TableState(
                state["spec"],
                int(state["last_rowid"]),
                blocks,
                state.get("tail"),
                state.get("in_place"),
                None if rewrites is None else int(rewrites),
            ),
            segments,
        )
    return found


def listed_files(snapshot: Path) -> set[str]:
    """The part files a snapshot lists (none for a whole-copy snapshot of older versions)."""
    manifest = manifest_path(snapshot)
    if not manifest.exists():
        return set()
    parts = json.loads(manifest.read_text(encoding="utf-8"))["parts"]
    return {p["file"] for p in parts if p.get("file")}


ORPHANS = ".orphans.json"


def collect_garbage(
    snapshot_dir: Path, listed: set[str], *, now: float, grace_seconds: float
) -> list[Path]:
    """Delete part files no kept snapshot lists once they have been unlisted ``grace``.

    An analyst session may still hold a pruned snapshot open: its database file stays
    readable (POSIX), but its views open the Parquet files at each query, so a file leaves
    only after it has been listed by no snapshot for ``grace_seconds``."""
    root = snapshot_dir / PARTS
    if not root.is_dir():
        return []
    record = root / ORPHANS
    since: dict[str, float] = {}
    if record.exists():
        since = json.loads(record.read_text(encoding="utf-8"))
    removed: list[Path] = []
    still: dict[str, float] = {}
    for path in sorted(root.glob("*/*.parquet")):
        name = path.relative_to(snapshot_dir).as_posix()
        if name in listed:
            continue
        first = since.get(name, now)
        if now - first >= grace_seconds:
            path.chmod(0o644)
            path.unlink(missing_ok=True)
            removed.append(path)
        else:
            still[name] = first
    tmp = root / f"{ORPHANS}.tmp"
    tmp.write_text(json.dumps(still, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, record)
    return removed
