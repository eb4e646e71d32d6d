"""The GX-on-DuckDB adapter: fails loudly when Great Expectations or duckdb-engine change.

If ``test_upstream_sql_datasource_still_breaks_on_duckdb`` starts failing, GX fixed the
upstream problem (issues #10738 / #11579, PR #12084): retire the adapter instead of
pinning a new version.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Any

import duckdb
import duckdb_engine
import great_expectations as gx
import pytest
import sqlalchemy as sa

from dwatch.errors import ConfigError
from dwatch.pseudonym import TIN_RE
from dwatch.validate import gx_duckdb
from dwatch.validate.gx_duckdb import (
    TESTED_DUCKDB_ENGINE_VERSIONS,
    TESTED_GX_VERSIONS,
    check_versions,
    duckdb_datasource,
    make_context,
)
from dwatch.validate.suites import re2_tin_pattern


def _run(context: Any, con: duckdb.DuckDBPyConnection, expectations: list[Any]) -> list[Any]:
    with duckdb_datasource(context, con) as datasource:
        asset = datasource.add_query_asset(name="notes", query="SELECT * FROM notes")
        batch = asset.add_batch_definition_whole_table("all").get_batch()
        suite = gx.ExpectationSuite(name="adapter", expectations=expectations)
        return list(batch.validate(suite, result_format="SUMMARY").results)


@pytest.fixture
def notes() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE notes AS SELECT * FROM (VALUES"
        " (1, 'plain note', 'sftp'), (2, 'SSN 123-45-6789 inside text', 'sftp'),"
        " (3, NULL, 'fax'), (4, 'ein 12-3456789', 'pigeon')) v(id, body, channel)"
    )
    return con


def test_versions_are_the_tested_ones() -> None:
    # A GX or duckdb-engine upgrade lands here first: rerun this file, then extend the lists.
    assert gx.__version__ in TESTED_GX_VERSIONS
    assert duckdb_engine.__version__ in TESTED_DUCKDB_ENGINE_VERSIONS
    check_versions()


def test_untested_gx_version_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gx_duckdb.gx, "__version__", "9.9.9")
    with pytest.raises(ConfigError, match=r"great-expectations 9\.9\.9 is not a version"):
        check_versions()


def test_upstream_sql_datasource_still_breaks_on_duckdb(tmp_path: Path) -> None:
    db = tmp_path / "plain.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute("CREATE TABLE t AS SELECT range AS id FROM range(10)")
    context = gx.get_context(mode="ephemeral")
    datasource = context.data_sources.add_sql(name="plain", connection_string=f"duckdb:///{db}")
    batch = (
        datasource.add_table_asset(name="t", table_name="t")
        .add_batch_definition_whole_table("all")
        .get_batch()
    )
    result = batch.validate(gx.expectations.ExpectColumnValuesToNotBeNull(column="id"))
    assert result.success is False  # would be True on working upstream support
    assert "list index out of range" in str(result.exception_info)


def test_adapter_counts_rows(notes: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    results = _run(
        make_context(tmp_path / "docs"),
        notes,
        [
            gx.expectations.ExpectColumnValuesToNotBeNull(column="body"),
            gx.expectations.ExpectColumnValuesToBeInSet(
                column="channel", value_set=["sftp", "fax"]
            ),
            gx.expectations.ExpectColumnValuesToBeBetween(column="id", min_value=2),
        ],
    )
    assert [r.exception_info.get("raised_exception") for r in results] == [False] * 3
    assert [r.result["unexpected_count"] for r in results] == [1, 1, 1]
    assert [r.result["element_count"] for r in results] == [4, 4, 4]


def test_adapter_regex_is_a_search_not_a_full_match(
    notes: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    results = _run(
        make_context(tmp_path / "docs"),
        notes,
        [
            gx.expectations.ExpectColumnValuesToNotMatchRegex(
                column="body", regex=re2_tin_pattern()
            ),
            gx.expectations.ExpectColumnValuesToMatchRegex(column="body", regex="note"),
        ],
    )
    assert not any(r.exception_info.get("raised_exception") for r in results)
    # Two bodies hold a TIN somewhere inside: a full-match operator would find none.
    assert results[0].result["unexpected_count"] == 2
    assert results[1].result["unexpected_count"] == 2


@pytest.mark.parametrize(
    "text",
    [
        "123-45-6789",
        "ssn 123456789.",
        "EIN 12-3456789 on file",
        "a123-45-6789",
        "1234567890",
        "12-34567890",
        "call 555-1234",
        "(123 45 6789)",
        "x_123-45-6789_y",
        "",
    ],
)
def test_re2_tin_pattern_matches_like_tin_pattern(text: str) -> None:
    found_in_duckdb = duckdb.execute(
        "SELECT regexp_matches(?, ?)", [text, re2_tin_pattern()]
    ).fetchone()[0]
    assert found_in_duckdb == bool(TIN_RE.search(text))
    assert re.search(re2_tin_pattern(), text) is not None or not TIN_RE.search(text)


def test_context_has_analytics_off_and_never_calls_out(
    notes: duckdb.DuckDBPyConnection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    attempts: list[object] = []

    def refuse(self: socket.socket, address: object) -> None:
        attempts.append(address)
        raise OSError("network unavailable in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    context = make_context(tmp_path / "docs")
    assert context.config.analytics_enabled is False
    assert context.config.progress_bars.globally is False
    import os

    assert os.environ["GX_ANALYTICS_ENABLED"] == "false"
    results = _run(context, notes, [gx.expectations.ExpectColumnValuesToNotBeNull(column="id")])
    context.build_data_docs()
    assert results[0].success is True
    assert attempts == []


def test_datasource_closes_its_cursor(notes: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    context = make_context(tmp_path / "docs")
    _run(context, notes, [gx.expectations.ExpectColumnValuesToNotBeNull(column="id")])
    # The caller's connection is still usable after GX let go of its cursor.
    assert notes.execute("SELECT count(*) FROM notes").fetchone()[0] == 4


def test_query_expectation_runs_its_query_once(
    notes: duckdb.DuckDBPyConnection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    statements: list[str] = []
    real = duckdb_engine.CursorWrapper.execute

    def spy(self: Any, statement: str, parameters: Any = None, context: Any = None) -> Any:
        statements.append(statement)
        return real(self, statement, parameters, context)

    monkeypatch.setattr(duckdb_engine.CursorWrapper, "execute", spy)
    query = "SELECT * FROM {batch} WHERE channel = 'pigeon'"
    [result] = _run(
        make_context(tmp_path / "docs"),
        notes,
        [gx_duckdb.ExpectQueryToReturnNoRows(unexpected_rows_query=query)],
    )
    assert result.success is False
    assert result.result["observed_value"] == 1
    # GX's own UnexpectedRowsExpectation runs it twice; if GX changes how the count is
    # computed, this (and the speed it buys) must be looked at again.
    assert sum("'pigeon'" in s for s in statements) == 1


def test_gx_reads_see_what_was_committed_since_its_last_read(
    notes: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    # The runner quarantines a batch's rows, then has GX judge the next batch: GX must not
    # see the moved rows (it once did, whenever no garbage collection had ended its snapshot).
    context = make_context(tmp_path / "docs")
    with duckdb_datasource(context, notes) as datasource:
        engine = datasource.get_execution_engine()
        count = sa.text("SELECT count(*) FROM notes")
        with engine.get_connection() as connection:
            before = connection.execute(count).scalar()
        notes.execute("DELETE FROM notes WHERE id = 4")
        with engine.get_connection() as connection:
            after = connection.execute(count).scalar()
        asset = datasource.add_query_asset(name="notes", query="SELECT * FROM notes")
        batch = asset.add_batch_definition_whole_table("all").get_batch()
        first = batch.validate(gx.expectations.ExpectTableRowCountToEqual(value=3))
        notes.execute("DELETE FROM notes WHERE id = 3")
        second = batch.validate(gx.expectations.ExpectTableRowCountToEqual(value=2))
    assert (before, after) == (4, 3)
    assert first.success and second.success, (first.result, second.result)
