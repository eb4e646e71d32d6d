"""DWATCH_MEMORY: one budget that every store connection and the ML steps keep to."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from dwatch.errors import ConfigError
from dwatch.memory import (
    DEFAULT_CAP,
    DEFAULT_SHARE,
    MEMORY_ENV,
    THREADS_ENV,
    machine_memory,
    memory_budget,
    parse_memory,
)
from dwatch.store import connect


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4GB", 4 * 10**9),
        ("4 gb", 4 * 10**9),
        ("512MB", 512 * 10**6),
        ("1.5GiB", int(1.5 * 2**30)),
        ("3000000000", 3_000_000_000),
        ("25%", 25 * 2**30 // 100),
    ],
)
def test_sizes_and_shares_are_read(text: str, expected: int) -> None:
    assert parse_memory(text, machine=2**30) == expected


@pytest.mark.parametrize("text", ["lots", "4 GBs", "-1GB", "0%", "150%", "10MB", "4GB;DROP"])
def test_a_bad_value_names_the_variable_and_the_fix(text: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_memory(text, machine=16 * 2**30)
    message = str(err.value)
    assert MEMORY_ENV in message
    assert "fix:" in message and "4GB" in message


def test_default_is_a_share_of_the_machine_with_a_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MEMORY_ENV, raising=False)
    budget = memory_budget()
    expected = min(machine_memory() * DEFAULT_SHARE, DEFAULT_CAP)
    assert budget.total_bytes == pytest.approx(expected, rel=0.01)
    assert budget.duckdb_bytes + budget.python_bytes == budget.total_bytes
    assert "default" in budget.describe()


def test_rows_for_follows_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MEMORY_ENV, "1GiB")
    small = memory_budget().rows_for(1000)
    monkeypatch.setenv(MEMORY_ENV, "4GiB")
    large = memory_budget().rows_for(1000)
    assert large == pytest.approx(4 * small, rel=0.01)
    assert memory_budget().rows_for(10**12, floor=500) == 500


def test_every_store_connection_keeps_to_the_budget(
    monkeypatch: pytest.MonkeyPatch, db_path: Path
) -> None:
    monkeypatch.setenv(MEMORY_ENV, "2GiB")
    monkeypatch.setenv(THREADS_ENV, "1")
    con = connect(db_path)
    try:
        limit, spill, threads = con.execute(
            "SELECT current_setting('memory_limit'), current_setting('temp_directory'),"
            " current_setting('threads')"
        ).fetchone()
    finally:
        con.close()
    assert limit == "1.0 GiB"  # DuckDB's half of 2 GiB
    assert Path(spill).parent == db_path.parent  # spill stays beside the store
    assert threads == 1
    read_only = connect(db_path, read_only=True)
    try:
        assert read_only.execute("SELECT current_setting('memory_limit')").fetchone() == (
            "1.0 GiB",
        )
    finally:
        read_only.close()


def test_a_query_larger_than_the_budget_spills_beside_the_store(
    monkeypatch: pytest.MonkeyPatch, db_path: Path
) -> None:
    """A sort bigger than DuckDB's share finishes (it spills) instead of failing."""
    monkeypatch.setenv(MEMORY_ENV, "256MiB")
    monkeypatch.setenv(THREADS_ENV, "1")
    con = connect(db_path)
    try:
        count = con.execute(
            "SELECT count(*) FROM (SELECT range AS n, md5(range::VARCHAR) AS h"
            " FROM range(3000000) ORDER BY h)"
        ).fetchone()[0]
    finally:
        con.close()
    assert count == 3_000_000


def test_a_bad_budget_stops_the_command_with_the_fix(
    monkeypatch: pytest.MonkeyPatch, db_path: Path
) -> None:
    from dwatch.cli import main

    monkeypatch.setenv(MEMORY_ENV, "plenty")
    result = CliRunner().invoke(main, ["--db", str(db_path), "alerts", "list"])
    assert result.exit_code != 0
    assert MEMORY_ENV in result.output and "fix:" in result.output
    with pytest.raises(ConfigError):
        connect(db_path)


@pytest.mark.parametrize(
    ("machine", "expected"),
    [(4 * 2**30, int(4 * 2**30 * DEFAULT_SHARE)), (64 * 2**30, DEFAULT_CAP)],
)
def test_the_default_is_capped_on_a_large_machine_only(
    monkeypatch: pytest.MonkeyPatch, machine: int, expected: int
) -> None:
    """A small machine gets its share; a large one no more than the cap, so a run's peak
    does not grow with the machine (nor, the steps keeping to it, with the store)."""
    monkeypatch.delenv(MEMORY_ENV, raising=False)
    monkeypatch.setattr("dwatch.memory.machine_memory", lambda: machine)
    budget = memory_budget()
    assert budget.total_bytes == expected
    assert ("at most" in budget.describe()) and "default" in budget.describe()
