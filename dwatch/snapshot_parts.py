"""The big tables of an analyst snapshot as Parquet partitions written once per batch.

A snapshot used to be a whole copy of the store, so each run rewrote all history. Now the
tables that grow with the logs (``PARTITIONED``: events, request items and the accounting
index, one partition per ingest batch) are written as immutable Parquet files under
``<snapshots>/parts/<table>/`` and the snapshot's DuckDB file holds views over the files it
lists; every other table is small and copied whole. A run writes the partitions of its new batches, and of old batches
whose rows changed, and nothing else.

A partition file's name is its content's fingerprint: the batch (hashed, so no value from a
log reaches a file name), the table's columns and types, the batch's row count and a hash of
each row's position in its file and of the columns the store updates in place after load
(``UPDATED_IN_PLACE``), or of whole rows for the accounting index (``WHOLE_ROWS``). So:

* validation moving rows of a loaded batch to quarantine changes the count;
* re-reading citations (``authority_id``) changes the hash;
* a migration that adds or retypes a column changes every name;

and each gives the batch a new file, listed by the next snapshot; the files an older
snapshot lists are never touched, so it keeps showing its own run. Rows are only ever added
to the store in new batches, and nothing else in these tables is rewritten (a test holds
every ``UPDATE`` in the code to ``UPDATED_IN_PLACE``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import duckdb

PARTITIONED = ("disclosure_events", "request_items", "accounting_index")
BATCH_COLUMN = "ingest_run_id"
ROW_COLUMN = "source_row"
# Columns rewritten in place after a batch is loaded (see the module docstring).
UPDATED_IN_PLACE: dict[str, tuple[str, ...]] = {
    "disclosure_events": ("authority_id",),
    "request_items": (),
}
# Tables fingerprinted by their whole rows: the accounting index deletes and re-adds a
# stale batch's rows (any column may differ) and has no row position of its own.
WHOLE_ROWS = frozenset({"accounting_index"})
PARTS = "parts"
# zstd's fastest level: files as small as its default level's, for less CPU (clients of any
# level read them alike)
PARQUET = "FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL 1"
SCHEMA = "schema"  # the zero-row file that fixes a view's columns when no batch has rows


@dataclass(frozen=True)
class Part:
    """One immutable Parquet file of a partitioned table (``file`` relative to the folder)."""

    table: str
    batch: str | None  # None: rows loaded without a batch (tests), or ``kind`` schema
    rows: int
    file: str
    kind: str = "batch"  # or SCHEMA


@dataclass(frozen=True)
class PartsWritten:
    parts: list[Part]
    written: list[Part]
    bytes_written: int


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
class Fingerprint:
    """What one scan of narrow columns says of a batch: its rows, its fingerprint, and where
    its rows sit in the table (rowids: read them back with a range DuckDB can prune on)."""

    rows: int
    fingerprint: str
    first_rowid: int
    last_rowid: int


def batch_fingerprints(con: duckdb.DuckDBPyConnection, table: str) -> dict[str | None, Fingerprint]:
    """Per batch: rows, fingerprint and rowid range, from narrow columns, never whole rows."""
    spec = _schema_spec(con, table)
    if table in WHOLE_ROWS:
        hashed = "dw_row"  # the row as one struct
    else:
        hashed = ", ".join(_quote(c) for c in (ROW_COLUMN, *UPDATED_IN_PLACE.get(table, ())))
    rows = con.execute(
        f"SELECT {_quote(BATCH_COLUMN)}, count(*), sum(hash({hashed}))::VARCHAR,"
        f" min(dw_row.rowid), max(dw_row.rowid) FROM main.{_quote(table)} AS dw_row GROUP BY ALL"
    ).fetchall()
    return {
        batch: Fingerprint(int(count), _digest(spec, batch, count, total), int(lo), int(hi))
        for batch, count, total, lo, hi in rows
    }


def _settle(partial: Path, target: Path) -> int:
    """Make a written file durable, then give it its final, read-only name; its size."""
    with partial.open("rb") as fh:
        os.fsync(fh.fileno())
    os.replace(partial, target)
    target.chmod(0o444)
    return target.stat().st_size


def _write_one(
    con: duckdb.DuckDBPyConnection, query: str, params: list[object], target: Path
) -> int:
    """Write ``query`` to ``target`` (under a temporary name, then renamed); its size."""
    partial = target.with_name(f".{target.name}.partial")
    partial.unlink(missing_ok=True)
    try:
        con.execute(
            f"COPY ({query}) TO '{partial}' ({PARQUET})",
            params,
        )
        return _settle(partial, target)
    finally:
        partial.unlink(missing_ok=True)


Rowids = tuple[int, int]  # a batch's first and last rowid, as one scan found them


def _in_range(rowids: Rowids) -> str:
    """SQL: rows in a rowid range (DuckDB skips the row groups outside it; the batch column's
    own statistics cannot, as every run id shares its first bytes)."""
    return f"rowid BETWEEN {int(rowids[0])} AND {int(rowids[1])}"


def _batch_query(table: str, batch: str | None, rowids: Rowids) -> tuple[str, list[object]]:
    """One batch's rows, read from the rowid range that holds them."""
    where = f"{_quote(BATCH_COLUMN)} " + ("IS NULL" if batch is None else "= ?")
    query = f"SELECT * FROM main.{_quote(table)} WHERE {_in_range(rowids)} AND {where}"
    return query, [] if batch is None else [batch]


