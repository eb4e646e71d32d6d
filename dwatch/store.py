"""The DuckDB store: connection, numbered migrations, and the write lock.

The store is the product's public interface: analysts query its tables and views directly.
Every schema change is a numbered migration in ``dwatch/migrations`` (``NNNN_name.sql`` or
``NNNN_name.py`` defining ``apply(con)``), applied once, in order, each in its own
transaction, and recorded in ``schema_migrations``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb

from dwatch.errors import StoreError
from dwatch.masking import register as register_masking
from dwatch.memory import memory_budget

DEFAULT_DB = Path("data") / "dwatch.duckdb"
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def default_db_path() -> Path:
    return Path(os.environ.get("DWATCH_DB") or DEFAULT_DB)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def discover_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found: dict[int, Migration] = {}
    for path in sorted(directory.iterdir()):
        if path.suffix not in {".sql", ".py"} or path.name.startswith("_"):
            continue
        head, _, rest = path.stem.partition("_")
        if not head.isdigit():
            raise StoreError(
                f"migration file name must start with a number: {path.name}",
                where=str(path),
                fix="rename it NNNN_description.sql",
            )
        version = int(head)
        if version in found:
            raise StoreError(
                f"two migrations share number {version}: {found[version].path.name}, {path.name}",
                where=str(directory),
                fix="give each migration its own number",
            )
        found[version] = Migration(version, rest, path)
    return [found[v] for v in sorted(found)]


def _apply_one(con: duckdb.DuckDBPyConnection, migration: Migration) -> None:
    if migration.path.suffix == ".sql":
        con.execute(migration.path.read_text(encoding="utf-8"))
        return
    spec = importlib.util.spec_from_file_location(
        f"dwatch_migration_{migration.version}", migration.path
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.apply(con)


def migrate(con: duckdb.DuckDBPyConnection) -> list[int]:
    """Apply pending migrations; returns the versions applied."""
    con.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, name VARCHAR, checksum VARCHAR,"
        " applied_at TIMESTAMPTZ DEFAULT now())"
    )
    done = {row[0] for row in con.execute("SELECT version FROM schema_migrations").fetchall()}
    applied = []
    for m in discover_migrations():
        if m.version in done:
            continue
        con.execute("BEGIN TRANSACTION")
        try:
            _apply_one(con, m)
            con.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES (?, ?, ?)",
                [m.version, m.name, m.checksum],
            )
            con.execute("COMMIT")
        except Exception as exc:
            con.execute("ROLLBACK")
            raise StoreError(
                f"migration {m.version} ({m.name}) failed: {exc}",
                where=str(m.path),
                fix="fix the migration; the store was left at the previous version",
            ) from exc
        applied.append(m.version)
    return applied


def connect(
    db_path: Path | str | None = None,
    *,
    read_only: bool = False,
    memory_limit: str | None = None,
    threads: int | None = None,
) -> duckdb.DuckDBPyConnection:
    """Open the store (creating and migrating it unless read-only), session in UTC.

    The connection keeps to the run's memory budget (``DWATCH_MEMORY``, see
    :mod:`dwatch.memory`): DuckDB's share as ``memory_limit``, spilling to
    ``<store>.spill`` beside the store; ``memory_limit`` and ``threads`` override it."""
    path = Path(db_path) if db_path is not None else default_db_path()
    config: dict[str, str | int | bool] = dict(memory_budget().duckdb_config(path))
    if memory_limit:
        config["memory_limit"] = memory_limit
    if threads:
        config["threads"] = threads
    # Runs never fetch extensions: everything needed is in the wheel.
    config["autoinstall_known_extensions"] = False
    config["autoload_known_extensions"] = False
    if str(path) != ":memory:" and not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        con = duckdb.connect(str(path), read_only=read_only, config=config)
    except duckdb.Error as exc:
        hint = (
            "another process holds the write lock; analysts should open the published snapshot"
            " (see docs/analyst-guide.md)"
            if "lock" in str(exc).lower()
            else "check the path and permissions"
        )
        raise StoreError(f"cannot open the store: {exc}", where=str(path), fix=hint) from exc
    con.execute("SET TimeZone = 'UTC'")
    register_masking(con)  # the masking policy's SQL functions (dwatch.masking)
    if not read_only:
        migrate(con)
    return con


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """One all-or-nothing unit of work: commit on success, roll back on any error."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    else:
        con.execute("COMMIT")
