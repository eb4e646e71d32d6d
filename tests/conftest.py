"""Shared fixtures: an isolated store per test and a fixed pseudonym key."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from dwatch.store import connect

TEST_PSEUDONYM_KEY = "test-key-not-secret-0123456789abcdef"

# Module- and session-scoped fixtures run pipelines before any function fixture sets the
# environment: without this the canary's run left its Data Docs to a background process that
# deleted a pending file while the test read the folder (a race seen on a loaded machine).
os.environ["DWATCH_DATA_DOCS"] = "inline"


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DWATCH_PSEUDONYM_KEY", TEST_PSEUDONYM_KEY)
    monkeypatch.setenv("DWATCH_DB", str(tmp_path / "store.duckdb"))
    # A run's Data Docs are built before it returns: no process outlives a test's folder.
    monkeypatch.setenv("DWATCH_DATA_DOCS", "inline")


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "store.duckdb"


@pytest.fixture
def con(db_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = connect(db_path)
    yield connection
    connection.close()
