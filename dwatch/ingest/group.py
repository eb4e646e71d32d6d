"""Many small files of one layout through one typed pass: the per-file fixed cost paid once.

A daily increment is many small files (one per source system, a few hundred rows each).
Loaded one at a time, each paid the compile of the ~26 KB typed statement, its own
duplicate check against the store and its own commit, whatever its size: at 73 files
of ~140 rows, nearly all of the 1% run's ingest. Consecutive files that would be loaded
the same way (the same format, columns and types, CSV dialect and mapping, each small)
are therefore staged together (one ``read_parquet`` or ``read_csv`` over the list, each
row carrying its file's index; a Parquet row its row number in the file, a CSV row's
number counted from where its file starts, the scan keeping file and line order) and go
through one typed pass, one duplicate check and one transaction.

What stays per file, exactly as loading the files one by one gives:

- an ``ingest_runs`` row (its own run id, content sha256, warnings, and counts with
  rows read = loaded + quarantined) and its own link in the hash chain
  (``dwatch.ledger``), appended in file order;
- provenance: a stored row's ``ingest_run_id`` is its file's run and ``source_row`` its
  row in that file; a quarantined row names its file, row and reason;
- duplicates (``write._mark_duplicates``): a key repeated within a file 'repeats row N
  of this file'; a key an earlier file of the group holds was 'already loaded by' that
  file's run, as the store would say had that file been committed first.

A group is one transaction. If anything in it fails (an unreadable file, a statement
error), the transaction rolls back and each file of the group is loaded again alone
(``run.ingest_paths``), so a broken file is recorded as failed with its own message and
never loses or blocks the others. A crash (any other exception) propagates as it does
for one file: nothing of the group is written.

Which files group (``GroupPlanner.group_at``): a file whose content was loaded before, or
that repeats an earlier file of the group, ends the group (and is skipped or loaded alone as
usual). Files over ``GROUP_FILE_BYTES`` load alone: their fixed cost is small beside
their rows, and a failed group would read them twice. A group also ends before its typed
work table would outgrow ``WORK_SHARE`` of DuckDB's memory limit while loading (rows
estimated from the Parquet footers, or from a CSV file's size): a work table larger than
memory spills to disk, written and read back twice (the typed pass, then the inserts),
which at 10M events in one group made ingest three times DuckDB's own load instead of
under two. A CSV file groups when the sniffer
reads a header and no lines to skip or comment marker; the group's scan is strict, so a
malformed line fails the group and every file loads alone, where rejected lines are kept
for quarantine. JSON Lines and line logs load alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb

import dwatch.ingest.write as ingest_write
from dwatch.errors import InputError
from dwatch.ingest.base import (
    ROWS,
    TYPED,
    IngestResult,
    _Context,
    _drop_work,
    _pad_params,
    _size_bytes,
)
from dwatch.ingest.files import COMPRESSIONS, _format_of, file_sha256
from dwatch.ingest.instants import _dst_messages
from dwatch.ingest.stage import (
    GROUP_FILE,
    GROUP_RESERVED,
    GROUP_ROW,
    _stage_csv_group,
    _stage_parquet_group,
    csv_layout,
    parquet_layout,
)
from dwatch.ingest.typed import (
    _file_warnings,
    _plan_fields,
    _typed_sql,
    build_typed,
)
from dwatch.ingest.write import (
    _derive_authority,
    _insert_quarantine,
    _mark_duplicates,
    _record_key_ranges,
    store_columns,
)
from dwatch.mapping import CANONICAL, KIND_TABLE, get_mapping, match_mapping
from dwatch.schema import load_schema

GROUP_FILE_BYTES = 64 * 2**20  # a larger file loads alone
GROUP_BYTES = 512 * 2**20  # at most this much input per group
GROUP_FILES = 1000  # and at most this many files

GROUP_FORMATS = ("parquet", "csv")

# A group's typed work table stays in memory: at most this share of DuckDB's memory limit
# while loading (the scan and the inserts use the rest), at an estimated WORK_ROW_BYTES a
# row (measured: 1M generator events held 407 MB, about 410 bytes a row).
WORK_SHARE = 0.5
WORK_ROW_BYTES = 448
CSV_ROW_BYTES = 100  # a CSV row is longer: fewer rows than bytes / 100 (rows over-estimated)
CSV_PACKED = 10  # and a compressed CSV file holds about this many times its size


@dataclass(frozen=True)
class Layout:
    """What decides how a file loads: its format, its columns (and Parquet types), its CSV
    dialect (delimiter, quote, escape) and the mapping its name and columns select."""

    fmt: str
    columns: tuple[tuple[str, str], ...]
    dialect: tuple[str, str, str] | None
    mapping: str | None


def _groupable(path: Path) -> bool:
    """A Parquet or CSV file small enough to share a group (anything else loads alone). A
    name with glob characters loads alone too: a list of files is read as patterns."""
    if _format_of(path, explicit=True) not in GROUP_FORMATS or not path.is_file():
        return False
    if any(ch in str(path) for ch in "*?[{"):
        return False
    return 0 < path.stat().st_size <= GROUP_FILE_BYTES


def parquet_footers(con: duckdb.DuckDBPyConnection, paths: list[Path]) -> dict[str, tuple]:
    """Each file's Parquet schema (names, physical, logical and DuckDB types), read from
    the footers in one statement: files with equal schemas stage to equal columns. Empty
    when a footer cannot be read (each file is then described alone)."""
    if not paths:
        return {}
    try:
        rows = con.execute(
            "SELECT file_name, name, type, type_length, repetition_type, num_children,"
            " converted_type, scale, precision, logical_type, duckdb_type"
            " FROM parquet_schema($paths) ORDER BY file_name, column_id",
            {"paths": [str(p) for p in paths]},
        ).fetchall()
    except duckdb.Error:
        return {}
    footers: dict[str, list[tuple]] = {}
    for file_name, *column in rows:
        footers.setdefault(str(file_name), []).append(tuple(column))
    return {name: tuple(columns) for name, columns in footers.items()}


def parquet_rows(con: duckdb.DuckDBPyConnection, paths: list[Path]) -> dict[str, int]:
    """Each Parquet file's row count from its footer (empty when a footer cannot be read)."""
    if not paths:
        return {}
    try:
        rows = con.execute(
            "SELECT file_name, sum(num_rows) FROM parquet_file_metadata($paths) GROUP BY 1",
            {"paths": [str(p) for p in paths]},
        ).fetchall()
    except duckdb.Error:
        return {}
    return {str(name): int(n) for name, n in rows}


