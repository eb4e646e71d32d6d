"""Fixtures for the ML tests: a store holding the labelled synthetic events (ml_synthetic)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import polars as pl
import pytest
from ml_synthetic import Injected, build_events, load_events

from dwatch.store import connect


@pytest.fixture(scope="session")
def synthetic() -> tuple[pl.DataFrame, Injected]:
    return build_events()


@pytest.fixture
def ml_store(
    tmp_path: Path, synthetic: tuple[pl.DataFrame, Injected]
) -> Iterator[tuple[duckdb.DuckDBPyConnection, Injected, Path]]:
    """A store holding the synthetic events, its labels, and a models folder."""
    events, injected = synthetic
    con = connect(tmp_path / "ml.duckdb")
    load_events(con, events)
    yield con, injected, tmp_path / "models"
    con.close()
