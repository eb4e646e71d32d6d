"""State the rules keep between runs, so a run judging new batches reads small state tables
and the new rows, never every log whole (issue 18 item 2). Tables: migration 0022.

**Log order** (the rules reading ``dw_sequence_breaks``: gaps, reused numbers, steps back
in time). A log's breaks are where neighbours in its order (sequence number, then time)
disagree, and each break row carries its neighbours. Entries numbered after a log's last
judged entry change nothing before it but that entry's next neighbour, and add their own
rows: so the state keeps every log's breaks (``rule_log_breaks``) and its last entry with
the one before it (``rule_log_tail``), and a batch numbered after the tail is ordered with
the tail alone. The rows come out as a window over the whole log gives them, row for row:
the tail's predecessor is kept, its successor is the first new entry, and the new entries
follow it in the same order. A batch numbering an entry at or before its log's tail (a
late entry, a replayed or reused number), or a tail whose number two entries hold (their
order is not fixed), **reopens** that log: its entries are read whole through the
``source_system`` predicate (zone maps skip other logs' row groups) and its state replaced.

The same pass keeps each log's entries **behind** an earlier one (timed before the latest
time of the entries before them in the log's order), with that latest time
(``rule_log_behind``, migration 0057), and each tail keeps its log's latest time
(``rule_log_tail.latest_at``): whether an entry is behind rests on the entries before it
alone, so a batch after the tail adds its own, judged against the tail's latest time. A
rule pairing entries with the earlier entries they fall behind reads these few rows
(``dw_log_behind``) instead of every entry of every log. They are found without a running
maximum over every entry (:func:`find_behind`): the pass keeps where a log's time dips.

**The batch ledger** (``rule_state_batches``): the batches the state covers and their row
counts. Before a run trusts the state, every batch in the store must be covered with the
same counts, or be new in this run and not covered yet; otherwise (rows deleted, corrected or
quarantined after judging, a batch judged by no one, a batch a run judged without finishing
offered again, no state yet) the state is rebuilt from all history and the run summary says
why. A full judgement (:func:`detectors.engine.run_rules`)
always rebuilds it. A run judging new batches counts only their rows (through the batch
ids, which zone maps compare) and each table's total (kept by the store, no scan): when the
totals are the ledger's plus the new rows, no old batch lost or gained a row through the
pipeline (deleting, quarantining, adding a batch each change a total), and the ledger
grows by the new batches; otherwise every batch is counted, to say which one changed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import duckdb

from detectors import chain_state, custody_state

# Every entry of a log, in or out of the store: an entry quarantined for a bad field still
# holds its number (ingest keeps what it could convert under canonical names in
# canonical_row; older rows and validation's hold the canonical raw form). Repeats are left
# to the duplicate rule. {events} and {quarantined} narrow the rows read.
_EVENT_ENTRIES = """
SELECT source_system, sequence_no, event_id, occurred_at, ingest_run_id, source_row
FROM disclosure_events WHERE sequence_no IS NOT NULL AND ({events})
"""
QUARANTINED_ENTRIES = """SELECT j ->> 'source_system', TRY_CAST(j ->> 'sequence_no' AS BIGINT), j ->> 'event_id',
       NULL::TIMESTAMPTZ, ingest_run_id, source_row
FROM (SELECT coalesce(canonical_row, CASE WHEN json_valid(raw_row) THEN raw_row::JSON END) AS j,
             ingest_run_id, source_row
      FROM quarantine
      WHERE reason_code NOT LIKE 'duplicate%' AND reason_code <> 'expect_key_unique'
        AND ({quarantined}))
WHERE json_type(j) = 'OBJECT' AND j ->> 'source_system' IS NOT NULL
  AND TRY_CAST(j ->> 'sequence_no' AS BIGINT) IS NOT NULL AND ({logs})