def group_layout(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    source: str | None,
    context: _Context,
    described: list[tuple[str, str]] | None = None,
) -> Layout | None:
    """The file's layout, or None when it loads alone. ``described``: a Parquet file's
    columns and types, known from another file with the same footer schema."""
    if not _groupable(path):
        return None
    fmt = str(_format_of(path, explicit=True))
    dialect = None
    try:
        if fmt == "csv":
            sniffed = csv_layout(con, path, get_mapping(source) if source else CANONICAL)
            if sniffed is None:
                return None
            dialect, names = sniffed
            columns = tuple((name, "VARCHAR") for name in names)
        else:
            columns = tuple(described if described is not None else parquet_layout(con, path))
    except duckdb.Error:
        return None  # loads alone, and says why
    if {name for name, _ in columns} & GROUP_RESERVED:
        return None
    matched = None
    if not source:
        found = match_mapping(
            [name for name, _ in columns], mappings=context.source_mappings(), file_name=path.name
        )
        matched = found.name if found else None
    return Layout(fmt, columns, dialect, matched)


def load_group(
    con: duckdb.DuckDBPyConnection,
    paths: list[Path],
    layout: Layout,
    results: list[IngestResult],
    *,
    kind: str | None,
    source: str | None,
    key: bytes,
    context: _Context,
) -> str:
    """Stage the group and build one typed work table for all its files (``_gfile``,
    ``_row`` per file); fills each result's kind, source and warnings. Returns the raw
    record's SQL for quarantine."""
    _drop_work(con)
    mapping = get_mapping(source) if source else CANONICAL
    names = [name for name, _ in layout.columns]
    if layout.dialect is not None:
        stage = _stage_csv_group(con, paths, layout.dialect, names)
        carry: tuple[str, ...] = (GROUP_FILE,)
    else:
        stage = _stage_parquet_group(con, paths, list(layout.columns))
        carry = (GROUP_FILE, GROUP_ROW)
    first = results[0]
    plan = _plan_fields(con, stage, layout.fmt, paths[0], first, mapping, kind, source, context)
    if plan.items is not None:
        raise InputError("records expanded from lists load file by file", where=str(paths[0]))
    for result, path in zip(results[1:], paths[1:], strict=True):
        result.kind, result.source_system = first.kind, first.source_system
        result.warnings += _file_warnings(plan, path)
    if layout.dialect is None:
        columns = list(layout.columns)
        raw_json = build_typed(
            con,
            plan,
            layout.fmt,
            key,
            stage,
            lambda direct: _stage_parquet_group(con, paths, columns, direct),
            carry,
        )
    else:
        sql, raw_json = _typed_sql(plan, layout.fmt, key, carry=carry)
        con.execute(sql, _pad_params(key, sql))
    row = GROUP_ROW if layout.dialect is None else _csv_row_numbers(con, len(paths))
    con.execute(f"CREATE TEMP VIEW {ROWS} AS SELECT rowid AS _rid, {row} AS _row, * FROM {TYPED}")
    _mark_duplicates(con, plan.table, plan.kind, runs=[r.run_id for r in results])
    shared = _derive_authority(con, plan.kind, context)
    dst: dict[int, dict[str, int]] = {}
    for gfile, case, n in con.execute(
        f"SELECT {GROUP_FILE}, _dst, count(*) FROM {TYPED} WHERE _dst IS NOT NULL GROUP BY ALL"
    ).fetchall():
        dst.setdefault(int(gfile), {})[str(case)] = int(n)
    for i, result in enumerate(results):
        result.warnings += shared + _dst_messages(dst.get(i, {}), plan.mapping)
    return raw_json


