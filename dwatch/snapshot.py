"""Read-only snapshots for analysts: the single-writer rule without anyone waiting.

DuckDB lets one process write a database file. The pipeline is that writer for the working
store (``data/dwatch.duckdb``); analysts never open it. After each successful run the
pipeline publishes an immutable copy and switches a pointer to it:

``<snapshots>/dwatch-<run_id>.duckdb``
    a byte copy of the store taken right after a CHECKPOINT while the pipeline still holds
    the write lock (so nothing changes underneath), written under a temporary name,
    verified by opening it read-only, then renamed into place and made read-only (0444).
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

CURRENT = "current.duckdb"
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


def publish_snapshot(
    con: duckdb.DuckDBPyConnection,
    db_path: Path | str,
    snapshot_dir: Path,
    run_id: str,
    *,
    keep: int = 3,
) -> Published:
    """Copy the store (``con`` must be its only writer, idle) to a read-only snapshot."""
    source = Path(db_path)
    snapshot_dir.mkdir(parents=True, exist_ok=True)
    target = snapshot_dir / snapshot_name(run_id)
    partial = snapshot_dir / f".{target.name}.partial"
    try:
        # Everything committed is now in the main file and the WAL is empty; we keep the
        # write lock, so no other process can change the file while it is copied.
        con.execute("CHECKPOINT")
        shutil.copyfile(source, partial)
        with partial.open("rb") as fh:
            os.fsync(fh.fileno())
        _verify(partial, run_id)
        if target.exists():  # a retried publish of the same run: replace our own file
            target.chmod(stat.S_IRUSR | stat.S_IWUSR)
        os.replace(partial, target)
        target.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
        current = switch_current(snapshot_dir, target, run_id)
    except (OSError, duckdb.Error) as exc:
        partial.unlink(missing_ok=True)
        raise StoreError(
            f"could not publish the analyst snapshot: {exc}",
            where=str(snapshot_dir),
            fix="check free space and permissions of the snapshot folder; the previous snapshot"
            " stays current and the next run publishes again",
        ) from exc
    pruned = prune(snapshot_dir, keep=keep)
    return Published(run_id, target, current, pruned, target.stat().st_size)


def _verify(path: Path, run_id: str) -> None:
    """The copy opens read-only and holds this run: otherwise it must not become current."""
    check = duckdb.connect(str(path), read_only=True)
    try:
        found = check.execute("SELECT count(*) FROM runs WHERE run_id = ?", [run_id]).fetchone()
    finally:
        check.close()
    if not found or not found[0]:
        raise StoreError(f"snapshot copy lacks run {run_id}", where=str(path))


def switch_current(snapshot_dir: Path, target: Path, run_id: str) -> Path:
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