"""
_ENTRIES = _EVENT_ENTRIES + "UNION ALL\n" + QUARANTINED_ENTRIES  # (the code version's text)

_COLUMNS = (
    "source_system, sequence_no, event_id, occurred_at, ingest_run_id, source_row,"
    " prev_no, prev_at, next_no, next_event, next_at, next_run, next_row"
)
_BREAK = (
    "(next_no - sequence_no > 1 OR next_no = sequence_no OR prev_no = sequence_no"
    " OR occurred_at < prev_at)"
)

# A dip: an entry timed before the last timed entry before it in its log's order
# (``last_at``: lag IGNORE NULLS; a quarantined entry has no time). Every dip is behind
# an earlier entry; the entries behind one that are not dips follow a dip (see _behind).
_DIP = "(occurred_at < last_at)"

# One ordered pass: each entry with its neighbours, kept where the order breaks, where the
# log ends (its tail) or where it dips. A tail row (is_tail) brings its predecessor from
# the state, and stands in the dips' pass for every entry up to it by its log's latest
# time (t_latest_at): an entry after it is behind an earlier one when timed before that.
_WINDOWED = f"""
SELECT *, {_BREAK} AS is_break FROM (
    SELECT source_system, sequence_no, event_id, occurred_at, ingest_run_id, source_row,
           CASE WHEN is_tail THEN t_prev_no ELSE lag(sequence_no) OVER w END AS prev_no,
           CASE WHEN is_tail THEN t_prev_at ELSE lag(occurred_at) OVER w END AS prev_at,
           lead(sequence_no) OVER w AS next_no, lead(event_id) OVER w AS next_event,
           lead(occurred_at) OVER w AS next_at,
           lead(ingest_run_id) OVER w AS next_run, lead(source_row) OVER w AS next_row,
           lag(CASE WHEN is_tail THEN t_latest_at ELSE occurred_at END IGNORE NULLS) OVER w
               AS last_at,
           lead(occurred_at IGNORE NULLS) OVER w AS coming_at
    FROM ({{rows}})
    WINDOW w AS (PARTITION BY source_system ORDER BY sequence_no, occurred_at)
)
WHERE {_BREAK} OR next_no IS NULL OR {_DIP}
"""
COLUMNS, BREAK, DIP = _COLUMNS, _BREAK, _DIP  # what detectors.log_rows orders the same way


def entries_sql(events: str = "true", quarantined: str = "true", logs: str = "true") -> str:
    """Every numbered entry matching the filters, with no tail rows (``is_tail`` false)."""
    inner = _ENTRIES.format(events=events, quarantined=quarantined, logs=logs)
    return (
        "SELECT *, false AS is_tail, NULL::BIGINT AS t_prev_no, NULL::TIMESTAMPTZ AS t_prev_at,"
        f" NULL::TIMESTAMPTZ AS t_latest_at FROM ({inner})"
    )


def log_rows_sql(table: str = "dw_log_rows", rows: str | None = None) -> str:
    """``table``: the break rows, the dips (``last_at``, ``coming_at``: :func:`find_behind`)
    and each log's last row (``is_break`` tells breaks apart)."""
    return f"CREATE OR REPLACE TEMP TABLE {table} AS " + _WINDOWED.format(
        rows=rows or entries_sql()
    )


SEQUENCE_BREAKS = (
    f"CREATE OR REPLACE TEMP TABLE dw_sequence_breaks AS SELECT {_COLUMNS}"
    " FROM dw_log_rows WHERE is_break"
)

# The entries behind an earlier one (timed before the latest time of the entries before
# them in their log's order), kept as ``rule_log_behind`` and read as ``dw_log_behind``.
BEHIND_COLUMNS = (
    "source_system, sequence_no, event_id, occurred_at, ingest_run_id, source_row, latest_before"
)