def _csv_row_numbers(con: duckdb.DuckDBPyConnection, files: int) -> str:
    """SQL for a CSV row's number in its file: the work table holds each file's rows in
    order, one file after another (checked here; otherwise the group loads file by file)."""
    offsets = [0] * files
    expected = 0
    for gfile, first, last, n in con.execute(
        f"SELECT {GROUP_FILE}, min(rowid), max(rowid), count(*) FROM {TYPED} GROUP BY 1 ORDER BY 1"
    ).fetchall():
        if first != expected or last != first + n - 1:
            raise InputError("the files' rows did not arrive in file order", where="ingest group")
        offsets[int(gfile)] = int(first)
        expected += int(n)
    return f"rowid + 1 - ([{', '.join(map(str, offsets))}])[{GROUP_FILE} + 1]"


def write_group(
    con: duckdb.DuckDBPyConnection, results: list[IngestResult], raw_json: str, key: bytes
) -> None:
    """The group's good rows into the store and its bad rows into quarantine, each under
    its file's run; each result's counts (inside the caller's transaction)."""
    first = results[0]
    kind = first.kind or "events"
    table = load_schema().events if kind == "events" else load_schema().items
    select, join = store_columns(con, table)
    con.execute(
        f"INSERT INTO {KIND_TABLE[kind]} ({', '.join(table.names)}, ingest_run_id, source_row, extra)"
        f" SELECT {select}, ($runs::VARCHAR[])[t.{GROUP_FILE} + 1], t._row, t._extra"
        f" FROM {ROWS} t{join} WHERE t._reason IS NULL",
        {"runs": [r.run_id for r in results]},
    )
    _record_key_ranges(con, kind, [r.run_id for r in results], grouped=True)
    header = 1 if first.file_format == "csv" else 0
    _insert_quarantine(con, first, kind, header, raw_json, key, group=results)
    for gfile, reason, n in con.execute(
        f"SELECT {GROUP_FILE}, coalesce(_reason, ''), count(*) FROM {TYPED} GROUP BY ALL"
        " ORDER BY 1, 3 DESC, 2"
    ).fetchall():
        result = results[int(gfile)]
        if reason:
            result.rows_quarantined += int(n)
            result.quarantined_by_reason[str(reason)] = int(n)
        else:
            result.rows_loaded += int(n)
    for result in results:
        result.rows_read = result.rows_loaded + result.rows_quarantined
        if result.rows_read == 0:
            result.warnings.append(f"{result.source_file}: header only, no records")
    if ingest_write._before_commit is not None:
        ingest_write._before_commit()


