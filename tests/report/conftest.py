"""Fixtures for report tests: a store filled with realistic alerts, and the stand-in registry."""

from __future__ import annotations

from typing import Any

import duckdb
import pytest
from report_seed import seed_store, stand_in_registry

from dwatch.report.citations import CitationDirectory, directory_from_registry


@pytest.fixture
def directory() -> CitationDirectory:
    return directory_from_registry(stand_in_registry(), source="stand-in registry (tests)")


@pytest.fixture
def seeded(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    return seed_store(con)