# Between two dips a log's times do not fall (a quarantined entry has none), so the latest
# time before an entry is the later of the last time before it (last_at) and the latest
# last_at of the dips up to it: every dip is behind, with that running latest, and the
# entries after a dip timed before it (the first of the stretch to the next dip, whose
# times rise) are too. A stretch holds one only if its first timed entry after the dip
# (coming_at) does. {rows}: the rows of one ordered pass (every dip, each log's last row).
_DIPS = f"""
CREATE OR REPLACE TEMP TABLE dw_log_dips AS
SELECT source_system, sequence_no, event_id, occurred_at, ingest_run_id, source_row, coming_at,
       max(last_at) OVER (d ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS latest_before,
       lead(sequence_no) OVER d AS to_no, lead(occurred_at) OVER d AS to_at
FROM {{rows}} WHERE {_DIP}
WINDOW d AS (PARTITION BY source_system ORDER BY sequence_no, occurred_at)
"""
# The stretches after a dip that hold an entry behind: to the next dip (excluded) or the
# log's last entry. (Dips of a log differ in number or time: an entry equal to the one
# before it in both is no dip.)
_STRETCHES = """
CREATE OR REPLACE TEMP TABLE dw_log_stretches AS
SELECT d.source_system, d.sequence_no AS from_no, d.occurred_at AS from_at,
       d.event_id AS from_event, d.ingest_run_id AS from_run, d.source_row AS from_row,
       coalesce(d.to_no, l.last_no) AS to_no, d.to_at, d.latest_before AS reach
FROM dw_log_dips d
JOIN (SELECT source_system, max(sequence_no) AS last_no FROM {rows} WHERE next_no IS NULL
      GROUP BY ALL) l ON l.source_system IS NOT DISTINCT FROM d.source_system
WHERE d.coming_at >= d.occurred_at AND d.coming_at < d.latest_before
"""
# The entries of those stretches timed before their dip's running latest, each matched to
# its one stretch through buckets of numbers (about 4096 a log; a hash join, not every
# entry paired with every stretch of its log), narrow: the row ids of {table}. {logs}:
# constants on source_system (zone maps skip other logs' row groups).
_STRETCHED = """
CREATE OR REPLACE TEMP TABLE dw_log_stretched AS
WITH widths AS (
    SELECT source_system, min(from_no) AS first_no, max(to_no) AS last_no, max(reach) AS reach,
           greatest(1024, (max(to_no)::HUGEINT - min(from_no)) // 4096 + 1)::BIGINT AS width
    FROM dw_log_stretches GROUP BY source_system
),
buckets AS (
    SELECT s.*, unnest(range(s.from_no // w.width, s.to_no // w.width + 1)) AS bucket
    FROM dw_log_stretches s JOIN widths w USING (source_system)
),
entries AS (
    SELECT e.entry_row, e.source_system, e.sequence_no, e.occurred_at,
           e.sequence_no // w.width AS bucket
    FROM (SELECT rowid AS entry_row, source_system, sequence_no, occurred_at
          FROM disclosure_events WHERE {logs} AND ({where})) e
    JOIN widths w USING (source_system)
    WHERE e.sequence_no BETWEEN w.first_no AND w.last_no AND e.occurred_at < w.reach
)
SELECT x.entry_row, b.reach AS latest_before, b.from_no, b.from_at, b.from_event, b.from_run,
       b.from_row
FROM entries x JOIN buckets b ON b.source_system = x.source_system AND b.bucket = x.bucket
WHERE x.occurred_at < b.reach
  AND (x.sequence_no > b.from_no OR (x.sequence_no = b.from_no AND x.occurred_at >= b.from_at))
  AND (x.sequence_no < b.to_no
       OR (x.sequence_no = b.to_no AND (b.to_at IS NULL OR x.occurred_at < b.to_at)))
"""
# Every dip, and the stretches' entries but their dip (read back by row id: {rows}, the
# least and greatest, constants zone maps compare).
_BEHIND = f"""
CREATE OR REPLACE TEMP TABLE {{target}} AS
SELECT {BEHIND_COLUMNS} FROM dw_log_dips
"""
_BEHIND_STRETCHED = """
INSERT INTO {target}
SELECT e.source_system, e.sequence_no, e.event_id, e.occurred_at, e.ingest_run_id, e.source_row,
       h.latest_before
FROM dw_log_stretched h
JOIN (SELECT rowid AS entry_row, source_system, sequence_no, event_id, occurred_at,
             ingest_run_id, source_row
      FROM disclosure_events WHERE {rows}
        AND rowid IN (SELECT entry_row FROM dw_log_stretched)) e
  USING (entry_row)
WHERE NOT (e.sequence_no = h.from_no AND e.occurred_at = h.from_at
           AND e.event_id IS NOT DISTINCT FROM h.from_event
           AND e.ingest_run_id IS NOT DISTINCT FROM h.from_run
           AND e.source_row IS NOT DISTINCT FROM h.from_row)
"""


def find_behind(
    con: duckdb.DuckDBPyConnection,
    rows: str,
    target: str,
    *,
    where: str = "sequence_no IS NOT NULL",
    on_base: Callable[[str], str] = lambda sql: sql,
) -> None:
    """``target`` (:data:`BEHIND_COLUMNS`): the entries behind an earlier one in their
    log's order, from ``rows`` (one ordered pass's rows: :func:`log_rows_sql`,
    :func:`detectors.log_rows.build`) and the events that pass read (``where``, SQL on
    ``disclosure_events``, which ``on_base`` may rewrite to another table)."""
    con.execute(_DIPS.format(rows=rows))
    con.execute(_STRETCHES.format(rows=rows))
    con.execute(_BEHIND.format(target=target))
    logs = [
        r[0] for r in con.execute("SELECT DISTINCT source_system FROM dw_log_stretches").fetchall()
    ]
    if logs:
        params = {f"log{n}": log for n, log in enumerate(sorted(logs, key=str))}
        named = f"source_system IN ({', '.join('$' + p for p in params)})"
        if None in logs:  # a log without a name: every log's row groups
            named, params = "true", {}
        con.execute(on_base(_STRETCHED.format(logs=named, where=where)), params)
        found = con.execute(
            "SELECT min(entry_row), max(entry_row) FROM dw_log_stretched"
        ).fetchone()
        if found and found[0] is not None:
            rows = f"rowid BETWEEN {int(found[0])} AND {int(found[1])}"
            con.execute(on_base(_BEHIND_STRETCHED.format(target=target, rows=rows)))
        con.execute("DROP TABLE dw_log_stretched")
    con.execute("DROP TABLE dw_log_dips")
    con.execute("DROP TABLE dw_log_stretches")


# Each log's numbered events (``dw_log_sizes``, kept as ``rule_log_sizes``): a run judging
# new batches adds theirs instead of counting every log again. {events} narrows the rows.
_SIZES = (
    "SELECT source_system, count(*) AS entries FROM disclosure_events"
    " WHERE sequence_no IS NOT NULL AND ({events}) GROUP BY source_system"
)
LOG_SIZES = "CREATE OR REPLACE TEMP TABLE dw_log_sizes AS " + _SIZES.format(events="true")


