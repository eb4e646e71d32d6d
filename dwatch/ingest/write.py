"""Write the store and quarantine: duplicates, authority ids, address verdicts, the two inserts."""

from __future__ import annotations

from collections.abc import Callable

import duckdb

from dwatch.ingest.base import (
    AUTHORITY_MAP,
    ROWS,
    SEEN,
    SEEN_HASH,
    TYPED,
    IngestResult,
    _Context,
    _lit,
)
from dwatch.key_classes import KEY_CLASSES, KEY_HASHES, sql_key_hash, sql_key_hashed
from dwatch.mapping import (
    KIND_TABLE,
)
from dwatch.masking import (
    mask_path,
    sql_mask_text,
)
from dwatch.schema import TableSpec, load_schema

# Test hook: called between the writes of one file's transaction (crash injection).
_before_commit: Callable[[], None] | None = None


def _mark_duplicates(
    con: duckdb.DuckDBPyConnection,
    table: TableSpec,
    kind: str,
    runs: list[str] | None = None,
    seen: bool | None = None,
    loading: str | None = None,
) -> None:
    """Quarantine repeats of a key within the file and keys the store already holds.

    ``runs``: TYPED holds a group of files (``_gfile`` indexes this list of their run ids).
    Each file is judged as if loaded alone, in order: repeats within a file first, then
    keys in the store, then keys an earlier file of the group holds ('already loaded by'
    that file's run, as the store would have said had it been committed first).

    ``seen``: TYPED holds one row range of a file (dwatch.ingest.chunks); True when earlier
    ranges left their keys in SEEN: a key there repeats the row that first held it.
    ``loading``: the run of the file those ranges belong to. Its rows already in the store
    are not read again: each one's key is in SEEN, so a later row holding it was marked as
    a repeat before the store is looked at (reading them made the check grow with the
    square of the file: 5.9 CPU-s of a 9.1M-row file's 91)."""
    keys = ", ".join(f"t__{k}" for k in table.key)
    keycols = f"_gfile, {keys}" if runs else keys
    # A duplicate row was well-formed: its raw form is its typed values.
    typed_json = (
        "json_object(" + ", ".join(f"{_lit(f.name)}, t.t__{f.name}" for f in table.fields) + ")"
    )
    label = "event_id" if kind == "events" else "item_no"
    code = "duplicate_event_id" if kind == "events" else "duplicate_item"
    describe = (
        "'event_id ' || t__event_id || ' of ' || t__source_system"
        if kind == "events"
        else "'item ' || t__item_no || ' of request ' || t__request_id"
    )
    # Cheap in the common case: an aggregate over one hash of the key (not the key's
    # strings) finds candidates; the update below matches the real keys, so a hash
    # collision costs a no-op update and never a wrong quarantine.
    # A key repeated within a file is repeated in the group too: with no repeat of the key
    # at all (the common case) a group needs one aggregate, not one per kind of repeat.
    if seen:
        _mark_seen_repeats(con, table, code, label, typed_json, describe)
    repeats = _repeated_keys(con, keys)
    repeated = repeats if not runs or not repeats else _repeated_keys(con, keycols)
    if repeated:
        con.execute(
            f"""
            UPDATE {TYPED} t SET _reason = {_lit(code)}, _field = {_lit(label)}, _message = d.msg, _raw = {typed_json}
            FROM (SELECT _rid, {describe} || ' repeats row ' || first_row || ' of this file' AS msg
                  FROM (SELECT *, first_value(_row) OVER (PARTITION BY {keycols} ORDER BY _row) AS first_row,
                               row_number() OVER (PARTITION BY {keycols} ORDER BY _row) AS n
                        FROM {ROWS}
                        WHERE _reason IS NULL AND ({keycols}) IN (
                            SELECT ({keycols}) FROM {TYPED} WHERE _reason IS NULL
                            GROUP BY {keycols} HAVING count(*) > 1))
                  WHERE n > 1) d
            WHERE t.rowid = d._rid
            """
        )
    if seen is not None:
        _remember_keys(con, table, first=not seen)
    match = " AND ".join(f"e.{k} = t.t__{k}" for k in table.key)
    stored, params = _stored_rows(con, kind, skip_run=loading)
    already = (
        stored is not None
        and con.execute(
            f"SELECT count(*) FROM {TYPED} t WHERE t._reason IS NULL AND EXISTS (SELECT 1 FROM {stored} e WHERE {match})",
            params,
        ).fetchone()[0]
    )
    if already:
        con.execute(
            f"""
            UPDATE {TYPED} t SET _reason = {_lit(code)}, _field = {_lit(label)}, _raw = {typed_json},
                _message = {describe.replace("t__", "t.t__")} || ' was already loaded by ingest run ' || e.ingest_run_id
            FROM {stored} e
            WHERE t._reason IS NULL AND {match}
            """,
            params,
        )
    if runs and repeats:
        _mark_group_repeats(con, keys, code, label, typed_json, describe, runs)


