"""Run a load: one transaction and one ingest_runs row per file, under a memory cap."""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import duckdb

import dwatch.ingest.addresses as ingest_addresses
from dwatch import ledger, progress
from dwatch.csv_trouble import overlong_line
from dwatch.errors import ConfigError, DWatchError, InputError
from dwatch.ingest.addresses import AddressPrefetch
from dwatch.ingest.base import IngestResult, _Context, _drop_work, _lit, _size_bytes
from dwatch.ingest.chunks import chunk_spans, load_in_chunks
from dwatch.ingest.files import _HASHER, _format_of, _size, expand_paths, file_sha256
from dwatch.ingest.group import Group, GroupPlanner, load_group, write_group
from dwatch.ingest.typed import _load
from dwatch.ingest.write import _judge_addresses, _write
from dwatch.mapping import (
    get_mapping,
)
from dwatch.masking import (
    mask_json,
    mask_path,
    register,
)
from dwatch.memory import parse_memory
from dwatch.pseudonym import resolve_key
from dwatch.store import transaction


class _AlreadyLoaded(Exception):
    """The file's content was loaded before (and --force was not given): skip it."""


# ---------------------------------------------------------------------------- the load


def _new_run_id() -> str:
    return "ing_" + datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "_" + uuid.uuid4().hex[:8]


def _record_run(
    con: duckdb.DuckDBPyConnection,
    r: IngestResult,
    sha: str | None,
    started: datetime,
    forced: bool,
    key: bytes | None,
) -> None:
    """One ingest_runs row; file name, message and warnings masked (dwatch.masking)."""
    _record_runs(con, [(r, sha)], started, forced, key)


def _record_runs(
    con: duckdb.DuckDBPyConnection,
    runs: list[tuple[IngestResult, str | None]],
    started: datetime,
    forced: bool,
    key: bytes | None,
) -> None:
    """An ingest_runs row per (result, sha256), chained in this order, in one INSERT."""
    rows = [
        (
            r.run_id,
            mask_path(r.source_file, key),
            sha,
            r.kind,
            r.source_system,
            r.file_format,
            r.rows_read,
            r.rows_loaded,
            r.rows_quarantined,
            r.status,
            mask_path(r.message, key) if r.message is not None else None,
            [mask_path(w, key) for w in r.warnings],
        )
        for r, sha in runs
    ]
    texts = "VARCHAR[]"
    types = [texts] * 6 + ["BIGINT[]"] * 3 + [texts, texts, "VARCHAR[][]"]
    columns = ", ".join(f"unnest(?::{t})" for t in types)
    con.execute(
        "INSERT INTO ingest_runs (run_id, source_file, content_sha256, kind, source_system, file_format,"
        " rows_read, rows_loaded, rows_quarantined, status, message, warnings, started_at,"
        f" finished_at, forced) SELECT {columns}, ?, now(), ?",
        [*(list(column) for column in zip(*rows, strict=True)), started, forced],
    )
    ledger.append_many(con, [r.run_id for r, _ in runs])