def prepare_log_order(
    con: duckdb.DuckDBPyConnection, on_base: Callable[[str], str], *, whole: bool = False
) -> None:
    """``dw_sequence_breaks``, ``dw_log_behind`` and ``dw_log_sizes`` over the rows
    ``on_base`` reads (``whole``: every log of the store, sorted narrow by
    :mod:`detectors.log_rows`)."""
    if whole:
        from detectors import log_rows  # (it builds on this module)

        log_rows.build(con)
        find_behind(con, "dw_log_rows", "dw_log_behind")
    else:
        con.execute(on_base(log_rows_sql()))
        find_behind(con, "dw_log_rows", "dw_log_behind", on_base=on_base)
    con.execute(SEQUENCE_BREAKS)
    con.execute(on_base(LOG_SIZES))


_TABLES = (
    "rule_state_batches", "rule_state", "rule_log_breaks", "rule_log_tail",
    "rule_recon_sides", "rule_custody_events", "rule_log_sizes", chain_state.TABLE,
    custody_state.REACH_TABLE, "rule_log_behind",
)  # fmt: skip
LOG_ORDER = "log_order"
LOG_CODE_VERSION = hashlib.md5(
    (_ENTRIES + _WINDOWED + _DIPS + _STRETCHES + _STRETCHED + _BEHIND_STRETCHED).encode()
).hexdigest()[:12]


def available(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the store has the state tables (migration 0022)."""
    row = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE NOT temporary"
        " AND table_name IN (SELECT unnest($t::VARCHAR[]))",
        {"t": list(_TABLES)},
    ).fetchone()
    return bool(row) and row[0] == len(_TABLES)


def _save_tails(con: duckdb.DuckDBPyConnection, table: str, behind: str, run_id: str) -> None:
    """Each log's last row of ``table``, with its log's latest time: its own, the last
    before it, or the running latest of its log's dips (in ``behind``)."""
    con.execute(
        "INSERT INTO rule_log_tail (source_system, sequence_no, event_id, occurred_at,"
        " ingest_run_id, source_row, prev_no, prev_at, tied, latest_at, updated_by_run_id)"
        " SELECT r.source_system, r.sequence_no, r.event_id, r.occurred_at, r.ingest_run_id,"
        " r.source_row, r.prev_no, r.prev_at, coalesce(r.prev_no = r.sequence_no, false),"
        " greatest(r.occurred_at, r.last_at, b.latest), $run"
        f" FROM {table} r LEFT JOIN (SELECT source_system, max(latest_before) AS latest"
        f" FROM {behind} GROUP BY ALL) b ON b.source_system IS NOT DISTINCT FROM r.source_system"
        " WHERE r.next_no IS NULL",
        {"run": run_id},
    )


def backfill_behind(con: duckdb.DuckDBPyConnection) -> None:
    """``rule_log_behind`` and each tail's ``latest_at`` from one ordered pass over the
    batches the ledger covers (migration 0057: a state kept before they were)."""
    from detectors import log_rows  # (it builds on this module)

    whole = con.execute(
        "SELECT (SELECT count(*) FROM disclosure_events) = (SELECT coalesce(sum(events), 0)"
        " FROM rule_state_batches) AND (SELECT count(*) FROM quarantine) ="
        " (SELECT coalesce(sum(quarantined), 0) FROM rule_state_batches)"
    ).fetchone()
    covered = (
        "true"
        if whole and whole[0]
        else "coalesce(ingest_run_id, '') IN (SELECT ingest_run_id FROM rule_state_batches)"
    )
    log_rows.build(con, "dw_log_backfill", events=covered, quarantined=covered)
    find_behind(
        con,
        "dw_log_backfill",
        "dw_log_backfill_behind",
        where=f"sequence_no IS NOT NULL AND {covered}",
    )
    con.execute("DELETE FROM rule_log_behind")
    con.execute(
        f"INSERT INTO rule_log_behind SELECT {BEHIND_COLUMNS}, NULL FROM dw_log_backfill_behind"
    )
    con.execute(
        "UPDATE rule_log_tail t SET latest_at = x.latest FROM (SELECT r.source_system,"
        " greatest(r.occurred_at, r.last_at, b.latest) AS latest FROM dw_log_backfill r"
        " LEFT JOIN (SELECT source_system, max(latest_before) AS latest"
        " FROM dw_log_backfill_behind GROUP BY ALL) b USING (source_system)"
        " WHERE r.next_no IS NULL) x WHERE t.source_system = x.source_system"
    )
    con.execute("DROP TABLE dw_log_backfill")
    con.execute("DROP TABLE dw_log_backfill_behind")


def _count_batches(con: duckdb.DuckDBPyConnection) -> None:
    """``dw_batch_counts``: every batch's rows now (one column of each table read)."""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE dw_batch_counts AS"
        " SELECT ingest_run_id, coalesce(e.n, 0) AS events, coalesce(q.n, 0) AS quarantined"
        " FROM (SELECT ingest_run_id, count(*) AS n FROM disclosure_events GROUP BY ALL) e"
        " FULL JOIN (SELECT ingest_run_id, count(*) AS n FROM quarantine GROUP BY ALL) q"
        " USING (ingest_run_id)"
    )