def _mark_seen_repeats(
    con: duckdb.DuckDBPyConnection,
    table: TableSpec,
    code: str,
    label: str,
    typed_json: str,
    describe: str,
) -> None:
    """Rows whose key an earlier row range of the file held: repeats of that row."""
    match = " AND ".join(f"s.{k} = t.t__{k}" for k in table.key)
    # Counted over one hash of the keys first: the update's join carries every column of
    # the work table (measured: 3.2 CPU-s and 656 MB of spill over 3.65M rows with no
    # repeat), and SEEN grows with each range, so comparing the key strings themselves
    # cost 4.8 CPU-s over a 9.1M-row file's ranges (the hash: about a quarter of it).
    # A hash collision only sends the ranges to the update, which matches the real keys.
    keys = ", ".join(f"t__{k}" for k in table.key)
    if not con.execute(
        f"SELECT count(*) FROM (SELECT hash({keys}) AS {SEEN_HASH} FROM {TYPED}"
        f" WHERE _reason IS NULL) t SEMI JOIN {SEEN} s ON s.{SEEN_HASH} = t.{SEEN_HASH}"
    ).fetchone()[0]:
        return
    con.execute(
        f"UPDATE {TYPED} t SET _reason = {_lit(code)}, _field = {_lit(label)}, _raw = {typed_json},"
        f" _message = {describe.replace('t__', 't.t__')} || ' repeats row ' || s._first"
        f" || ' of this file' FROM {SEEN} s WHERE t._reason IS NULL AND {match}"
    )


def _remember_keys(con: duckdb.DuckDBPyConnection, table: TableSpec, *, first: bool) -> None:
    """The keys this row range holds first (repeats already marked), for the next ranges."""
    keys = ", ".join(f"t__{k} AS {k}" for k in table.key)
    hashed = ", ".join(f"t__{k}" for k in table.key)
    select = (
        f"SELECT {keys}, _row AS _first, hash({hashed}) AS {SEEN_HASH} FROM {ROWS}"
        " WHERE _reason IS NULL"
    )
    if first:
        con.execute(f"DROP TABLE IF EXISTS {SEEN}")
        con.execute(f"CREATE TEMP TABLE {SEEN} AS {select}")
    else:
        con.execute(f"INSERT INTO {SEEN} {select}")


def _repeated_keys(con: duckdb.DuckDBPyConnection, keycols: str) -> int:
    """How many keys (by one hash of them) more than one good row of TYPED holds."""
    return con.execute(
        f"SELECT count(*) FROM (SELECT 1 FROM {TYPED} WHERE _reason IS NULL GROUP BY hash({keycols}) HAVING count(*) > 1)"
    ).fetchone()[0]


# The duplicate check's two classes of event ids (migration 0056, dwatch.key_classes).
_NO_CLASSES = (
    "(SELECT NULL::VARCHAR AS ingest_run_id, NULL::VARCHAR AS source_system,"
    " NULL::VARCHAR AS first_plain_id, NULL::VARCHAR AS last_plain_id,"
    " NULL::BIGINT AS hashed_ids WHERE false)"
)


