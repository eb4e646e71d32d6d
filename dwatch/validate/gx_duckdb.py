"""Great Expectations on the DuckDB store: the one adapter module, pinned to tested GX versions.

Why an adapter: GX 1.x's SQL datasource does not work on DuckDB through duckdb-engine
(upstream GX issues #10738 and #11579, https://github.com/fivetran/great_expectations/issues/10738
and .../issues/11579; a native DuckDB engine is open as PR #12084). Two things break:

1. Every expectation fails with "list index out of range": GX's ``get_connection`` returns
   the connection to the pool (which rolls back) before the result is fetched, and
   duckdb-engine's cursor *is* the connection, so the pending result is gone. Fix: keep one
   SQLAlchemy connection open for the engine's life (as GX already does for SQLite).
2. Regex expectations are refused ("Regex is not supported for dialect duckdb"): GX picks
   the regex SQL by ``dialect_module`` and knows none for duckdb. duckdb-engine is built on
   the PostgreSQL dialect and DuckDB's ``~`` / ``!~`` are Postgres' partial-match regex
   operators, so the adapter gives GX the PostgreSQL module. tests/validate/test_validate_gx_duckdb.py
   pins both behaviours (a TIN inside text must be found, not only a whole-value match).

GX reads the store through a cursor of the caller's DuckDB connection (same database, no
second file handle, nothing copied out of DuckDB). That cursor runs without transactions of
its own (``_ReadCommitted``): SQLAlchemy would otherwise open one on the first read and keep
its snapshot until a pool reset, which came when the garbage collector happened to finalize an
old engine; a batch validated after an earlier batch's rows left for quarantine then saw those
rows still there (a duplicate that no longer existed, now and then). One more piece, for speed rather than
correctness: ``ExpectQueryToReturnNoRows`` is GX's UnexpectedRowsExpectation without the
second run of its query (see the class).

Measured on this machine (2 cores), five expectations (not null, in set, between, TIN
regex, timestamp between), same 1M rows, same counts from both routes:
  python -m benchmarks validate -- --rows 1000000 --compare-pandas
                                       idle machine            under load (avg ~10)
    (a) this adapter, GX SQL route:    0.21 s, RSS +10 MB      1.42 s, RSS +9 MB
    (b) batch handed to GX as pandas:  2.26 s, RSS +377 MB     8.08 s, RSS +373 MB
        (of which DuckDB -> pandas)    0.63 s                  2.71 s
  first trial, 1M rows with 9 columns incl. lists: (a) 0.31 s, (b) 23.2 s and +1.3 GB RSS
Hence (a). Since issue 18 the validation run itself evaluates every check as set-wise
DuckDB SQL over all new batches (dwatch.validate.setwise) and hands GX the suites and the
verdicts for its records and Data Docs; this adapter stays for running a suite through GX
directly (the tests above pin it) and for ``--compare-pandas``.

When GX is upgraded: run tests/validate/test_validate_gx_duckdb.py, then add the version to
TESTED_GX_VERSIONS. An untested version is refused at run time with that instruction.
"""

from __future__ import annotations

import uuid
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import duckdb
import duckdb_engine
import great_expectations as gx
import sqlalchemy as sa
from great_expectations.data_context.types.base import (
    DataContextConfig,
    InMemoryStoreBackendDefaults,
    ProgressBarsConfig,
)
from great_expectations.datasource.fluent import SQLDatasource
from great_expectations.execution_engine import SqlAlchemyExecutionEngine
from great_expectations.expectations.core.unexpected_rows_expectation import (
    UnexpectedRowsExpectation,
)
from sqlalchemy.dialects import postgresql

from dwatch.errors import ConfigError

if TYPE_CHECKING:
    from great_expectations.data_context import AbstractDataContext

TESTED_GX_VERSIONS: tuple[str, ...] = ("1.24.1",)
TESTED_DUCKDB_ENGINE_VERSIONS: tuple[str, ...] = ("0.17.0",)
DOCS_SITE = "dwatch_validation"