def ingest_file(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    *,
    kind: str | None = None,
    source: str | None = None,
    force: bool = False,
    key: bytes | None = None,
    context: _Context | None = None,
) -> IngestResult:
    """Load one file in one transaction. Never raises for bad content: the result says."""
    context = context or _Context()
    register(con)  # the masking policy's SQL functions, on any connection
    started = datetime.now(UTC)
    run_id = _new_run_id()
    result = IngestResult(run_id=run_id, source_file=str(path), status="failed")
    fmt = _format_of(path, explicit=True)
    result.file_format = fmt
    sha: str | None = None
    hashing: Future[str] | None = None
    try:
        if not path.is_file():
            raise InputError("no such file", where=str(path), fix="check the path")
        if fmt is None:
            raise InputError(
                f"unrecognised file type {''.join(path.suffixes) or '(none)'}",
                where=str(path),
                fix="use .csv, .tsv, .jsonl/.ndjson/.json, .parquet or .log (text lines, read through a mapping), optionally .gz",
            )
        # Hashing a large file takes a core for a while (0.8 s per GB): it runs beside the
        # CSV sniff, and the skip check waits for it before any record is read.
        hashing = _HASHER.submit(file_sha256, path)
        if path.stat().st_size == 0:
            sha = hashing.result()
            raise InputError(
                "the file is empty (0 bytes)",
                where=str(path),
                fix="re-export it from the source system",
            )

        def skip_if_loaded() -> None:
            nonlocal sha
            sha = hashing.result()
            if force:
                return
            prior = con.execute(
                "SELECT run_id, source_file FROM ingest_runs WHERE content_sha256 = ? AND status = 'loaded'"
                " ORDER BY finished_at DESC LIMIT 1",
                [sha],
            ).fetchone()
            if prior:
                raise _AlreadyLoaded(
                    f"same content already loaded by {prior[0]} from {prior[1]}; nothing to do"
                    " (use --force to load it again)"
                )

        key = key if key is not None else resolve_key()

        def finish() -> None:
            result.status = "loaded"
            result.warnings += _judge_addresses(con, result.kind, context)
            _record_run(con, result, sha, started, force, key)

        try:
            _load_and_write(
                con, path, fmt, result, kind, source, key, context, skip_if_loaded, finish
            )
        except _AlreadyLoaded as skipped:
            result.status = "skipped"
            result.message = str(skipped)
            result.kind = result.source_system = None
            result.warnings = []
        return result
    except DWatchError as exc:
        result.status = "failed"
        result.message = exc.render()
    except duckdb.Error as exc:
        result.status = "failed"
        where = overlong_line(path, str(exc)) if fmt == "csv" else None
        result.message = f"{path}: " + (
            where or f"cannot be read as {fmt}: {str(exc).splitlines()[0]}"
        )
    finally:
        _drop_work(con)
    if hashing is not None and sha is None:
        sha = hashing.result()
    # Failed loads are recorded too (outside the rolled-back transaction), with nothing written.
    result.rows_loaded = 0
    result.rows_quarantined = 0
    _record_run(con, result, sha, started, force, key)
    return result


def _load_and_write(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    fmt: str,
    result: IngestResult,
    kind: str | None,
    source: str | None,
    key: bytes,
    context: _Context,
    skip_if_loaded: Callable[[], None],
    finish: Callable[[], None],
) -> None:
    """Type the file (in row ranges when larger than the load's memory share) and write
    it and its run record (``finish``) in one transaction."""
    spans = chunk_spans(con, path, fmt)
    if spans:
        load_in_chunks(
            con,
            path,
            result,
            spans,
            kind=kind,
            source=source,
            key=key,
            context=context,
            skip_if_loaded=skip_if_loaded,
            finish=finish,
        )
        return
    raw_json = _load(
        con,
        path,
        fmt,
        result,
        kind=kind,
        source=source,
        key=key,
        context=context,
        skip_if_loaded=skip_if_loaded,
    )
    with transaction(con):
        _write(con, result, raw_json, key)
        finish()


def _ingest_group(
    con: duckdb.DuckDBPyConnection,
    group: Group,
    *,
    kind: str | None,
    source: str | None,
    force: bool,
    key: bytes,
    context: _Context,
) -> list[IngestResult] | None:
    """Load a group of files in one transaction, one result and chain link per file
    (dwatch.ingest.group); None when it failed and each file should load alone."""
    register(con)
    started = datetime.now(UTC)
    paths = [path for path, _ in group.members]
    results = [
        IngestResult(
            run_id=_new_run_id(),
            source_file=str(path),
            status="loaded",
            file_format=group.layout.fmt,
        )
        for path in paths
    ]
    try:
        raw_json = load_group(
            con, paths, group.layout, results, kind=kind, source=source, key=key, context=context
        )
        with transaction(con):
            write_group(con, results, raw_json, key)
            shared = _judge_addresses(con, results[0].kind, context)
            for result in results:
                result.warnings += shared
            shas = [sha for _, sha in group.members]
            _record_runs(con, list(zip(results, shas, strict=True)), started, force, key)
    except (DWatchError, duckdb.Error):
        return None  # nothing written: each file loads alone and says what is wrong with it
    finally:
        _drop_work(con)
    return results


INGEST_MEMORY_ENV = "DWATCH_INGEST_MEMORY"
DEFAULT_INGEST_MEMORY = "1GB"