def _has_key_classes(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the store has migration 0056's tables (a store kept at an older migration,
    as tests build, is checked and recorded by key ranges alone)."""
    return bool(
        con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database()"
            " AND schema_name = 'main' AND table_name = ?",
            [KEY_HASHES],
        ).fetchone()[0]
    )


def _stored_rows(
    con: duckdb.DuckDBPyConnection, kind: str, skip_run: str | None = None
) -> tuple[str | None, dict[str, object]]:
    """The store's rows the work table's keys can repeat (SQL and its parameters), or None
    when there are none to read; never those of ``skip_run`` (the run being loaded).

    Events: only rows of runs that may hold one of the batch's keys, so the check costs
    what the batch costs, not what the history holds; a run's rows sit together, so the
    run-id bounds skip the rest of the table by its zone maps. Per (run, source), a plain
    id may be repeated only inside the range of the run's plain ids, a pseudonym only where
    the run holds its hash (``ingest_key_classes``, ``ingest_key_hashes``, migration 0056);
    a run recorded before that is read where its whole key range overlaps the batch's
    (``ingest_key_ranges``, migration 0027). Request items: all rows."""
    if kind != "events":
        if skip_run is None:
            return KIND_TABLE[kind], {}
        return (
            f"(SELECT * FROM {KIND_TABLE[kind]} WHERE ingest_run_id IS DISTINCT FROM $skip_run)",
            {"skip_run": skip_run},
        )
    hashed = sql_key_hashed("t__event_id")
    classes = KEY_CLASSES if _has_key_classes(con) else _NO_CLASSES
    candidates = con.execute(
        "WITH b AS (SELECT source_system, min(event_id) AS lo, max(event_id) AS hi,"
        " min(event_id) FILTER (WHERE NOT hashed) AS plo,"
        " max(event_id) FILTER (WHERE NOT hashed) AS phi,"
        " count(*) FILTER (WHERE hashed) AS n_hashed"
        " FROM (SELECT t__source_system AS source_system, t__event_id AS event_id,"
        f" {hashed} AS hashed FROM {TYPED} WHERE _reason IS NULL) GROUP BY 1)"
        " SELECT r.ingest_run_id,"
        " bool_or(CASE WHEN c.ingest_run_id IS NULL"
        " THEN r.first_event_id <= b.hi AND r.last_event_id >= b.lo"
        " ELSE coalesce(c.first_plain_id <= b.phi AND c.last_plain_id >= b.plo, false) END),"
        " bool_or(coalesce(c.hashed_ids > 0 AND b.n_hashed > 0, false))"
        " FROM ingest_key_ranges r JOIN b ON r.source_system = b.source_system"
        f" LEFT JOIN {classes} c"
        " ON c.ingest_run_id = r.ingest_run_id AND c.source_system = r.source_system"
        " WHERE r.ingest_run_id IS DISTINCT FROM $skip_run GROUP BY 1 ORDER BY 1",
        {"skip_run": skip_run},
    ).fetchall()
    runs = {str(run) for run, read, _ in candidates if read}
    probe = sorted(str(run) for run, read, hashes in candidates if hashes and not read)
    if probe:
        # Only the runs' hashes are read (8 bytes an id, not the ids; 100M, 1% run: 0.6
        # CPU-s where reading the ids cost 7.4), and a run is read below only where one of
        # them is a new pseudonym's. Matched on the hash alone (with the source as well the
        # join cost three times as much): a hash of another source only reads a run more.
        runs |= {
            str(r[0])
            for r in con.execute(
                f"SELECT DISTINCT h.ingest_run_id FROM {KEY_HASHES} h SEMI JOIN"
                f" (SELECT {sql_key_hash('t__event_id')} AS key_hash FROM {TYPED}"
                f" WHERE _reason IS NULL AND {hashed}) n ON h.key_hash = n.key_hash"
                " WHERE h.ingest_run_id >= $first_run AND h.ingest_run_id <= $last_run"
                " AND list_contains($runs::VARCHAR[], h.ingest_run_id)",
                {"first_run": probe[0], "last_run": probe[-1], "runs": probe},
            ).fetchall()
        }
    if not runs:
        return None, {}
    ordered = sorted(runs)
    stored = (
        f"(SELECT * FROM {KIND_TABLE[kind]} WHERE ingest_run_id >= $first_run"
        " AND ingest_run_id <= $last_run AND list_contains($runs::VARCHAR[], ingest_run_id))"
    )
    return stored, {"first_run": ordered[0], "last_run": ordered[-1], "runs": ordered}


def _record_key_ranges(
    con: duckdb.DuckDBPyConnection, kind: str, runs: list[str], grouped: bool
) -> None:
    """Each run's first and last event_id per source system, and its ids by class (the
    range of its plain ids, the hashes of its pseudonyms), for later duplicate checks."""
    if kind != "events":
        return
    run = "($runs::VARCHAR[])[_gfile + 1]" if grouped else "($runs::VARCHAR[])[1]"
    by = f"{'_gfile, ' if grouped else ''}t__source_system"
    con.execute(
        "INSERT INTO ingest_key_ranges (ingest_run_id, source_system, first_event_id, last_event_id)"
        f" SELECT {run}, t__source_system, min(t__event_id), max(t__event_id) FROM {TYPED}"
        f" WHERE _reason IS NULL GROUP BY {by}",
        {"runs": runs},
    )
    if not _has_key_classes(con):
        return
    hashed = sql_key_hashed("t__event_id")
    con.execute(
        f"INSERT INTO {KEY_CLASSES} (ingest_run_id, source_system, first_plain_id,"
        " last_plain_id, hashed_ids)"
        f" SELECT {run}, t__source_system, min(t__event_id) FILTER (WHERE NOT _hashed),"
        " max(t__event_id) FILTER (WHERE NOT _hashed), count(*) FILTER (WHERE _hashed)"
        f" FROM (SELECT {'_gfile, ' if grouped else ''}t__source_system, t__event_id,"
        f" {hashed} AS _hashed FROM {TYPED} WHERE _reason IS NULL) GROUP BY {by}",
        {"runs": runs},
    )
    con.execute(
        f"INSERT INTO {KEY_HASHES} (ingest_run_id, source_system, key_hash)"
        f" SELECT {run}, t__source_system, {sql_key_hash('t__event_id')} FROM {TYPED}"
        f" WHERE _reason IS NULL AND {hashed}",
        {"runs": runs},
    )


def _mark_group_repeats(
    con: duckdb.DuckDBPyConnection,
    keys: str,
    code: str,
    label: str,
    typed_json: str,
    describe: str,
    runs: list[str],
) -> None:
    """A key an earlier file of the group holds: 'already loaded' by that file's run (a
    key with an empty part never matches the store, so never an earlier file either)."""
    not_null = " AND ".join(f"{k} IS NOT NULL" for k in keys.split(", "))
    across = con.execute(
        f"SELECT count(*) FROM (SELECT 1 FROM {TYPED} WHERE _reason IS NULL GROUP BY hash({keys}) HAVING count(*) > 1)"
    ).fetchone()[0]
    if not across:
        return
    con.execute(
        f"""
        UPDATE {TYPED} t SET _reason = {_lit(code)}, _field = {_lit(label)}, _raw = {typed_json},
            _message = {describe.replace("t__", "t.t__")} || ' was already loaded by ingest run ' || d.run
        FROM (SELECT _rid, ($runs::VARCHAR[])[first_file + 1] AS run
              FROM (SELECT _rid, _gfile, min(_gfile) OVER (PARTITION BY {keys}) AS first_file
                    FROM {ROWS} WHERE _reason IS NULL AND {not_null})
              WHERE _gfile > first_file) d
        WHERE t.rowid = d._rid
        """,
        {"runs": runs},
    )


def _derive_authority(con: duckdb.DuckDBPyConnection, kind: str, context: _Context) -> list[str]:
    """authority_id from legal_authority, via the policy registry's normaliser.

    A registry that cannot be loaded does not stop the load: authority_id stays NULL and
    ``dwatch detect`` derives it again once the registry is fixed. Returns warnings."""
    if kind != "events":
        return []
    normalise = context.normaliser()
    if normalise is None:
        if context.registry_problem:
            return [
                f"authority_id left empty: the policy registry did not load ({context.registry_problem})"
            ]
        return []
    distinct = [
        r[0]
        for r in con.execute(
            f"SELECT DISTINCT t__legal_authority FROM {TYPED} WHERE t__legal_authority IS NOT NULL"
        ).fetchall()
    ]
    pairs = [(text, normalise(text)) for text in distinct]
    pairs = [(t, a) for t, a in pairs if a]
    if not pairs:
        return []
    # Few distinct citations: a small map joined at insert time (no update of every row).
    con.execute(
        f"CREATE TEMP TABLE {AUTHORITY_MAP} (legal_authority VARCHAR PRIMARY KEY, authority_id VARCHAR)"
    )
    con.executemany(f"INSERT INTO {AUTHORITY_MAP} VALUES (?, ?)", pairs)
    return []


def _judge_addresses(
    con: duckdb.DuckDBPyConnection, kind: str | None, context: _Context
) -> list[str]:
    """Verdicts for the supplied addresses this batch brings (dwatch/address_verdicts.py),
    each distinct text parsed once, so ``dwatch detect`` only looks them up. A registry that
    cannot be loaded leaves them to detect. Returns warnings."""
    if kind != "request_items":
        return []
    context._load_registry()  # once per ingest call, shared with the citation normaliser
    if context.registry is None:
        problem = context.registry_problem or "no registry"
        return [f"addresses left for detect to judge: the policy registry did not load ({problem})"]
    from dwatch.address import vocabulary_of
    from dwatch.address_verdicts import refresh_address_verdicts

    vocabulary = vocabulary_of(context.registry)  # type: ignore[arg-type]
    judged = context.addresses.take(vocabulary) if context.addresses is not None else None
    refresh_address_verdicts(con, vocabulary, judged=judged)
    return []


def store_columns(con: duckdb.DuckDBPyConnection, table: TableSpec) -> tuple[str, str]:
    """The typed work table's columns as the store's, and the join that resolves each
    citation's authority id when this load has an authority map (else an empty join)."""
    has_map = bool(
        con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE database_name = 'temp' AND table_name = ?",
            [AUTHORITY_MAP.rsplit(".", 1)[1]],
        ).fetchone()[0]
    )
    select = ", ".join(
        "coalesce(m.authority_id, t.t__authority_id)"
        if has_map and f.name == "authority_id"
        else f"t.t__{f.name}"
        for f in table.fields
    )
    join = (
        f" LEFT JOIN {AUTHORITY_MAP} m ON m.legal_authority = t.t__legal_authority"
        if has_map
        else ""
    )
    return select, join


