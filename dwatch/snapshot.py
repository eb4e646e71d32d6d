"""Read-only snapshots for analysts: the single-writer rule without anyone waiting.

DuckDB lets one process write a database file. The pipeline is that writer for the working
store (``data/dwatch.duckdb``); analysts never open it. After each successful run the
pipeline publishes an immutable copy and switches a pointer to it:

``<snapshots>/parts/<table>/*.parquet``
    the tables that grow with the logs (``dwatch.snapshot_parts.PARTITIONED``: events,
    request items, the accounting index) as immutable Parquet files of rowid ranges, written
    once: a first publish in a few large COPYs, later ones the rows appended since and the
    ranges whose rows changed (quarantine after load, a citation re-read, the index re-sorted),
    found from narrow columns; files no kept snapshot lists are deleted after a grace day.
``<snapshots>/dwatch-<run_id>.duckdb``
    a small DuckDB file: the store's schema (tables, views, macros), every other table's
    rows, and in place of each partitioned table a view of the same name and columns over
    the partition files this run lists (``dwatch-<run_id>.parts.json`` names them). It is
    written while the pipeline still holds the write lock (so nothing changes underneath),
    under a temporary name, verified by opening it read-only and reading every view, then
    renamed into place and made read-only (0444). So a run writes what changed, not
    history: the new rows' and changed ranges' files and the small tables. The file is written in the
    oldest DuckDB storage format that holds the data (attached with ``STORAGE_VERSION``),
    from ``DWATCH_SNAPSHOT_STORAGE`` (default ``v1.0.0``) up, so analysts' clients, which
    lag the engine, open it: storage ``v1.0.0`` opens in every DuckDB client from 1.0 on.
    ``latest`` writes the engine's own format. The views name their files by absolute
    path: a snapshot folder that moves needs one run to publish again.
``<snapshots>/current.duckdb``
    a symbolic link to the latest snapshot, replaced atomically (``os.replace`` of a new
    link), so an analyst opening it gets either the old or the new snapshot, never half.
``<snapshots>/current.json``
    the same pointer as data (run id, file, time), for tools and for systems without links.

An analyst session keeps reading the snapshot it opened (a new run writes a new file and
new partition files, never changing one a snapshot lists; on POSIX a file deleted while open
stays readable until closed, and a partition file outlives the last snapshot listing it by
``GRACE_SECONDS``), so it never blocks a run and never sees a half-written state; reopening
``current.duckdb`` shows the newer run. Older snapshots are pruned beyond ``keep``; the
current one never is.
"""

from __future__ import annotations

import json
import os
import stat
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from dwatch.errors import StoreError
from dwatch.memory import memory_budget
from dwatch.snapshot_parts import (
    Part,
    PartsWritten,
    collect_garbage,
    listed_files,
    manifest_path,
    present_tables,
    read_manifest,
    view_sql,
    write_manifest,
    write_parts,
)

STORAGE_ENV = "DWATCH_SNAPSHOT_STORAGE"
DEFAULT_STORAGE = "v1.0.0"
LATEST = "latest"
# Storage formats tried oldest first; the first one that holds the data is written. 1.0 is
# the first release whose format later clients keep reading.
STORAGE_VERSIONS = ("v1.0.0", "v1.1.0", "v1.2.0", "v1.3.0", "v1.4.0", "v1.5.0")
CURRENT = "current.duckdb"
# What analysts query (docs/analyst-guide.md), exported by `dwatch export --parquet`.
ANALYST_VIEWS = (
    "open_cases", "cases", "case_alerts", "alerts", "case_subjects", "case_subject_counts",
    "case_evidence_events", "disclosures_by_recipient_day", "authority_usage_by_recipient",
    "registry_recipient_resolution", "registry_court_orders", "registry_order_status",
    "coverage_gaps", "run_history", "disclosure_events", "quarantine",
)  # fmt: skip
POINTER = "current.json"
PREFIX = "dwatch-"
# How long a partition file no kept snapshot lists stays for sessions still reading a pruned
# snapshot (an analyst's open session outlives at most a day's runs).
GRACE_SECONDS = 24 * 3600.0


def default_snapshot_dir(db_path: Path | str) -> Path:
    """``$DWATCH_SNAPSHOT_DIR``, else ``snapshots/`` next to the store."""
    env = os.environ.get("DWATCH_SNAPSHOT_DIR")
    return Path(env) if env else Path(db_path).resolve().parent / "snapshots"


def snapshot_name(run_id: str) -> str:
    return f"{PREFIX}{run_id}.duckdb"


@dataclass(frozen=True)
class Published:
    run_id: str
    path: Path
    current: Path
    pruned: list[Path]
    bytes: int
    storage_version: str = LATEST
    parts_written: int = 0  # Parquet partitions this publish wrote (new or changed batches)
    parts_bytes_written: int = 0
    parts_listed: int = 0  # partitions the snapshot's views read
    segments: tuple[Part, ...] = ()  # what the views list (and ranges left with no rows)


