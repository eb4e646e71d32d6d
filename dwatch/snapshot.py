"""Read-only snapshots for analysts: the single-writer rule without anyone waiting.

DuckDB lets one process write a database file. The pipeline is that writer for the working
store (``data/dwatch.duckdb``); analysts never open it. After each successful run the
pipeline publishes an immutable copy and switches a pointer to it:

``<snapshots>/dwatch-<run_id>.duckdb``
    a copy of the store taken while the pipeline still holds the write lock (so nothing
    changes underneath), written under a temporary name, verified by opening it read-only,
    then renamed into place and made read-only (0444). It is written in the oldest DuckDB
    storage format that holds the data (``COPY FROM DATABASE`` into a database attached
    with ``STORAGE_VERSION``), from ``DWATCH_SNAPSHOT_STORAGE`` (default ``v1.0.0``) up,
    so analysts' clients, which lag the engine, open it: storage ``v1.0.0`` opens in every
    DuckDB client from 1.0 on. ``latest`` is a byte copy in the engine's own format.
``<snapshots>/current.duckdb``
    a symbolic link to the latest snapshot, replaced atomically (``os.replace`` of a new
    link), so an analyst opening it gets either the old or the new snapshot, never half.
``<snapshots>/current.json``
    the same pointer as data (run id, file, time), for tools and for systems without links.

An analyst session keeps reading the snapshot it opened (a new run writes a new file, and
on POSIX a file deleted while open stays readable until closed), so it never blocks a run
and never sees a half-written state; reopening ``current.duckdb`` shows the newer run.
Older snapshots are pruned beyond ``keep``; the current one never is.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from dwatch.errors import StoreError

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


def _write_copy(
    con: duckdb.DuckDBPyConnection, source: Path, partial: Path, ladder: list[str]
) -> str:
    """Write the store to ``partial`` in the oldest format of ``ladder`` that holds it."""
    # Everything committed is now in the main file and the WAL is empty; we keep the
    # write lock, so no other process can change the file while it is copied.
    con.execute("CHECKPOINT")
    database = con.execute("SELECT current_database()").fetchone()[0]  # type: ignore[index]
    for version in ladder:
        partial.unlink(missing_ok=True)
        try:
            con.execute(f"ATTACH '{partial}' AS dw_snapshot (STORAGE_VERSION '{version}')")
            try:
                con.execute(f'COPY FROM DATABASE "{database}" TO dw_snapshot')
            finally:
                con.execute("DETACH DATABASE IF EXISTS dw_snapshot")
            return version
        except duckdb.IOException:
            raise  # disk full or unwritable: no other format helps
        except duckdb.Error:
            continue  # a type or feature this format cannot hold: try the next one
    partial.unlink(missing_ok=True)
    shutil.copyfile(source, partial)
    return LATEST


def publish_snapshot(
    con: duckdb.DuckDBPyConnection,
    db_path: Path | str,
    snapshot_dir: Path,
    run_id: str,
    *,
    keep: int = 3,
    storage_version: str | None = None,
) -> Published:
    """Copy the store (``con`` must be its only writer, idle) to a read-only snapshot, in
    the oldest storage format from ``storage_version`` (or $DWATCH_SNAPSHOT_STORAGE) up."""
    source = Path(db_path)
    snapshot_dir.mkdir(parents=True, exist_ok=True)
    target = snapshot_dir / snapshot_name(run_id)
    partial = snapshot_dir / f".{target.name}.partial"
    ladder = storage_ladder(storage_version)
    try:
        written = _write_copy(con, source, partial, ladder)
        with partial.open("rb") as fh:
            os.fsync(fh.fileno())
        _verify(partial, run_id)
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
    return Published(run_id, target, current, pruned, target.stat().st_size, written)


def _verify(path: Path, run_id: str) -> None:
    """The copy opens read-only and holds this run: otherwise it must not become current."""
    check = duckdb.connect(str(path), read_only=True)
    try:
        found = check.execute("SELECT count(*) FROM runs WHERE run_id = ?", [run_id]).fetchone()
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


def prune(snapshot_dir: Path, *, keep: int) -> list[Path]:
    """Delete snapshots beyond the newest ``keep``; never the current one."""
    current = current_snapshot(snapshot_dir)
    # run ids start with a UTC timestamp, so names sort by age
    snapshots = sorted(snapshot_dir.glob(f"{PREFIX}*.duckdb"), reverse=True)
    removed = []
    for path in snapshots[max(keep, 1) :]:
        if current is not None and path.resolve() == current:
            continue
        path.chmod(stat.S_IRUSR | stat.S_IWUSR)
        path.unlink(missing_ok=True)
        removed.append(path)
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
    con = duckdb.connect(str(current), read_only=True)
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
