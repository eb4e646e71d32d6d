"""Which stored batches the duplicate checks read: those whose key range overlaps a new one's.

The row checks "(source_system, event_id) identifies one row" and "sequence_no is used
once per source_system" look up the new batches' keys among the stored rows. Every batch's
keys are kept as one range per source: event ids by ingest (``ingest_key_ranges``,
migration 0027), sequence numbers by validation (``validation_sequence_ranges``, migration
0033, recorded here when a batch is validated). A stored row can share a key with a new
row only if its batch's range for the same source overlaps the new batch's, so the checks
read the new batches, those overlapping batches, and any loaded batch whose range is not
known (rows with no ingest run too); usually that is the new batches alone. When a new
batch's own range is not known, or every stored batch is to be read anyway, the check
reads the whole table.

Ranges may be wider than the rows (rows moved to quarantine after they were recorded):
the check then reads a little more, never less.

Event ids are looked up finer where ingest kept them by class (``ingest_key_classes``,
``ingest_key_hashes``, migration 0056): an id stored as a keyed pseudonym sorts anywhere,
so at 100M events every batch's id range overlapped the new ones' and the unique-key check
hashed all ~100M stored ids (8.3 CPU-s of a 1% run). Per stored (run, source) with classes
kept, a new plain id can repeat one of its ids only inside the range of its plain ids, a new
pseudonym only where it holds the pseudonym's hash; the new ids are read from the new rows
themselves (not from what ingest kept of them). A (run, source) without classes is read
where its whole range overlaps, as before.
"""

from __future__ import annotations

import duckdb

from dwatch.key_classes import KEY_CLASSES, KEY_HASHES, sql_key_hash, sql_key_hashed

SEQ_RANGES = "validation_sequence_ranges"
EVENT_RANGES = "ingest_key_ranges"
EVENTS = "disclosure_events"
# check id -> (ranges table, its low and high columns)
RANGES = {
    "unique_key": (EVENT_RANGES, "first_event_id", "last_event_id"),
    "sequence_unique": (SEQ_RANGES, "first_seq", "last_seq"),
}
# (ingest run, source_system, lowest, highest) of sequence_no
SeqRange = tuple[str, str, int, int]
# check id -> the runs whose rows the check reads (a check absent: the whole table)
KeyRuns = dict[str, tuple[str, ...]]


# Ranges as four parallel lists: one statement, not one per batch and source.
_UNNEST = (
    "SELECT unnest(?::VARCHAR[]) AS r, unnest(?::VARCHAR[]) AS s, unnest(?::BIGINT[]) AS lo,"
    " unnest(?::BIGINT[]) AS hi"
)


def _columns(seq: list[SeqRange]) -> list[list[str] | list[int]]:
    return [[r[0] for r in seq], [r[1] for r in seq], [r[2] for r in seq], [r[3] for r in seq]]


def runs_to_read(
    con: duckdb.DuckDBPyConnection,
    table: str,
    new: list[str],
    seq: list[SeqRange],
    since: int | None = None,
) -> KeyRuns:
    """For each duplicate check of ``table``, the runs its stored rows may come from.

    ``new``: the runs being checked that hold rows; ``seq``: their sequence number ranges
    (from the rows themselves: validation records them only after its verdicts);
    ``since``: no row of ``new`` lies below this rowid (None: not known, the unique-key
    check is then bounded by whole key ranges alone)."""
    if table != EVENTS or not new:
        return {}
    _load_new_ranges(con, new, seq)
    loaded = {
        r[0]
        for r in con.execute(
            "SELECT run_id FROM ingest_runs WHERE kind = 'events' AND status = 'loaded'"
        ).fetchall()
    }
    out: KeyRuns = {}
    for check_id, (ranges, lo, hi) in RANGES.items():
        # (every loaded run new, as in a first full run: the whole table is read anyway,
        # and reading the new ids by class would only add a pass over all of them)
        if (
            check_id == "unique_key"
            and since is not None
            and not loaded <= set(new)
            and _has_key_classes(con)
        ):
            runs = _holding_keys(con, new, since, loaded)
        else:
            runs = _overlapping(con, new, ranges, lo, hi, loaded)
        if runs is not None and not loaded <= runs:
            out[check_id] = tuple(sorted(runs))
    con.execute("DROP TABLE IF EXISTS _dw_val_new_ranges")
    return out