def _totals_hold(con: duckdb.DuckDBPyConnection, batches: list[str]) -> bool:
    """Whether each table's total is the ledger's (less the new batches) plus the new
    batches' rows; if so, ``dw_batch_counts`` is the ledger with the new batches' counts."""
    marks = ", ".join(f"$b{n}" for n in range(len(batches))) or "NULL"
    params = {f"b{n}": b for n, b in enumerate(batches)}
    con.execute(
        "CREATE OR REPLACE TEMP TABLE dw_new_batch_counts AS"
        " SELECT ingest_run_id, coalesce(e.n, 0) AS events, coalesce(q.n, 0) AS quarantined"
        " FROM (SELECT ingest_run_id, count(*) AS n FROM disclosure_events"
        f"  WHERE rowid >= $from AND ingest_run_id IN ({marks}) GROUP BY ALL) e"
        " FULL JOIN (SELECT ingest_run_id, count(*) AS n FROM quarantine"
        f"  WHERE ingest_run_id IN ({marks}) GROUP BY ALL) q USING (ingest_run_id)",
        {**params, "from": new_rows_from(con)},
    )
    row = con.execute(
        "SELECT (SELECT count(*) FROM disclosure_events) = s.events + n.events"
        " AND (SELECT count(*) FROM quarantine) = s.quarantined + n.quarantined"
        " FROM (SELECT coalesce(sum(events), 0) AS events, coalesce(sum(quarantined), 0)"
        "       AS quarantined FROM rule_state_batches"
        "       WHERE NOT list_contains($new, ingest_run_id)) s,"
        " (SELECT coalesce(sum(events), 0) AS events, coalesce(sum(quarantined), 0)"
        "  AS quarantined FROM dw_new_batch_counts) n",
        {"new": batches},
    ).fetchone()
    if not (row and row[0]):
        return False
    con.execute(
        "CREATE OR REPLACE TEMP TABLE dw_batch_counts AS"
        " SELECT ingest_run_id, events, quarantined FROM rule_state_batches"
        " WHERE NOT list_contains($new, ingest_run_id)"
        " UNION ALL SELECT ingest_run_id, events, quarantined FROM dw_new_batch_counts",
        {"new": batches},
    )
    return True


_ROW_GROUP = 122_880  # DuckDB's rows per row group: the least a tail read can skip


def find_new_rows(con: duckdb.DuckDBPyConnection, batches: list[str]) -> int:
    """``dw_new_rows_from``: the row id of disclosure_events from which every row of
    ``batches`` lies (0: from the first row), also returned.

    A batch id compared with zone maps skips nothing when all ids share their first bytes
    (DuckDB keeps a prefix of each string's min and max, and ids of one day share theirs),
    but row ids are compared exactly. Ingest appends, so new rows are the store's last: the
    tail is read, widened until the new rows in it are as many as the total less the
    ledger's old batches (the same check as :func:`_totals_hold`). No ledger, or a tail
    that never adds up (an old batch changed: the state is rebuilt), reads from row 0."""
    marks = ", ".join(f"$b{n}" for n in range(len(batches))) or "NULL"
    params: dict[str, object] = {f"b{n}": b for n, b in enumerate(batches)}
    row = con.execute(
        "SELECT (SELECT count(*) FROM disclosure_events), (SELECT count(*) FROM"
        " rule_state_batches), (SELECT coalesce(sum(events), 0) FROM rule_state_batches"
        " WHERE NOT list_contains($new, ingest_run_id))",
        {"new": batches},
    ).fetchone()
    total, covered, old = (int(v) for v in row) if row else (0, 0, 0)
    first = 0
    tail = max(2 * (total - old), _ROW_GROUP)
    while covered and tail < total:
        found = con.execute(
            "SELECT count(*), min(rowid) FROM disclosure_events"
            f" WHERE rowid >= $from AND ingest_run_id IN ({marks})",
            {**params, "from": total - tail},
        ).fetchone()
        if found and found[0] == total - old:
            first = int(found[1]) if found[0] else total
            break
        tail *= 4
    con.execute(
        "CREATE OR REPLACE TEMP TABLE dw_new_rows_from AS SELECT $f::BIGINT AS row_id", {"f": first}
    )
    return first