def _write(con: duckdb.DuckDBPyConnection, result: IngestResult, raw_json: str, key: bytes) -> None:
    schema = load_schema()
    kind = result.kind or "events"
    table = schema.events if kind == "events" else schema.items
    target = KIND_TABLE[kind]
    names = table.names
    select, join = store_columns(con, table)
    con.execute(
        f"INSERT INTO {target} ({', '.join(names)}, ingest_run_id, source_row, extra)"
        f" SELECT {select}, ?, t._row, t._extra FROM {ROWS} t{join} WHERE t._reason IS NULL",
        [result.run_id],
    )
    _record_key_ranges(con, kind, [result.run_id], grouped=False)
    header = 1 if (result.file_format == "csv") else 0
    shown_file = mask_path(result.source_file, key)
    _insert_quarantine(con, result, kind, header, raw_json, key)
    rejected = 0
    if con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = '_rejects'").fetchone()[
        0
    ]:
        rejected = con.execute("SELECT count(DISTINCT line) FROM _rejects").fetchone()[0]
        con.execute(
            f"""
            INSERT INTO quarantine (ingest_run_id, source_file, source_row, source_line, kind, reason_code,
                                    field, message, raw_row, stage)
            SELECT ?, ?, line - ?, line, ?,
                   CASE WHEN error_type = 'INVALID ENCODING' THEN 'invalid_utf8'
                        WHEN error_type IN ('MISSING COLUMNS', 'TOO MANY COLUMNS') THEN 'malformed_row'
                        ELSE 'unparseable_row' END,
                   column_name,
                   ? || ' line ' || line || ': ' ||
                   CASE WHEN error_type = 'INVALID ENCODING'
                        THEN 'bytes are not valid UTF-8; re-export the file as UTF-8'
                        WHEN error_type = 'MISSING COLUMNS'
                        THEN 'the record has too few fields (truncated?): ' || error_message
                        WHEN error_type = 'TOO MANY COLUMNS'
                        THEN 'the record has too many fields (unquoted delimiter?): ' || error_message
                        ELSE error_message END,
                   to_json({sql_mask_text("csv_line")}), 'ingest'
            FROM (SELECT DISTINCT ON (line) * FROM _rejects ORDER BY line, column_idx)
            """,
            [result.run_id, shown_file, header, kind, shown_file],
        )
    counts = con.execute(
        f"SELECT count(*) FILTER (WHERE _reason IS NULL), count(*) FILTER (WHERE _reason IS NOT NULL) FROM {TYPED}"
    ).fetchone()
    result.rows_loaded = int(counts[0])
    result.rows_quarantined = int(counts[1]) + int(rejected)
    result.rows_read = result.rows_loaded + result.rows_quarantined
    result.quarantined_by_reason = dict(
        con.execute(
            "SELECT reason_code, count(*) FROM quarantine WHERE ingest_run_id = ? GROUP BY 1 ORDER BY 2 DESC",
            [result.run_id],
        ).fetchall()
    )
    if result.rows_read == 0:
        result.warnings.append(f"{result.source_file}: header only, no records")
    if _before_commit is not None:
        _before_commit()