def storage_ladder(setting: str | None = None) -> list[str]:
    """Storage versions to try, oldest first, from ``setting`` (or the environment) up;
    empty for ``latest`` (a byte copy in the engine's format)."""
    chosen = setting or os.environ.get(STORAGE_ENV) or DEFAULT_STORAGE
    if chosen == LATEST:
        return []
    if chosen not in STORAGE_VERSIONS:
        raise StoreError(
            f"unknown snapshot storage version {chosen!r}",
            where=STORAGE_ENV,
            fix=f"use one of {[*STORAGE_VERSIONS, LATEST]}",
        )
    return list(STORAGE_VERSIONS[STORAGE_VERSIONS.index(chosen) :])


# The detectors' and ingest's kept working state: rebuilt from the events whenever it is
# missing, never what an analyst queries. Copied whole each run it was most of a snapshot
# (rule_custody_events: 9.2M rows, 310 MB per snapshot, 24 s of a 1% run's publish at 10M).
WORK_STATE = frozenset(
    {
        "rule_state_batches",
        "rule_log_breaks",
        "rule_log_tail",
        "rule_log_behind",
        "rule_log_sizes",
        "rule_state",
        "rule_recon_sides",
        "rule_custody_events",
        "rule_chain_rows",
        "ingest_key_ranges",
        "ingest_key_classes",
        "ingest_key_hashes",
        "validation_state_batches",
        "validation_source_state",
        "validation_sequence_ranges",
        "partition_rewrites",
    }
)


def _copy_tables(con: duckdb.DuckDBPyConnection, snapshot_dir: Path, parts: list[Part]) -> None:
    """Into the attached ``dw_snapshot``: the store's schema, its small tables' rows, and
    views over ``parts`` in place of the partitioned tables; no kept working state."""
    database = con.execute("SELECT current_database()").fetchone()[0]  # type: ignore[index]
    con.execute(f'COPY FROM DATABASE "{database}" TO dw_snapshot (SCHEMA)')
    partitioned = {p.table for p in parts}
    tables = con.execute(
        "SELECT schema_name, table_name FROM duckdb_tables()"
        " WHERE database_name = current_database() AND NOT temporary ORDER BY ALL"
    ).fetchall()
    for schema, table in tables:
        name = f'"{schema}"."{table}"'
        if schema == "main" and table in WORK_STATE:
            con.execute(f"DROP TABLE dw_snapshot.{name}")
        elif schema == "main" and table in partitioned:
            con.execute(f"DROP TABLE dw_snapshot.{name}")
            con.execute(f"CREATE VIEW dw_snapshot.{name} AS {view_sql(snapshot_dir, table, parts)}")
        else:
            con.execute(f"INSERT INTO dw_snapshot.{name} SELECT * FROM {name}")


def _write_copy(
    con: duckdb.DuckDBPyConnection,
    snapshot_dir: Path,
    partial: Path,
    ladder: list[str],
    run_id: str,
) -> tuple[str, PartsWritten]:
    """Write the snapshot to ``partial`` in the oldest format of ``ladder`` that holds it,
    after the partitions it lists (new rows and changed segments only, against what the
    current snapshot's publish recorded)."""
    current = current_snapshot(snapshot_dir)
    previous = read_manifest(current) if current is not None else {}
    parts = write_parts(con, snapshot_dir, previous, run_id=run_id)
    # LATEST (and the last resort): the engine's own format.
    for version in [*ladder, LATEST]:
        partial.unlink(missing_ok=True)
        option = "" if version == LATEST else f" (STORAGE_VERSION '{version}')"
        try:
            con.execute(f"ATTACH '{partial}' AS dw_snapshot{option}")
            try:
                _copy_tables(con, snapshot_dir, parts.parts)
            finally:
                con.execute("DETACH DATABASE IF EXISTS dw_snapshot")
            return version, parts
        except duckdb.IOException:
            raise  # disk full or unwritable: no other format helps
        except duckdb.Error:
            if version == LATEST:
                raise
            continue  # a type or feature this format cannot hold: try the next one
    raise AssertionError("unreachable: the last format either returns or raises")


def publish_snapshot(
    con: duckdb.DuckDBPyConnection,
    db_path: Path | str,
    snapshot_dir: Path,
    run_id: str,
    *,
    keep: int = 3,
    storage_version: str | None = None,
) -> Published:
    """Publish the store (``con`` must be its only writer, idle) as a read-only snapshot, in
    the oldest storage format from ``storage_version`` (or $DWATCH_SNAPSHOT_STORAGE) up."""
    del db_path  # the store is read through ``con``; kept for callers' signature
    snapshot_dir = snapshot_dir.resolve()
    snapshot_dir.mkdir(parents=True, exist_ok=True)
    target = snapshot_dir / snapshot_name(run_id)
    partial = snapshot_dir / f".{target.name}.partial"
    ladder = storage_ladder(storage_version)
    try:
        written, parts = _write_copy(con, snapshot_dir, partial, ladder, run_id)
        with partial.open("rb") as fh:
            os.fsync(fh.fileno())
        _verify(partial, run_id)
        write_manifest(target, run_id, parts.parts, parts.state)
        if target.exists():  # a retried publish of the same run: replace our own file
            target.chmod(stat.S_IRUSR | stat.S_IWUSR)
        os.replace(partial, target)
        target.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
        current = switch_current(snapshot_dir, target, run_id, written)
    except (OSError, duckdb.Error) as exc:
        partial.unlink(missing_ok=True)
        raise StoreError(
            f"could not publish the analyst snapshot: {exc}",
            where=str(snapshot_dir),
            fix="check free space and permissions of the snapshot folder; the previous snapshot"
            " stays current and the next run publishes again",
        ) from exc
    pruned = prune(snapshot_dir, keep=keep)
    return Published(
        run_id,
        target,
        current,
        pruned,
        target.stat().st_size,
        written,
        parts_written=len(parts.written),
        parts_bytes_written=parts.bytes_written,
        parts_listed=sum(1 for p in parts.parts if p.file),
        segments=tuple(parts.parts),
    )