def new_rows_from(con: duckdb.DuckDBPyConnection) -> int:
    """The row id :func:`find_new_rows` found this judgement (0 when none was sought)."""
    kept = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE temporary AND table_name = 'dw_new_rows_from'"
    ).fetchone()
    if not kept or not kept[0]:
        return 0
    row = con.execute("SELECT max(row_id) FROM dw_new_rows_from").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def _save_ledger(con: duckdb.DuckDBPyConnection, run_id: str) -> None:
    con.execute("DELETE FROM rule_state_batches")
    con.execute(
        "INSERT INTO rule_state_batches SELECT coalesce(ingest_run_id, ''), events, quarantined,"
        " $run FROM dw_batch_counts",
        {"run": run_id},
    )


def _save_version(
    con: duckdb.DuckDBPyConnection, family: str, registry: str | None, code: str, run_id: str
) -> None:
    con.execute("DELETE FROM rule_state WHERE family = $f", {"f": family})
    con.execute(
        "INSERT INTO rule_state VALUES ($f, $r, $c, $run)",
        {"f": family, "r": registry, "c": code, "run": run_id},
    )


def _save_log_order(con: duckdb.DuckDBPyConnection, run_id: str) -> None:
    """From ``dw_log_rows`` over every log: the log-order state, whole."""
    con.execute("DELETE FROM rule_log_breaks")
    con.execute("DELETE FROM rule_log_tail")
    con.execute("DELETE FROM rule_log_behind")
    con.execute(f"INSERT INTO rule_log_breaks SELECT {_COLUMNS} FROM dw_log_rows WHERE is_break")
    _save_tails(con, "dw_log_rows", "dw_log_behind", run_id)
    con.execute(
        f"INSERT INTO rule_log_behind SELECT {BEHIND_COLUMNS}, $run FROM dw_log_behind",
        {"run": run_id},
    )
    con.execute("DELETE FROM rule_log_sizes")
    con.execute(
        "INSERT INTO rule_log_sizes SELECT source_system, entries, $run FROM dw_log_sizes",
        {"run": run_id},
    )
    _save_version(con, LOG_ORDER, None, LOG_CODE_VERSION, run_id)


def _save_custody(con: duckdb.DuckDBPyConnection, run_id: str, registry_version: str) -> None:
    # the full judgement wrote the rows in place (detectors.custody_state.prepare_custody)
    _save_version(con, custody_state.FAMILY, registry_version, custody_state.CODE_VERSION, run_id)


def save_full(con: duckdb.DuckDBPyConnection, run_id: str, registry_version: str) -> bool:
    """After a full judgement prepared every view over all history: the state, whole."""
    if not available(con):
        return False
    con.execute("DROP TABLE IF EXISTS dw_new_rows_from")  # a later run finds its own
    _save_log_order(con, run_id)
    _save_custody(con, run_id, registry_version)
    # the full judgement rebuilt the kept chain links (detectors.engine._evaluate)
    _save_version(con, chain_state.FAMILY, registry_version, chain_state.CODE_VERSION, run_id)
    _count_batches(con)
    _save_ledger(con, run_id)
    return True


def _stale_because(con: duckdb.DuckDBPyConnection, batches: list[str]) -> str | None:
    """Why the state does not describe the store before ``batches``, or None."""
    again = con.execute(
        "SELECT count(*), min(ingest_run_id) FROM rule_state_batches"
        " WHERE list_contains($new, ingest_run_id)",
        {"new": batches},
    ).fetchone()
    if again and again[0]:
        # judged by a run that did not finish: its rows are in the state already
        return f"{again[0]} new batch(es) are in the state already (batch {again[1]})"
    covered = con.execute("SELECT count(*) FROM rule_state_batches").fetchone()
    if covered and covered[0] and _totals_hold(con, batches):
        return None
    _count_batches(con)
    row = con.execute(
        "SELECT count(*), min(coalesce(n.ingest_run_id, s.ingest_run_id)),"
        " arg_min(CASE WHEN s.ingest_run_id IS NULL THEN 'is covered by no state'"
        "  WHEN n.ingest_run_id IS NULL THEN 'left the store'"
        "  ELSE 'has ' || n.events || ' event(s) and ' || n.quarantined || ' quarantined row(s),'"
        "  || ' ' || s.events || ' and ' || s.quarantined || ' when its state was kept' END,"
        "  coalesce(n.ingest_run_id, s.ingest_run_id))"
        " FROM (SELECT coalesce(ingest_run_id, '') AS ingest_run_id, events, quarantined"
        "       FROM dw_batch_counts) n"
        " FULL JOIN rule_state_batches s USING (ingest_run_id)"
        " WHERE NOT list_contains($new, coalesce(n.ingest_run_id, s.ingest_run_id))"
        " AND (s.ingest_run_id IS NULL OR n.ingest_run_id IS NULL"
        "      OR n.events <> s.events OR n.quarantined <> s.quarantined)",
        {"new": batches},
    ).fetchone()
    if not row or not row[0]:
        return None
    if covered and covered[0] == 0:
        return "no state kept yet"
    return f"{row[0]} old batch(es) changed since the state was kept (batch {row[1]} {row[2]})"