def _write_batches(
    con: duckdb.DuckDBPyConnection,
    snapshot_dir: Path,
    table: str,
    parts: list[Part],
    rowids: Rowids,
) -> int:
    """Write the partitions of ``parts`` in one scan of the rowid range ``rowids`` (batches
    whose rows are spread through the table: reading it once per batch would cost more)."""
    work = snapshot_dir / PARTS / f".{table}.{os.getpid()}.partial"
    shutil.rmtree(work, ignore_errors=True)
    batches = [p.batch for p in parts]
    try:
        con.execute(
            f"COPY (SELECT t.*, w.dw_part FROM main.{_quote(table)} t"
            " JOIN (SELECT unnest($batches) AS batch,"
            " unnest(range(1, len($batches) + 1)) AS dw_part) w"
            f" ON t.{_quote(BATCH_COLUMN)} IS NOT DISTINCT FROM w.batch"
            f" WHERE t.{_in_range(rowids)})"
            f" TO '{work}' ({PARQUET}, PARTITION_BY (dw_part))",
            {"batches": batches},
        )
        size = 0
        for n, part in enumerate(parts, start=1):
            files = sorted((work / f"dw_part={n}").glob("*.parquet"))
            target = snapshot_dir / part.file
            if len(files) == 1:
                size += _settle(files[0], target)
            else:  # the writer split it: one file per batch is the contract
                size += _write_one(con, *_batch_query(table, part.batch, rowids), target)
        return size
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _write_missing(
    con: duckdb.DuckDBPyConnection,
    snapshot_dir: Path,
    table: str,
    parts: list[Part],
    found: dict[str | None, Fingerprint],
) -> int:
    """Write the batches of ``parts``: each from its own rowid range where the batches sit
    apart (events and items: a batch is appended in one go), else all in one scan (the
    accounting index adds rows to old batches and re-sorts itself)."""
    if not parts:
        return 0
    ranges = [(found[p.batch].first_rowid, found[p.batch].last_rowid) for p in parts]
    hull = (min(lo for lo, _ in ranges), max(hi for _, hi in ranges))
    spread = sum(hi - lo + 1 for lo, hi in ranges)
    if len(parts) > 1 and spread > 2 * (hull[1] - hull[0] + 1):
        return _write_batches(con, snapshot_dir, table, parts, hull)
    # Measured at 1M events: a third less CPU than one PARTITION_BY scan of every batch.
    return sum(
        _write_one(con, *_batch_query(table, part.batch, rowids), snapshot_dir / part.file)
        for part, rowids in zip(parts, ranges, strict=True)
    )


def write_parts(con: duckdb.DuckDBPyConnection, snapshot_dir: Path) -> PartsWritten:
    """Write the partitions the store has and the folder lacks; list all that are current.

    Rowids are read and used in one transaction, so they name the same rows."""
    with _reading(con):
        return _write_parts(con, snapshot_dir)


@contextmanager
def _reading(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """One read-only transaction around the reads (or the caller's, when one is open)."""
    try:
        con.execute("BEGIN TRANSACTION")
    except duckdb.TransactionException:
        yield  # the caller's transaction already holds one view of the store
        return
    try:
        yield
    finally:
        con.execute("ROLLBACK")  # nothing was written to the store


def _write_parts(con: duckdb.DuckDBPyConnection, snapshot_dir: Path) -> PartsWritten:
    parts: list[Part] = []
    written: list[Part] = []
    size = 0
    for table in present_tables(con):
        (snapshot_dir / PARTS / table).mkdir(parents=True, exist_ok=True)
        spec = _schema_spec(con, table)
        schema = Part(table, None, 0, f"{PARTS}/{table}/{SCHEMA}-{_digest(spec)}.parquet", SCHEMA)
        wanted = [schema]
        found = batch_fingerprints(con, table)
        for batch, fp in sorted(found.items(), key=lambda b: b[0] or ""):
            name = f"{PARTS}/{table}/{_digest(batch)}-{fp.fingerprint}.parquet"
            wanted.append(Part(table, batch, fp.rows, name))
        missing = [p for p in wanted if not (snapshot_dir / p.file).exists()]
        new_batches = [p for p in missing if p.kind != SCHEMA]
        if schema in missing:
            empty = f"SELECT * FROM main.{_quote(table)} LIMIT 0"
            size += _write_one(con, empty, [], snapshot_dir / schema.file)
        size += _write_missing(con, snapshot_dir, table, new_batches, found)
        written.extend(missing)
        parts.extend(wanted)
    return PartsWritten(parts, written, size)


def view_sql(snapshot_dir: Path, table: str, parts: list[Part]) -> str:
    """The snapshot's view of ``table``: its listed files, by absolute path."""
    files = [str((snapshot_dir / p.file).resolve()) for p in parts if p.table == table]
    listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
    return f"SELECT * FROM read_parquet([{listed}])"


def manifest_path(snapshot: Path) -> Path:
    return snapshot.with_suffix(".parts.json")


def write_manifest(snapshot: Path, run_id: str, parts: list[Part]) -> Path:
    """``<snapshot>.parts.json``: the files a snapshot reads (what pruning must keep)."""
    target = manifest_path(snapshot)
    tmp = target.with_name(f".{target.name}.tmp")
    body = {"run_id": run_id, "parts": [asdict(p) for p in parts]}
    tmp.write_text(json.dumps(body, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, target)
    return target


def listed_files(snapshot: Path) -> set[str]:
    """The part files a snapshot lists (none for a whole-copy snapshot of older versions)."""
    manifest = manifest_path(snapshot)
    if not manifest.exists():
        return set()
    return {p["file"] for p in json.loads(manifest.read_text(encoding="utf-8"))["parts"]}


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
