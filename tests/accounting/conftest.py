"""The seeded store of accounting_seed as a fixture."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from accounting_seed import load


@pytest.fixture
def loaded(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> duckdb.DuckDBPyConnection:
    load(con, tmp_path / "logs", "ledger", "receipts", "items")
    return con