def _planned(con: duckdb.DuckDBPyConnection, reopened: bool) -> bool:
    row = con.execute(
        f"SELECT count(*) FROM dw_log_plan WHERE reopened IS {'NOT ' if reopened else ''}NULL"
    ).fetchone()
    return bool(row and row[0])


def _append(con: duckdb.DuckDBPyConnection) -> None:
    """Logs whose new entries all follow the tail: ordered with the tail alone."""
    if not _planned(con, reopened=False):
        return
    tails = (
        "SELECT source_system, sequence_no, event_id, occurred_at, ingest_run_id, source_row,"
        " true AS is_tail, prev_no AS t_prev_no, prev_at AS t_prev_at, latest_at AS t_latest_at"
        " FROM rule_log_tail"
        " WHERE source_system IN (SELECT source_system FROM dw_log_plan WHERE reopened IS NULL)"
    )
    fresh = (
        "SELECT * FROM dw_log_new WHERE source_system IN"
        " (SELECT source_system FROM dw_log_plan WHERE reopened IS NULL)"
    )
    con.execute(log_rows_sql("dw_log_appended", f"{tails} UNION ALL {fresh}"))
    con.execute(
        "DELETE FROM rule_log_breaks b USING rule_log_tail t"
        " WHERE t.source_system IN (SELECT source_system FROM dw_log_plan WHERE reopened IS NULL)"
        " AND b.source_system = t.source_system AND b.sequence_no = t.sequence_no"
        " AND b.event_id IS NOT DISTINCT FROM t.event_id"
        " AND b.ingest_run_id IS NOT DISTINCT FROM t.ingest_run_id"
        " AND b.source_row IS NOT DISTINCT FROM t.source_row"
    )
    con.execute(
        f"INSERT INTO rule_log_breaks SELECT {_COLUMNS} FROM dw_log_appended WHERE is_break"
    )
    # the new entries behind an earlier one: the tail stands for the entries up to it
    find_behind(
        con,
        "dw_log_appended",
        "dw_log_appended_behind",
        where="true",
        on_base=lambda sql: sql.replace("FROM disclosure_events", "FROM dw_log_new"),
    )


def _reopen(con: duckdb.DuckDBPyConnection) -> None:
    """Logs a new entry reaches back into: read whole through their name."""
    if not _planned(con, reopened=True):
        return
    logs = "(SELECT source_system FROM dw_log_plan WHERE reopened IS NOT NULL)"
    from detectors import log_rows  # (it builds on this module)

    log_rows.build(
        con,
        "dw_log_reopened",
        events=f"source_system IN {logs}",
        logs=f"j ->> 'source_system' IN {logs}",
    )
    find_behind(
        con,
        "dw_log_reopened",
        "dw_log_reopened_behind",
        where=f"sequence_no IS NOT NULL AND source_system IN {logs}",
    )
    con.execute(f"DELETE FROM rule_log_breaks WHERE source_system IN {logs}")
    con.execute(f"DELETE FROM rule_log_behind WHERE source_system IN {logs}")
    con.execute(
        f"INSERT INTO rule_log_breaks SELECT {_COLUMNS} FROM dw_log_reopened WHERE is_break"
    )


def stale(
    con: duckdb.DuckDBPyConnection, batches: list[str], registry_version: str
) -> dict[str, str | None]:
    """Per kind of state, why it must be rebuilt from all history before this run (None:
    it describes the store before ``batches`` and can be brought up to date with them)."""
    ledger = _stale_because(con, batches)
    kept = {
        family: (registry, code)
        for family, registry, code in con.execute(
            "SELECT family, registry_version, code_version FROM rule_state"
        ).fetchall()
    }
    wanted = {
        LOG_ORDER: (None, LOG_CODE_VERSION),  # the order of a log needs no registry
        custody_state.FAMILY: (registry_version, custody_state.CODE_VERSION),
        chain_state.FAMILY: (registry_version, chain_state.CODE_VERSION),
    }
    reasons: dict[str, str | None] = {}
    for family, (registry, code) in wanted.items():
        if ledger is not None:
            reasons[family] = ledger
        elif family not in kept:
            reasons[family] = "no state kept yet"
        elif kept[family][0] != registry:
            reasons[family] = f"it was derived under registry version {kept[family][0]}"
        elif kept[family][1] != code:
            reasons[family] = (
                "it was derived by other code (detectors.custody/rule_state/chain_state)"
            )
        else:
            reasons[family] = None
    return reasons


def finish(con: duckdb.DuckDBPyConnection, run_id: str, registry_version: str) -> None:
    """The state now covers every batch in the store (as counted by :func:`stale`)."""
    _save_ledger(con, run_id)
    _save_version(con, LOG_ORDER, None, LOG_CODE_VERSION, run_id)
    _save_version(con, custody_state.FAMILY, registry_version, custody_state.CODE_VERSION, run_id)
    _save_version(con, chain_state.FAMILY, registry_version, chain_state.CODE_VERSION, run_id)