def _insert_quarantine(
    con: duckdb.DuckDBPyConnection,
    result: IngestResult,
    kind: str,
    header: int,
    raw_json: str,
    key: bytes,
    group: list[IngestResult] | None = None,
) -> None:
    """The quarantined rows of TYPED; of a group's files (``_gfile`` indexes ``group``),
    each under its own run and file name."""
    table = load_schema().events if kind == "events" else load_schema().items
    # Every field the mapping could convert, under canonical names (NULL where it could
    # not), so sequence and coverage checks see the row: it was logged, only malformed.
    canonical = (
        "json_object(" + ", ".join(f"{_lit(f.name)}, t__{f.name}" for f in table.fields) + ")"
    )
    # Reshaped records carry their file line (_line); other rows are numbered from the header.
    reshaped = con.execute(
        "SELECT count(*) FROM duckdb_columns() WHERE table_name = ? AND column_name = '_line'",
        [TYPED.split(".")[-1]],
    ).fetchone()
    line = "coalesce(_line, _row + $header)" if reshaped and reshaped[0] else "_row + $header"
    files = group or [result]
    at = "1" if group is None else "_gfile + 1"
    run, file = f"($run::VARCHAR[])[{at}]", f"($file::VARCHAR[])[{at}]"
    con.execute(
        "INSERT INTO quarantine (ingest_run_id, source_file, source_row, source_line, kind, reason_code, field,"
        " message, raw_row, stage, canonical_row)"
        f" SELECT {run}, {file}, _row,"
        f" CASE WHEN $fmt = 'parquet' THEN NULL ELSE {line} END, $kind,"
        f" _reason, _field, {file} || ' row ' || _row || ': ' || _message, _raw, 'ingest', {canonical}"
        f" FROM {ROWS} WHERE _reason IS NOT NULL",
        {
            "run": [r.run_id for r in files],
            "file": [mask_path(r.source_file, key) for r in files],
            "fmt": result.file_format,
            "header": header,
            "kind": kind,
        },
    )