@dataclass
class Group:
    """Consecutive files loaded as one: their shared layout, each file with its sha256."""

    layout: Layout
    members: list[tuple[Path, str]]


class GroupPlanner:
    """Which files from a position on load as one group (each file's layout and content
    hash worked out once, however often it is asked)."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        files: list[Path],
        *,
        source: str | None,
        force: bool,
        context: _Context,
    ) -> None:
        self.con, self.files, self.source, self.force, self.context = (
            con,
            files,
            source,
            force,
            context,
        )
        self._layouts: dict[int, Layout | None] = {}
        self._shas: dict[int, str] = {}
        self._footers: dict[str, tuple] | None = None
        self._rows: dict[str, int] = {}
        self._described: dict[tuple, list[tuple[str, str]]] = {}
        self._budget: float | None = None

    def _layout(self, i: int) -> Layout | None:
        if i not in self._layouts:
            if self._footers is None:  # every footer in one read, the first time it is needed
                parquet = [
                    p
                    for p in self.files
                    if _groupable(p) and _format_of(p, explicit=True) == "parquet"
                ]
                self._footers = parquet_footers(self.con, parquet)
                self._rows = parquet_rows(self.con, parquet)
            path = self.files[i]
            footer = self._footers.get(str(path))
            described = self._described.get(footer) if footer is not None else None
            layout = group_layout(self.con, path, self.source, self.context, described)
            if footer is not None and layout is not None:
                self._described[footer] = list(layout.columns)
            self._layouts[i] = layout
        return self._layouts[i]

    def _sha(self, i: int) -> str:
        if i not in self._shas:
            self._shas[i] = file_sha256(self.files[i])
        return self._shas[i]

    def _work_bytes(self, i: int) -> float:
        """The file's estimated share of a typed work table, in bytes."""
        path = self.files[i]
        rows = self._rows.get(str(path))
        if rows is None:
            size = path.stat().st_size
            packed = path.suffix.lower() in COMPRESSIONS
            rows = (size * (CSV_PACKED if packed else 1)) // CSV_ROW_BYTES + 1
        return rows * WORK_ROW_BYTES

    def work_budget(self) -> float:
        """The largest typed work table a group may build: WORK_SHARE of DuckDB's memory
        limit as it is when the first group is planned (inside the load's memory cap)."""
        if self._budget is None:
            limit = self.con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
            self._budget = WORK_SHARE * _size_bytes(str(limit))
        return self._budget

    def _loaded(self, shas: list[str]) -> set[str]:
        if self.force:
            return set()
        rows = self.con.execute(
            "SELECT DISTINCT content_sha256 FROM ingest_runs WHERE status = 'loaded'"
            " AND content_sha256 IN (SELECT unnest($shas::VARCHAR[]))",
            {"shas": shas},
        ).fetchall()
        return {r[0] for r in rows}

    def group_at(self, start: int) -> Group | None:
        """The group starting at ``files[start]``, or None when that file loads alone."""
        layout = self._layout(start)
        if layout is None or self._loaded([self._sha(start)]):
            return None
        if self._work_bytes(start) > self.work_budget():
            return None  # alone, typed in row ranges (dwatch.ingest.chunks)
        members: list[tuple[Path, str]] = []
        seen: set[str] = set()
        total = 0
        work = 0.0
        for i in range(start, min(len(self.files), start + GROUP_FILES)):
            size = self.files[i].stat().st_size
            more = self._work_bytes(i)
            if i > start and (
                self._layout(i) != layout
                or total + size > GROUP_BYTES
                or work + more > self.work_budget()
            ):
                break
            sha = self._sha(i)
            if sha in seen:
                break
            members.append((self.files[i], sha))
            seen.add(sha)
            total += size
            work += more
        loaded = self._loaded([sha for _, sha in members])
        cut = next((k for k, (_, sha) in enumerate(members) if sha in loaded), len(members))
        return Group(layout, members[:cut]) if cut > 1 else None