def _add_sizes(
    con: duckdb.DuckDBPyConnection, run_id: str, new_rows: str, params: dict[str, object]
) -> None:
    """Add the new rows' counts to ``rule_log_sizes`` (every old batch is as it was counted:
    :func:`stale`) and expose them as ``dw_log_sizes``."""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE dw_log_sizes AS SELECT source_system, sum(entries)::BIGINT"
        " AS entries FROM (SELECT source_system, entries FROM rule_log_sizes UNION ALL "
        + _SIZES.format(events=new_rows)
        + ") GROUP BY source_system",
        params,
    )
    con.execute("DELETE FROM rule_log_sizes")
    con.execute(
        "INSERT INTO rule_log_sizes SELECT source_system, entries, $run FROM dw_log_sizes",
        {"run": run_id},
    )


def update_log_order(
    con: duckdb.DuckDBPyConnection, *, run_id: str, batches: list[str], rebuild: str | None
) -> list[str]:
    """Bring the log-order state up to date with ``batches`` (or rebuild it whole: the
    reason ``rebuild``) and expose it as ``dw_sequence_breaks``; returns the run
    summary's lines on what was read and why."""
    if rebuild is not None:
        prepare_log_order(con, lambda sql: sql, whole=True)
        _save_log_order(con, run_id)
        return [f"log order: state rebuilt from every log whole: {rebuild}"]
    con.execute(log_rows_sql("dw_log_rows_empty", entries_sql(events="false", quarantined="false")))
    marks = ", ".join(f"$b{n}" for n in range(len(batches))) or "NULL"
    params = {f"b{n}": b for n, b in enumerate(batches)}
    new_rows = f"ingest_run_id IN ({marks})"
    con.execute(
        "CREATE OR REPLACE TEMP TABLE dw_log_new AS "
        + entries_sql(events=f"rowid >= $from AND {new_rows}", quarantined=new_rows),
        {**params, "from": new_rows_from(con)},
    )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE dw_log_plan AS"
        " SELECT n.source_system, min(n.sequence_no) AS first_new, count(*) AS entries,"
        " any_value(t.sequence_no) AS tail_no,"
        " CASE WHEN any_value(t.tied) THEN 'its last judged number ' || any_value(t.sequence_no)"
        "  || ' is held by two entries'"
        "  WHEN min(n.sequence_no) <= any_value(t.sequence_no) THEN 'a new entry is numbered '"
        "  || min(n.sequence_no) || ', at or before its last judged entry '"
        "  || any_value(t.sequence_no) END AS reopened"
        " FROM dw_log_new n LEFT JOIN rule_log_tail t USING (source_system)"
        " GROUP BY n.source_system"
    )
    for name, step in (("dw_log_appended", _append), ("dw_log_reopened", _reopen)):
        con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM dw_log_rows_empty")
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {name}_behind AS SELECT {BEHIND_COLUMNS}"
            " FROM rule_log_behind WHERE false"
        )
        step(con)
    con.execute(
        "DELETE FROM rule_log_tail WHERE source_system IN (SELECT source_system FROM dw_log_plan)"
    )
    for name in ("dw_log_appended", "dw_log_reopened"):
        _save_tails(con, name, f"{name}_behind", run_id)
        con.execute(
            f"INSERT INTO rule_log_behind SELECT {BEHIND_COLUMNS}, $run FROM {name}_behind",
            {"run": run_id},
        )
    con.execute(  # copies: the breaks and entries behind are few; prepare's tables' names
        f"CREATE OR REPLACE TEMP TABLE dw_sequence_breaks AS SELECT {_COLUMNS} FROM rule_log_breaks"
    )
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE dw_log_behind AS SELECT {BEHIND_COLUMNS} FROM rule_log_behind"
    )
    _add_sizes(
        con, run_id, f"rowid >= $from AND {new_rows}", {**params, "from": new_rows_from(con)}
    )
    plan = con.execute(
        "SELECT count(*) FILTER (WHERE reopened IS NULL), sum(entries) FILTER (WHERE reopened IS NULL),"
        " list(source_system || ' (' || reopened || ')' ORDER BY source_system)"
        " FILTER (WHERE reopened IS NOT NULL) FROM dw_log_plan"
    ).fetchone()
    appended, entries, reopened = plan if plan else (0, 0, [])
    lines = [
        f"log order: {appended or 0} log(s) continued from their last judged entry"
        f" ({entries or 0:,} new entries read, no old ones)"
    ]
    if reopened:
        lines.append(
            f"log order: {len(reopened)} log(s) read whole, a new entry reaching back into"
            f" them: {'; '.join(reopened[:5])}"
            + (f"; and {len(reopened) - 5} more" if len(reopened) > 5 else "")
        )
    return lines