def _has_key_classes(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the store has migration 0056's tables (one kept at an older migration, as
    tests build, is bounded by key ranges alone)."""
    row = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database()"
        " AND schema_name = 'main' AND table_name IN (?, ?)",
        [KEY_CLASSES, KEY_HASHES],
    ).fetchone()
    return bool(row and row[0] == 2)


def _holding_keys(
    con: duckdb.DuckDBPyConnection, new: list[str], since: int, loaded: set[str]
) -> set[str]:
    """The new runs, stored runs that may hold one of their event ids, and loaded runs with
    no key range.

    Per stored (run, source) of a source the new rows hold: with classes kept, read when
    its plain ids' range overlaps the new plain ids' or it holds a new pseudonym's hash
    (only its hashes are read: 8 bytes an id); without, when its whole range overlaps the
    new ids' (as ``_overlapping``). The new ids are read from their rows (``since`` on)."""
    hashed = sql_key_hashed("event_id")
    where = (
        f"rowid >= {int(since)} AND ingest_run_id IN (SELECT unnest($new::VARCHAR[]))"
        " AND source_system IS NOT NULL AND event_id IS NOT NULL"
    )
    # per new run and source: the range of its ids, of its plain ids, how many are hashed
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _dw_val_new_keys AS SELECT ingest_run_id, source_system,"
        " min(event_id) AS lo, max(event_id) AS hi,"
        " min(event_id) FILTER (WHERE NOT hashed) AS plo,"
        " max(event_id) FILTER (WHERE NOT hashed) AS phi,"
        " count(*) FILTER (WHERE hashed) AS n_hashed"
        f" FROM (SELECT ingest_run_id, source_system, event_id, {hashed} AS hashed"
        f" FROM {EVENTS} WHERE {where}) GROUP BY 1, 2",
        {"new": new},
    )
    candidates = con.execute(
        "SELECT r.ingest_run_id,"
        " bool_or(CASE WHEN c.ingest_run_id IS NULL"
        " THEN r.first_event_id <= b.hi AND r.last_event_id >= b.lo"
        " ELSE coalesce(c.first_plain_id <= b.phi AND c.last_plain_id >= b.plo, false) END),"
        " bool_or(coalesce(c.hashed_ids > 0 AND b.n_hashed > 0, false))"
        f" FROM {EVENT_RANGES} r JOIN _dw_val_new_keys b ON r.source_system = b.source_system"
        f" LEFT JOIN {KEY_CLASSES} c"
        " ON c.ingest_run_id = r.ingest_run_id AND c.source_system = r.source_system"
        " WHERE r.ingest_run_id NOT IN (SELECT unnest($new::VARCHAR[])) GROUP BY 1",
        {"new": new},
    ).fetchall()
    found = set(new) | {str(run) for run, read, _ in candidates if read}
    probe = sorted(str(run) for run, read, hashes in candidates if hashes and not read)
    if probe:
        # Every run holding a new pseudonym's hash, matched on the hash alone: a run of
        # another source, or one read anyway (the new runs hold their own), is only read
        # once more. No filter on the run: one per hashed id cost more than the probe
        # (100M, 1% run: 9.1 against 0.6 CPU-s for 47M hashes).
        con.execute(
            "CREATE OR REPLACE TEMP TABLE _dw_val_new_hashes AS SELECT DISTINCT"
            f" {sql_key_hash('event_id')} AS key_hash FROM {EVENTS} WHERE {where} AND {hashed}",
            {"new": new},
        )
        found.update(
            str(r[0])
            for r in con.execute(
                f"SELECT DISTINCT ingest_run_id FROM {KEY_HASHES}"
                " WHERE key_hash IN (SELECT key_hash FROM _dw_val_new_hashes)"
            ).fetchall()
        )
        con.execute("DROP TABLE IF EXISTS _dw_val_new_hashes")
    con.execute("DROP TABLE IF EXISTS _dw_val_new_keys")
    ranged = {
        r[0] for r in con.execute(f"SELECT DISTINCT ingest_run_id FROM {EVENT_RANGES}").fetchall()
    }
    found.update(loaded - ranged)
    return found


def _load_new_ranges(con: duckdb.DuckDBPyConnection, new: list[str], seq: list[SeqRange]) -> None:
    """``_dw_val_new_ranges``: the new runs' event id ranges (as ingest recorded them)
    and sequence number ranges, per source (``kind`` names the ranges table)."""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _dw_val_new_ranges (kind VARCHAR, ingest_run_id VARCHAR,"
        " source_system VARCHAR, lo_text VARCHAR, hi_text VARCHAR, lo_num BIGINT, hi_num BIGINT)"
    )
    con.execute(
        f"INSERT INTO _dw_val_new_ranges SELECT '{EVENT_RANGES}', ingest_run_id, source_system,"
        f" first_event_id, last_event_id, NULL, NULL FROM {EVENT_RANGES}"
        " WHERE ingest_run_id IN (SELECT unnest(?::VARCHAR[]))",
        [new],
    )
    if seq:
        con.execute(
            f"INSERT INTO _dw_val_new_ranges SELECT '{SEQ_RANGES}', r, s, NULL, NULL, lo, hi"
            f" FROM ({_UNNEST})",
            _columns(seq),
        )


def _overlapping(
    con: duckdb.DuckDBPyConnection,
    new: list[str],
    ranges: str,
    lo: str,
    hi: str,
    loaded: set[str],
) -> set[str] | None:
    """The new runs, stored runs whose range in ``ranges`` overlaps one of theirs for the
    same source, and loaded runs with no range there; None: a new run's range is unknown."""
    kind = "lo_text, hi_text" if ranges == EVENT_RANGES else "lo_num, hi_num"
    lo_new, hi_new = kind.split(", ")
    known = {
        r[0]
        for r in con.execute(
            "SELECT DISTINCT ingest_run_id FROM _dw_val_new_ranges WHERE kind = ?", [ranges]
        ).fetchall()
    }
    if not set(new) <= known:
        return None
    found = set(new)
    found.update(
        r[0]
        for r in con.execute(
            f"SELECT DISTINCT o.ingest_run_id FROM {ranges} o JOIN _dw_val_new_ranges n"
            f" ON n.kind = ? AND n.source_system = o.source_system AND o.{lo} <= n.{hi_new}"
            f" AND o.{hi} >= n.{lo_new}",
            [ranges],
        ).fetchall()
    )
    ranged = {r[0] for r in con.execute(f"SELECT DISTINCT ingest_run_id FROM {ranges}").fetchall()}
    found.update(loaded - ranged)
    return found


def record_sequence_ranges(con: duckdb.DuckDBPyConnection, seq: list[SeqRange]) -> None:
    """Record validated batches' sequence number ranges (replacing any recorded before)."""
    if not seq:
        return
    runs = sorted({r[0] for r in seq})
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(
            f"DELETE FROM {SEQ_RANGES} WHERE ingest_run_id IN (SELECT unnest(?::VARCHAR[]))",
            [runs],
        )
        con.execute(f"INSERT INTO {SEQ_RANGES} SELECT * FROM ({_UNNEST})", _columns(seq))
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