@contextmanager
def _bounded_memory(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Cap DuckDB's buffer memory while loading, so a file larger than memory spills its
    work table to disk instead of growing the process: ``DWATCH_INGEST_MEMORY`` (default
    1GB), never above the run's DuckDB share of ``DWATCH_MEMORY``."""
    limit = os.environ.get(INGEST_MEMORY_ENV, DEFAULT_INGEST_MEMORY)
    try:
        wanted = parse_memory(limit)
    except ConfigError as exc:
        raise ConfigError(
            f"{INGEST_MEMORY_ENV}={limit!r} is not a memory size",
            where="environment",
            fix="use e.g. 1GB or 512MB, or unset it for 1GB",
        ) from exc
    previous = con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
    if wanted >= _size_bytes(previous):
        yield  # the run's own limit is already the smaller
        return
    con.execute(f"SET memory_limit = '{wanted}B'")
    try:
        yield
    finally:
        con.execute(f"SET memory_limit = {_lit(previous)}")


def ingest_paths(
    con: duckdb.DuckDBPyConnection,
    paths: Iterable[str | Path],
    *,
    kind: str | None = None,
    source: str | None = None,
    force: bool = False,
    key: bytes | None = None,
) -> list[IngestResult]:
    """Load files, folders and globs; one result (and one ingest_runs row) per file."""
    files, problems = expand_paths(paths)
    if source:
        get_mapping(source)  # an unknown mapping is a usage error: fail before loading anything
    results: list[IngestResult] = []
    for text, problem in problems:
        r = IngestResult(
            run_id=_new_run_id(), source_file=text, status="failed", message=f"{text}: {problem}"
        )
        _record_run(con, r, None, datetime.now(UTC), force, key)
        results.append(r)
    if files:
        key = key if key is not None else resolve_key()
    context = _Context()
    if files:
        context.prefetch_registry()
        if ingest_addresses.PREFETCH:
            context.addresses = AddressPrefetch(con, files, context).start()
    sizes = [_size(path) for path in files]
    planner = GroupPlanner(con, files, source=source, force=force, context=context)
    try:
        with (
            _bounded_memory(con),
            progress.task("ingest", total=sum(sizes) or None, unit="bytes") as reading,
        ):
            n = 0
            while n < len(files):
                group = planner.group_at(n)
                count = len(group.members) if group else 1
                if group:
                    reading.working_on(files[n], f"files {n + 1}-{n + count}/{len(files)}")
                loaded = (
                    _ingest_group(
                        con, group, kind=kind, source=source, force=force, key=key, context=context
                    )
                    if group
                    else None
                )
                for i, path in enumerate(files[n : n + count]):
                    reading.working_on(path, f"file {n + i + 1}/{len(files)}")  # each file said
                    result = (
                        loaded[i]
                        if loaded
                        else ingest_file(
                            con,
                            path,
                            kind=kind,
                            source=source,
                            force=force,
                            key=key,
                            context=context,
                        )
                    )
                    results.append(result)
                    reading.advance(sizes[n + i], rows=result.rows_read)
                n += count
    finally:
        if context.addresses is not None:
            context.addresses.stop()  # nothing of the load runs on after it returns
    return results


def _display_key() -> bytes | None:
    """The key file names are shown with (as ingest_runs stores them), if one is set."""
    with contextlib.suppress(ConfigError):
        return resolve_key()
    return None


def summarise(results: list[IngestResult]) -> str:
    """The results for a terminal, file names and messages masked as the store has them."""
    key = _display_key()
    lines = []
    for r in results:
        head = f"{r.status:8} {r.source_file}"
        if r.status == "loaded":
            head += f"  [{r.kind}{', ' + r.source_system if r.source_system else ''}] read {r.rows_read:,} = loaded {r.rows_loaded:,} + quarantined {r.rows_quarantined:,}"
        lines.append(head)
        if r.quarantined_by_reason:
            lines.append(
                "         quarantined: "
                + ", ".join(f"{k} {v:,}" for k, v in r.quarantined_by_reason.items())
            )
        if r.message:
            lines.append("         " + r.message.replace("\n", "\n         "))
        lines += ["         warning: " + w for w in r.warnings]
    return mask_path("\n".join(lines), key)


def to_json(results: list[IngestResult]) -> str:
    shown = mask_json(
        json.loads(json.dumps([r.__dict__ for r in results], default=str)), _display_key()
    )
    return json.dumps(shown, indent=2)
