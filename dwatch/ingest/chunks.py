"""A Parquet file larger than the load's memory, typed in row ranges.

One typed work table for a file of 10M records is about 4 GB: past DuckDB's memory share it
spills, written and read back twice. A file whose estimated work table outgrows DuckDB's
memory limit (``ONE_PASS_SHARE``) is read in row ranges the size a group may use
(``group.WORK_SHARE``), by ``file_row_number`` (row groups outside a range are not
read), each range typed, checked
and written in turn, all in the file's one transaction. The result is the one-pass result:
a key an earlier range held repeats that row (``write.SEEN``, checked first by one hash of
the key; the store is read only for other runs), zone-less-time counts and
key ranges are summed over the ranges, and rows read = loaded + quarantined.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import duckdb

from dwatch.ingest.base import SEEN, Chunk, IngestResult, _Context, _size_bytes
from dwatch.ingest.direct import OUTSIDE
from dwatch.ingest.group import WORK_ROW_BYTES, WORK_SHARE, parquet_rows
from dwatch.ingest.instants import _dst_messages
from dwatch.ingest.stage import GROUP_RESERVED, parquet_layout
from dwatch.ingest.typed import _load
from dwatch.ingest.write import KEY_CLASSES, _has_key_classes, _write
from dwatch.store import transaction

# A file goes in ranges only when one pass's work table would outgrow this share of DuckDB's
# whole memory limit: below it one pass does not spill (measured: a 909k-row file, 1.6 times
# WORK_SHARE, wrote 37 MB in one pass and 86 MB in two ranges; a 3.65M-row file wrote
# 1,661 MB in one pass and 1,081 MB in ranges). Each range holds WORK_SHARE's worth.
ONE_PASS_SHARE = 1.0


def chunk_spans(
    con: duckdb.DuckDBPyConnection, path: Path, fmt: str | None
) -> list[tuple[int, int]] | None:
    """The row ranges to type a Parquet file in, or None when its work table fits in
    memory in one pass (or its rows cannot be counted from the footer)."""
    if fmt != "parquet" or not path.is_file():
        return None
    rows = parquet_rows(con, [path]).get(str(path))
    if not rows:
        return None
    limit = _size_bytes(str(con.execute("SELECT current_setting('memory_limit')").fetchone()[0]))
    if rows * WORK_ROW_BYTES <= ONE_PASS_SHARE * limit:
        return None
    per_range = max(1, int(WORK_SHARE * limit // WORK_ROW_BYTES))
    if {name for name, _ in parquet_layout(con, path)} & GROUP_RESERVED:
        return None  # a column named as the row number: one pass
    return [(first, min(first + per_range, rows)) for first in range(0, rows, per_range)]


def load_in_chunks(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    result: IngestResult,
    spans: list[tuple[int, int]],
    *,
    kind: str | None,
    source: str | None,
    key: bytes,
    context: _Context,
    skip_if_loaded: Callable[[], None],
    finish: Callable[[], None],
) -> None:
    """Type and write each row range, then ``finish`` (record the run), in one transaction.
    A value the typed columns cannot read back (dwatch.ingest.direct) ends the transaction:
    the file is then read again, all through text."""
    warnings = list(result.warnings)
    for direct in (True, False):
        result.warnings = list(warnings)
        try:
            with transaction(con):
                _ranges(
                    con, path, result, spans, direct, kind, source, key, context, skip_if_loaded
                )
                finish()
            return
        except duckdb.InvalidInputException as exc:
            if not direct or OUTSIDE not in str(exc):
                raise
        finally:
            con.execute(f"DROP TABLE IF EXISTS {SEEN}")


def _ranges(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    result: IngestResult,
    spans: list[tuple[int, int]],
    direct: bool,
    kind: str | None,
    source: str | None,
    key: bytes,
    context: _Context,
    skip_if_loaded: Callable[[], None],
) -> None:
    """Each range typed and written in turn; the result's counts summed over them."""
    loaded = quarantined = 0
    dst: dict[str, int] = {}
    chunk = Chunk(0, 0, seen=False)
    for i, (first, last) in enumerate(spans):
        chunk = Chunk(first, last, seen=i > 0, direct=direct, dst=dst)
        said = list(result.warnings)
        raw_json = _load(
            con,
            path,
            "parquet",
            result,
            kind=kind,
            source=source,
            key=key,
            context=context,
            skip_if_loaded=skip_if_loaded if i == 0 else lambda: None,
            chunk=chunk,
        )
        _write(con, result, raw_json, key)
        loaded, quarantined = loaded + result.rows_loaded, quarantined + result.rows_quarantined
        if i > 0:
            result.warnings = said  # each range hears what the first one heard
    result.rows_loaded, result.rows_quarantined = loaded, quarantined
    result.rows_read = loaded + quarantined
    if chunk.mapping is not None:
        result.warnings += _dst_messages(dst, chunk.mapping)
    _merge_key_ranges(con, result.run_id)


def _merge_key_ranges(con: duckdb.DuckDBPyConnection, run_id: str) -> None:
    """One key range per source for the run, as one pass records it (and one row of its
    ids by class; the hashes of its pseudonyms are each range's, kept as they are)."""
    merged = con.execute(
        "SELECT source_system, min(first_event_id), max(last_event_id) FROM ingest_key_ranges"
        " WHERE ingest_run_id = ? GROUP BY 1",
        [run_id],
    ).fetchall()
    con.execute("DELETE FROM ingest_key_ranges WHERE ingest_run_id = ?", [run_id])
    if merged:
        con.executemany(
            "INSERT INTO ingest_key_ranges (ingest_run_id, source_system, first_event_id,"
            " last_event_id) VALUES (?, ?, ?, ?)",
            [(run_id, *row) for row in merged],
        )
    if not _has_key_classes(con):
        return
    classes = con.execute(
        f"SELECT source_system, min(first_plain_id), max(last_plain_id), sum(hashed_ids)"
        f" FROM {KEY_CLASSES} WHERE ingest_run_id = ? GROUP BY 1",
        [run_id],
    ).fetchall()
    con.execute(f"DELETE FROM {KEY_CLASSES} WHERE ingest_run_id = ?", [run_id])
    if classes:
        con.executemany(
            f"INSERT INTO {KEY_CLASSES} (ingest_run_id, source_system, first_plain_id,"
            " last_plain_id, hashed_ids) VALUES (?, ?, ?, ?, ?)",
            [(run_id, *row) for row in classes],
        )
