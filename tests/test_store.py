from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from dwatch.errors import StoreError
from dwatch.schema import load_schema
from dwatch.store import connect, discover_migrations


def test_migrations_create_canonical_tables_from_schema(con: duckdb.DuckDBPyConnection) -> None:
    schema = load_schema()
    for table in schema.tables.values():
        cols = [r[0] for r in con.execute(f"DESCRIBE {table.name}").fetchall()]
        assert cols[: len(table.fields)] == table.names


def test_migrations_are_recorded_once(db_path: Path) -> None:
    connect(db_path).close()
    con = connect(db_path)
    versions = [
        r[0] for r in con.execute("SELECT version FROM schema_migrations ORDER BY 1").fetchall()
    ]
    assert versions == [m.version for m in discover_migrations()]


def test_session_runs_in_utc(con: duckdb.DuckDBPyConnection) -> None:
    assert con.execute("SELECT current_setting('TimeZone')").fetchone() == ("UTC",)


def test_second_writer_gets_a_clear_error(db_path: Path) -> None:
    import subprocess
    import sys

    holder = connect(db_path)
    code = f"from dwatch.store import connect\nconnect({str(db_path)!r})\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    holder.close()
    assert proc.returncode != 0
    assert "snapshot" in proc.stderr and str(db_path) in proc.stderr


def test_duplicate_migration_numbers_are_refused(tmp_path: Path) -> None:
    (tmp_path / "0001_a.sql").write_text("SELECT 1")
    (tmp_path / "0001_b.sql").write_text("SELECT 1")
    with pytest.raises(StoreError, match="two migrations share number 1"):
        discover_migrations(tmp_path)
