"""The work tables of one load, SQL quoting, and the result and context every stage shares."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import duckdb

from dwatch.errors import DWatchError
from dwatch.mapping import (
    SourceMapping,
    available_mappings,
)
from dwatch.masking import sql_may_have_shape
from dwatch.pseudonym import hmac_pads

if TYPE_CHECKING:
    from dwatch.ingest.addresses import AddressPrefetch

# Working tables of one load live in their own schema of the store, not in temp memory:
# persistent tables are compressed and spill under the memory limit, so a file larger
# than memory loads with bounded memory. They are dropped after each file (and any left
# by a crash are dropped before the next load).
# Work tables live in the connection's temp catalog: never written to the store file (a
# persistent work table cost a compressed write of every record before the real insert),
# spilled to the store's temp folder past the memory cap, gone if the process dies.
WORK = "temp.main"
_WORK_PREFIX = "ingest_work_"
TYPED = f"{WORK}.{_WORK_PREFIX}typed"  # one row per record: typed values, reason (NULL when good), raw form
ROWS = f"{WORK}.{_WORK_PREFIX}typed_rows"  # TYPED with _rid (rowid) and _row (record number in the file)
AUTHORITY_MAP = f"{WORK}.{_WORK_PREFIX}authority_map"
LINES = f"{WORK}.{_WORK_PREFIX}lines"
REJECT_OFFSETS = f"{WORK}.{_WORK_PREFIX}reject_offsets"
# Per staged row: may any free-text field (lists included) carry a taxpayer-id shape
# (dwatch.masking)? And may any identifier field? Two tests over the same bytes as one:
# an id that looks like an issuable SSN (at 100M, every serial past 1,010,000) does not
# send the row's free text to be tested field by field, nor its lists element by element.
ROW_MAY_HAVE_TIN = "_may_tin"
ROW_ID_MAY_HAVE_TIN = "_may_tin_id"


def field_may_have_tin(expr: str, *, identifier: bool = False) -> str:
    """Whether one text field of a flagged row may carry a shape: the row's test (over its
    identifiers, or over its free text), then the same RE2 test on the field alone, so
    only the fields that match reach Python.

    Exact: the row test runs over the fields of its kind joined, so a field that matches
    alone always flags its row; and a field that does not match alone has no shape.
    Without it, every text field of a flagged row went through Python: at 100M events,
    serial numbers past 1,010,000 are nine digits SSA could issue ("GA-DOR-001234567"),
    so every later row was flagged and its free text masked in Python (3 calls a row)."""
    flag = ROW_ID_MAY_HAVE_TIN if identifier else ROW_MAY_HAVE_TIN
    return f"({flag} AND {sql_may_have_shape(expr)})"


@dataclass
class _Context:
    """What one ingest call loads once and reuses for every file (registry, mappings)."""

    mappings: dict[str, SourceMapping] | None = None
    registry: object | None = None
    registry_problem: str | None = None
    registry_loaded: bool = False
    registry_lock: threading.Lock = field(default_factory=threading.Lock)
    # Supplied addresses judged beside the load (dwatch.ingest.addresses), if started.
    addresses: AddressPrefetch | None = None

    def source_mappings(self) -> dict[str, SourceMapping]:
        if self.mappings is None:
            self.mappings = available_mappings()
        return self.mappings

    def prefetch_registry(self) -> None:
        """Start loading the registry in the background (~0.4 s of imports and YAML).

        It overlaps the first file's hashing and CSV sniffing, which release the GIL, instead
        of adding to the load after the typed pass. normaliser() waits for it."""
        threading.Thread(target=self._load_registry, name="dwatch-registry", daemon=True).start()

    def _load_registry(self) -> None:
        with self.registry_lock:
            if self.registry_loaded:
                return
            try:
                from dwatch.policy import load_registry

                self.registry = load_registry()
            except ImportError:
                self.registry = None
            except DWatchError as exc:
                self.registry_problem = exc.what
            self.registry_loaded = True

    def normaliser(self) -> Callable[[str], str | None] | None:
        """The registry's citation normaliser, or None (with registry_problem) if unavailable."""
        self._load_registry()
        if self.registry is None:
            return None
        from dwatch.policy import normalise_citation

        registry = self.registry
        return lambda text: normalise_citation(text, registry)  # type: ignore[arg-type]


@dataclass
class Chunk:
    """One row range of a Parquet file loaded in several typed passes (dwatch.ingest.chunks):
    records ``first`` to ``last`` - 1 (from 0), whether earlier ranges left keys in SEEN, and
    the zone-less-time counts summed over the ranges."""

    first: int
    last: int
    seen: bool
    direct: bool = True  # typed columns straight through (dwatch.ingest.direct)
    dst: dict[str, int] = field(default_factory=dict)
    mapping: SourceMapping | None = None  # the mapping the ranges were read with


# Keys of one file's well-formed records in its earlier row ranges, with the row that first
# held each: a repeat in a later range repeats that row (not dropped by _drop_work).
SEEN = f"{WORK}.{_WORK_PREFIX}chunk_seen"
SEEN_HASH = "_key_hash"  # SEEN's hash of each key: later ranges are checked against it first


@dataclass
class IngestResult:
    run_id: str
    source_file: str
    status: str  # loaded | skipped | failed
    kind: str | None = None
    source_system: str | None = None
    file_format: str | None = None
    rows_read: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    message: str = ""
    warnings: list[str] = field(default_factory=list)
    quarantined_by_reason: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status in ("loaded", "skipped")


# ---------------------------------------------------------------------------- staging


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(text: str) -> str:
    """SQL string literal for text WE wrote (field names, codes); never for log data."""
    return "'" + text.replace("'", "''") + "'"


def _drop_work(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("DROP VIEW IF EXISTS _stage")
    con.execute(f"DROP VIEW IF EXISTS {ROWS}")
    for table in (
        TYPED,
        AUTHORITY_MAP,
        LINES,
        f"{LINES}_items",
        f"{LINES}_records",
        REJECT_OFFSETS,
    ):
        con.execute(f"DROP TABLE IF EXISTS {table}")
    con.execute("DROP VIEW IF EXISTS _stage_top")
    for table in ("_rejects", "_rejects_scan", "_lines"):
        con.execute(f"DROP TABLE IF EXISTS {table}")


def _pad_params(key: bytes, sql: str) -> dict[str, bytes]:
    """Bind the HMAC pads only when the statement uses them (DuckDB rejects unused names)."""
    if "$ipad" not in sql:
        return {}
    ipad, opad = hmac_pads(key)
    return {"ipad": ipad, "opad": opad}


@dataclass
class _FieldSQL:
    """SQL for one canonical field, evaluated in layers so nothing is computed twice.

    ``x`` (the text) is a column of layer 1; ``helpers`` are layer-2 columns over it;
    ``typed`` is the layer-3 value over both; ``checks`` are (condition, reason code,
    message) over x, helpers and the typed column ``t``; the first failing check wins.
    """

    x: str
    t: str
    typed: str
    helpers: list[tuple[str, str]] = field(default_factory=list)
    helpers2: list[tuple[str, str]] = field(default_factory=list)  # over helpers
    checks: list[tuple[str, str, str]] = field(default_factory=list)
    dst: str | None = None  # helper naming a repeated/skipped local hour, if any


def _size_bytes(setting: str) -> float:
    """DuckDB's memory_limit as it prints it ('953.6 MiB', '1.0 GiB') in bytes."""
    number, _, unit = setting.strip().partition(" ")
    scale = {"bytes": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40, "PiB": 2**50}
    return float(number) * scale.get(unit.strip(), 1) if number else float("inf")