def _verify(path: Path, run_id: str) -> None:
    """The copy opens read-only and holds this run: otherwise it must not become current."""
    check = duckdb.connect(str(path), read_only=True, config=memory_budget().duckdb_config(path))
    try:
        found = check.execute("SELECT count(*) FROM runs WHERE run_id = ?", [run_id]).fetchone()
        for table in present_tables(check, kind="VIEW"):
            check.execute(f"SELECT count(*) FROM {table}").fetchone()  # every file opens
    finally:
        check.close()
    if not found or not found[0]:
        raise StoreError(f"snapshot copy lacks run {run_id}", where=str(path))


def switch_current(
    snapshot_dir: Path, target: Path, run_id: str, storage_version: str = LATEST
) -> Path:
    """Point ``current.duckdb`` (link) and ``current.json`` at ``target``, each atomically."""
    link = snapshot_dir / CURRENT
    tmp_link = snapshot_dir / f".{CURRENT}.{os.getpid()}.tmp"
    tmp_link.unlink(missing_ok=True)
    os.symlink(target.name, tmp_link)  # relative: the folder can move as a whole
    os.replace(tmp_link, link)
    pointer = {
        "run_id": run_id,
        "snapshot": target.name,
        "path": str(target.resolve()),
        "storage_version": storage_version,
        "published_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    tmp_json = snapshot_dir / f".{POINTER}.{os.getpid()}.tmp"
    tmp_json.write_text(json.dumps(pointer, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp_json, snapshot_dir / POINTER)
    return link


def current_snapshot(snapshot_dir: Path) -> Path | None:
    """The snapshot analysts get now, or None before the first publish."""
    link = snapshot_dir / CURRENT
    if link.exists():
        return link.resolve()
    pointer = snapshot_dir / POINTER
    if pointer.exists():
        name = json.loads(pointer.read_text(encoding="utf-8"))["snapshot"]
        return snapshot_dir / name
    return None


def prune(
    snapshot_dir: Path,
    *,
    keep: int,
    grace_seconds: float = GRACE_SECONDS,
    now: float | None = None,
) -> list[Path]:
    """Delete snapshots beyond the newest ``keep`` (never the current one), then the
    partition files no snapshot left lists, once unlisted for ``grace_seconds``."""
    current = current_snapshot(snapshot_dir)
    # run ids start with a UTC timestamp, so names sort by age
    snapshots = sorted(snapshot_dir.glob(f"{PREFIX}*.duckdb"), reverse=True)
    removed = []
    for path in snapshots[max(keep, 1) :]:
        if current is not None and path.resolve() == current:
            continue
        path.chmod(stat.S_IRUSR | stat.S_IWUSR)
        path.unlink(missing_ok=True)
        manifest_path(path).unlink(missing_ok=True)
        removed.append(path)
    kept = [p for p in snapshots if p not in removed]
    listed = set().union(*(listed_files(p) for p in kept))
    collect_garbage(
        snapshot_dir,
        listed,
        now=time.time() if now is None else now,
        grace_seconds=grace_seconds,
    )
    return removed


def open_snapshot(snapshot_dir: Path) -> duckdb.DuckDBPyConnection:
    """A read-only connection to the current snapshot (what analysts should use)."""
    current = current_snapshot(snapshot_dir)
    if current is None:
        raise StoreError(
            "no snapshot has been published yet",
            where=str(snapshot_dir),
            fix="run the pipeline once (dwatch run) to publish the first snapshot",
        )
    con = duckdb.connect(
        str(current), read_only=True, config=memory_budget().duckdb_config(current)
    )
    con.execute("SET TimeZone = 'UTC'")
    return con


def export_parquet(con: duckdb.DuckDBPyConnection, out_dir: Path) -> list[Path]:
    """Write each analyst view to ``out_dir/<view>.parquet`` (for tools without DuckDB)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for view in ANALYST_VIEWS:
        target = out_dir / f"{view}.parquet"
        try:
            con.execute(f"COPY (SELECT * FROM {view}) TO '{target}' (FORMAT parquet)")
        except duckdb.Error as exc:
            raise StoreError(
                f"could not export {view}: {str(exc).splitlines()[0]}",
                where=str(target),
                fix="check the folder is writable and the snapshot is from this version",
            ) from exc
        written.append(target)
    return written
