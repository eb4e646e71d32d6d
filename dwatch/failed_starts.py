"""Runs that could not open the store: recorded beside it, then moved into ``runs``.

A run that cannot open the store (another process holds the write lock, a migration
fails) cannot write its row in the runs table. The attempt goes to a JSON Lines file next
to the store instead, and the next run that opens the store moves each line into ``runs``
(status failed, the error kept) and empties the file, so the runs table ends up holding
every attempt.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from dwatch.errors import StoreError
from dwatch.masking import mask_path


class RunNotStarted(StoreError):
    """The store could not be opened; ``recorded_in`` is where the attempt was written."""

    def __init__(self, cause: StoreError, recorded_in: Path | None) -> None:
        super().__init__(cause.what, where=cause.where, fix=cause.fix)
        self.recorded_in = recorded_in

    def where_recorded(self) -> str:
        if self.recorded_in is None:
            return "the attempt could not be recorded anywhere (the folder is not writable)"
        return (
            f"the attempt is not in the runs table (the store could not be opened); it is"
            f" recorded in {self.recorded_in}, and the next run that opens the store moves it"
            " into the runs table with status failed"
        )


def failed_starts_path(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".failed-starts.jsonl")


def record_failed_start(
    db_path: Path,
    run_id: str,
    trigger: str,
    started: datetime,
    error: StoreError,
    key: bytes | None,
) -> Path | None:
    """Append the attempt to the file beside the store; None if that cannot be written.

    The error names the store's path: masked like every stored file name."""
    path = failed_starts_path(db_path)
    line = {
        "run_id": run_id,
        "trigger": trigger,
        "started_at": started.isoformat(),
        "failed_at": datetime.now(UTC).isoformat(),
        "error": mask_path(f"the run could not start: {error.what}", key),
    }
    try:
        with path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(line) + "\n")
    except OSError:
        return None
    return path


def import_failed_starts(con: duckdb.DuckDBPyConnection, db_path: Path) -> list[str]:
    """Move recorded attempts into ``runs`` (caller's transaction); returns their run ids.

    The file is emptied by ``forget_failed_starts`` once the transaction has committed; a
    line seen twice is inserted once (run_id is the key)."""
    path = failed_starts_path(db_path)
    if not path.exists():
        return []
    attempts = []
    for text in path.read_text(encoding="utf-8").splitlines():
        try:
            attempts.append(json.loads(text))
        except json.JSONDecodeError:
            continue  # a line cut short by a crash while it was written
    for a in attempts:
        con.execute(
            "INSERT INTO runs (run_id, trigger, status, started_at, finished_at, error)"
            " VALUES (?, ?, 'failed', ?, ?, ?) ON CONFLICT (run_id) DO NOTHING",
            [a["run_id"], a["trigger"], a["started_at"], a["failed_at"], a["error"]],
        )
    return [a["run_id"] for a in attempts]


def forget_failed_starts(db_path: Path) -> None:
    failed_starts_path(db_path).unlink(missing_ok=True)