def check_versions() -> None:
    """Refuse GX / duckdb-engine versions the adapter was not tested with."""
    found = {
        "great-expectations": (gx.__version__, TESTED_GX_VERSIONS),
        "duckdb-engine": (duckdb_engine.__version__, TESTED_DUCKDB_ENGINE_VERSIONS),
    }
    for package, (version, tested) in found.items():
        if version not in tested:
            raise ConfigError(
                f"{package} {version} is not a version the DuckDB adapter was tested with "
                f"({', '.join(tested)})",
                where=__file__,
                fix="run .venv/bin/pytest tests/validate/test_validate_gx_duckdb.py; when it passes, add "
                "the version to TESTED_GX_VERSIONS / TESTED_DUCKDB_ENGINE_VERSIONS",
            )


class DuckDBExecutionEngine(SqlAlchemyExecutionEngine):
    """GX's SQLAlchemy engine with one persistent connection and the Postgres regex path."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.dialect_module = postgresql

    @contextmanager
    def get_connection(self) -> Generator[sa.Connection, None, None]:
        if self._connection is None:
            self._connection = self.engine.connect()
        yield self._connection


class _ReadCommitted(duckdb_engine.ConnectionWrapper):
    """The cursor as SQLAlchemy sees it, in autocommit: each read sees what is committed now.

    duckdb-engine's ``do_begin`` starts a DuckDB transaction, and GX's one persistent
    connection never ends it, so every later read would share its first snapshot.
    """

    def begin(self) -> None:
        return None


class DuckDBDatasource(SQLDatasource):
    """A GX SQL datasource over an open DuckDB connection (type ``dwatch_duckdb``)."""

    type: Literal["dwatch_duckdb"] = "dwatch_duckdb"  # type: ignore[assignment]

    @property
    def execution_engine_type(self) -> type[SqlAlchemyExecutionEngine]:
        return DuckDBExecutionEngine


class ExpectQueryToReturnNoRows(UnexpectedRowsExpectation):
    """``UnexpectedRowsExpectation`` that runs its query once, for the count only.

    GX's own version runs the query twice (a count, and up to 200 rows for the result);
    on the store's cross-row checks (duplicates, sequence gaps, silence) that doubled the
    validation time. dwatch lists the rows itself, from the same query, when it fails.
    """

    metric_dependencies: ClassVar[tuple[str, ...]] = ("unexpected_rows_query.row_count",)

    def _validate(
        self,
        metrics: dict,
        runtime_configuration: dict | None = None,
        execution_engine: Any = None,
    ) -> dict[str, Any]:
        count = metrics["unexpected_rows_query.row_count"]
        return {"success": count == 0, "result": {"observed_value": count}}


def make_context(docs_dir: Path) -> AbstractDataContext:
    """An in-memory GX context: no analytics, no progress bars, Data Docs into ``docs_dir``."""
    check_versions()
    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
        data_docs_sites={
            DOCS_SITE: {
                "class_name": "SiteBuilder",
                "show_how_to_buttons": False,
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(docs_dir.resolve()),
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            }
        },
    )
    context = gx.get_context(mode="ephemeral", project_config=config)
    context.enable_analytics(False)
    return context


@contextmanager
def duckdb_datasource(
    context: AbstractDataContext, con: duckdb.DuckDBPyConnection, name: str | None = None
) -> Iterator[DuckDBDatasource]:
    """Register a datasource reading ``con``'s database; closes its cursor on exit."""
    cursor = con.cursor()
    cursor.execute("SET TimeZone = 'UTC'")
    datasource: DuckDBDatasource = context.data_sources.add_dwatch_duckdb(  # type: ignore[attr-defined]
        name=name or f"store_{uuid.uuid4().hex[:8]}",
        connection_string="duckdb:///:memory:",  # unused: the creator hands over the cursor
        kwargs={
            "creator": lambda: _ReadCommitted(cursor),
            "poolclass": sa.pool.StaticPool,
        },
    )
    try:
        yield datasource
    finally:
        try:
            datasource.get_execution_engine().close()
        finally:
            cursor.close()
