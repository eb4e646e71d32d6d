"""Hypothesis strategies for disclosure logs as a hostile exporter might write them, and the
invariants every ingest must keep whatever it is given.

Profiles: ``ci`` (the default, run by ``make test``: few examples, derandomized, so the
suite stays fast and gives the same result every time) and ``fuzz`` (``make fuzz``:
many random examples). Choose with ``DWATCH_FUZZ_PROFILE``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import duckdb
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from dwatch.errors import DWatchError
from dwatch.ingest import IngestResult
from dwatch.masking import has_shape
from dwatch.schema import load_schema

_QUIET = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large]
settings.register_profile(
    "ci",
    max_examples=8,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=_QUIET,
)
settings.register_profile(
    "fuzz", max_examples=300, deadline=None, database=None, suppress_health_check=_QUIET
)
PROFILE = settings.get_profile(os.environ.get("DWATCH_FUZZ_PROFILE", "ci"))

# Values that broke, or could break, a reader or a converter; every text strategy mixes
# them in with arbitrary text.
AWKWARD = [
    "", " ", '"', '""', ",", ";", "|", "\t", "\n", "\r\n", "NULL", "null", "NaN", "None",
    "infinity", "-infinity", "NaT", "0", "-1", "9223372036854775808", "1e309", "2.5",
    "294247-01-10T04:00:54Z", "2025-08-07T10:00:00Z", "2025-08-07T10:00:00+25:00",
    "2025-08-07 10:00:00", "08/07/2025 10:00", "1754575200", "0001-01-01T00:00:00Z",
    "123-45-6789", "ssn 123 45 6789 asked", "x123456789y", "12-3456789", "REQ-567-89-0123",
    "[]", '["name","address"]', "[oops", "true", "yes", "Y", "disclosure", "sftp", "IRS",
    "\ufeff", "é", "\u202e", "💥", "=HYPERLINK(\"x\")", "'; DROP TABLE quarantine; --",
]  # fmt: skip
TIN_SHAPED = ["123-45-6789", "ssn 123 45 6789 asked", "x123456789y", "12-3456789"]

CANONICAL_EVENT_COLUMNS = [
    f.name for f in load_schema().events.input_fields if f.name != "taxpayer_ref"
] + ["taxpayer_tin"]

values = st.one_of(
    st.sampled_from(AWKWARD),
    st.text(max_size=24),
    st.text(alphabet="0123456789-. :TZ+/", max_size=26),
)
column_names = st.one_of(st.sampled_from(CANONICAL_EVENT_COLUMNS), st.text(min_size=1, max_size=12))


@st.composite
def tables(draw: st.DrawFn, max_rows: int = 6) -> tuple[list[str], list[list[str]]]:
    """A header (canonical names, other names, duplicates) and rows of awkward text."""
    header = draw(st.lists(column_names, min_size=1, max_size=10))
    rows = draw(
        st.lists(
            st.lists(values, min_size=len(header), max_size=len(header)),
            max_size=max_rows,
        )
    )
    return header, rows


def assert_ingest_invariants(
    con: duckdb.DuckDBPyConnection, results: list[IngestResult], path: Path
) -> IngestResult:
    """rows read = loaded + quarantined, in the result and in the store; a failure names the
    file; nothing stored for the run carries a taxpayer-id shape (dwatch.masking)."""
    [result] = results
    assert result.status in ("loaded", "failed", "skipped"), result
    if result.status == "failed":
        assert result.message and str(path.name) in result.message, result.message
        return result
    assert result.rows_read == result.rows_loaded + result.rows_quarantined, result
    if result.status != "loaded":
        return result
    table = "disclosure_events" if result.kind == "events" else "request_items"
    loaded = con.execute(
        f"SELECT count(*) FROM {table} WHERE ingest_run_id = ?", [result.run_id]
    ).fetchone()
    quarantined = con.execute(
        "SELECT count(*) FROM quarantine WHERE ingest_run_id = ?", [result.run_id]
    ).fetchone()
    assert (loaded, quarantined) == ((result.rows_loaded,), (result.rows_quarantined,))
    for relation in (table, "quarantine"):
        _assert_no_shape(con, f"SELECT * FROM {relation} WHERE ingest_run_id = ?", result.run_id)
    _assert_no_shape(con, "SELECT * FROM ingest_runs WHERE run_id = ?", result.run_id)
    return result


def _assert_no_shape(con: duckdb.DuckDBPyConnection, sql: str, run_id: str) -> None:
    cursor = con.execute(sql, [run_id])
    names = [d[0] for d in cursor.description]
    for row in cursor.fetchall():
        for name, value in zip(names, row, strict=True):
            for text in _texts(value):
                assert not has_shape(text), f"{name} holds a taxpayer-id shape: {text!r}"


def _texts(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple):
        return [t for v in value for t in _texts(v)]
    return []


def names_the_file(exc: DWatchError, path: Path) -> bool:
    return path.name in exc.render()
