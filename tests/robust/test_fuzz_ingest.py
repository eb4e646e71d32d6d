"""Property-based ingest: any CSV, JSON Lines or Parquet content, any mapping the validator
accepts. Nothing crashes (ingest reports bad content in its result; a project error names
the file), rows read = loaded + quarantined, and no taxpayer-id shape is stored.

``make test`` runs the ``ci`` profile (few examples, derandomized); ``make fuzz`` runs many.
"""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest
import yaml
from hypothesis import assume, given
from hypothesis import strategies as st

from dwatch.errors import ConfigError, DWatchError
from dwatch.ingest import ingest_paths
from dwatch.mapping import parse_mapping
from tests.robust.fuzz_strategies import (
    AWKWARD,
    CANONICAL_EVENT_COLUMNS,
    PROFILE,
    assert_ingest_invariants,
    names_the_file,
    tables,
    values,
)

_counter = itertools.count()


def _fresh(folder: Path, suffix: str) -> Path:
    """A new file name per example (the store is shared by the examples of a test)."""
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"log-{next(_counter)}{suffix}"


def _ingest(con: duckdb.DuckDBPyConnection, path: Path, **kw: Any) -> Any:
    try:
        results = ingest_paths(con, [path], force=True, **kw)
    except DWatchError as exc:  # only the project's own errors, naming the file
        assert names_the_file(exc, path), exc.render()
        return None
    return assert_ingest_invariants(con, results, path)


@PROFILE
@given(table=tables(), kind=st.sampled_from([None, "events"]))
def test_any_csv_content(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, table: Any, kind: str | None
) -> None:
    header, rows = table
    path = _fresh(tmp_path, ".csv")
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([header, *rows])
    result = _ingest(con, path, kind=kind)
    if result is not None and result.status == "loaded" and len(set(header)) == len(header):
        assert result.rows_read == len(rows), (result, rows)


@PROFILE
@given(lines=st.lists(st.one_of(values, st.binary(max_size=40).map(repr)), max_size=8))
def test_any_text_as_csv(con: duckdb.DuckDBPyConnection, tmp_path: Path, lines: list[str]) -> None:
    path = _fresh(tmp_path, ".csv")
    path.write_text(",".join(CANONICAL_EVENT_COLUMNS) + "\n" + "\n".join(lines), encoding="utf-8")
    _ingest(con, path)


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), values),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(values, inner, max_size=3),
    max_leaves=6,
)


@PROFILE
@given(
    records=st.lists(
        st.one_of(
            st.dictionaries(st.sampled_from(CANONICAL_EVENT_COLUMNS), json_values, max_size=12),
            st.dictionaries(values, json_values, max_size=4),
        ),
        max_size=6,
    ),
    junk=st.lists(st.tuples(st.integers(0, 6), values), max_size=2),
)
def test_any_json_lines(
    con: duckdb.DuckDBPyConnection,
    tmp_path: Path,
    records: list[dict[str, Any]],
    junk: list[tuple[int, str]],
) -> None:
    lines = [json.dumps(r, allow_nan=True) for r in records]
    for at, text in junk:
        lines.insert(min(at, len(lines)), text.replace("\n", " "))
    path = _fresh(tmp_path, ".jsonl")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    _ingest(con, path, kind="events")


parquet_columns = st.sampled_from(
    [
        (pl.Utf8, values),
        (pl.Int64, st.integers(-(2**63), 2**63 - 1)),
        (pl.Float64, st.floats()),
        (pl.Boolean, st.booleans()),
        (pl.List(pl.Utf8), st.lists(values, max_size=3)),
    ]
)


@PROFILE
@given(
    spec=st.dictionaries(
        st.sampled_from(CANONICAL_EVENT_COLUMNS), parquet_columns, min_size=1, max_size=10
    ),
    height=st.integers(0, 5),
    data=st.data(),
)
def test_any_parquet(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, spec: dict[str, Any], height: int, data: Any
) -> None:
    frame = pl.DataFrame(
        {
            name: pl.Series(
                name, [data.draw(st.none() | strategy) for _ in range(height)], dtype=dtype
            )
            for name, (dtype, strategy) in spec.items()
        }
    )
    path = _fresh(tmp_path, ".parquet")
    frame.write_parquet(path)
    result = _ingest(con, path, kind="events")
    if result is not None and result.status == "loaded":
        assert result.rows_read == height


@st.composite
def mappings(draw: st.DrawFn, header: list[str]) -> dict[str, Any]:
    fields = st.sampled_from([c for c in CANONICAL_EVENT_COLUMNS if c != "taxpayer_tin"])
    raw: dict[str, Any] = {"kind": "events"}
    raw["columns"] = draw(st.dictionaries(fields, st.sampled_from(header), max_size=8))
    raw["constants"] = draw(st.dictionaries(fields, st.sampled_from(AWKWARD), max_size=4))
    raw["values"] = draw(
        st.dictionaries(
            fields, st.dictionaries(st.sampled_from(AWKWARD), st.sampled_from(AWKWARD), max_size=3),
            max_size=2,
        )
    )  # fmt: skip
    optional = {
        "source_system": st.sampled_from(["fuzz-log", "", "123-45-6789"]),
        "timezone": st.sampled_from(["UTC", "America/New_York", "Pacific/Kiritimati"]),
        "timestamp_format": st.sampled_from(
            [
                "%Y-%m-%d %H:%M:%S",
                "%m/%d/%Y %H:%M",
                "epoch",
                "epoch_ms",
                ["%d.%m.%Y %H:%M", "%Y%m%d%H%M%S"],
                "%Y-%m-%dT%H:%M:%S%z",
            ]
        ),
        "ambiguous_time": st.sampled_from(["earlier", "later", "quarantine"]),
        "nonexistent_time": st.sampled_from(["shift", "quarantine"]),
        "list_separator": st.sampled_from(["|", ";", ","]),
        "identifiers": st.lists(st.sampled_from(header), max_size=2),
        "ignore_columns": st.lists(st.sampled_from(header), max_size=2),
    }
    for key, strategy in optional.items():
        if draw(st.booleans()):
            raw[key] = draw(strategy)
    return raw


@PROFILE
@given(table=tables(), data=st.data())
def test_any_mapping_the_validator_accepts(
    con: duckdb.DuckDBPyConnection,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    table: Any,
    data: Any,
) -> None:
    header, rows = table
    raw = data.draw(mappings(header))
    sources = tmp_path / "sources"
    sources.mkdir(exist_ok=True)
    monkeypatch.setenv("DWATCH_SOURCES_DIR", str(sources))
    mapping_path = sources / "fuzz.yaml"
    try:
        parse_mapping(raw, mapping_path)
    except ConfigError:
        assume(False)  # only mappings the validator accepts
    mapping_path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    path = _fresh(tmp_path / "in", ".csv")
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([header, *rows])
    result = _ingest(con, path, source="fuzz")
    if result is not None and result.status == "loaded" and len(set(header)) == len(header):
        assert result.rows_read == len(rows), (result, rows)
