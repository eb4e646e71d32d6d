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

# One ordered pass: each entry with its neighbours, kept where the order breaks or where
# the log ends (its tail). A tail row (is_tail) brings its predecessor from the state.
_WINDOWED = f"""
SELECT *, {_BREAK} AS is_break FROM (
    SELECT source_system, sequence_no, event_id, occurred_at, ingest_run_id, source_row,
           CASE WHEN is_tail THEN t_prev_no ELSE lag(sequence_no) OVER w END AS prev_no,
           CASE WHEN is_tail THEN t_prev_at ELSE lag(occurred_at) OVER w END AS prev_at,
           lead(sequence_no) OVER w AS next_no, lead(event_id) OVER w AS next_event,
           lead(occurred_at) OVER w AS next_at,
           lead(ingest_run_id) OVER w AS next_run, lead(source_row) OVER w AS next_row
    FROM ({{rows}})
    WINDOW w AS (PARTITION BY source_system ORDER BY sequence_no, occurred_at)
)
WHERE {_BREAK} OR next_no IS NULL
"""
COLUMNS, BREAK = _COLUMNS, _BREAK  # what detectors.log_rows orders the same way


def entries_sql(events: str = "true", quarantined: str = "true", logs: str = "true") -> str:
    """Every numbered entry matching the filters, with no tail rows (``is_tail`` false)."""
    inner = _ENTRIES.format(events=events, quarantined=quarantined, logs=logs)
    return (
        "SELECT *, false AS is_tail, NULL::BIGINT AS t_prev_no, NULL::TIMESTAMPTZ AS t_prev_at"
        f" FROM ({inner})"
    )


def log_rows_sql(table: str = "dw_log_rows", rows: str | None = None) -> str:
    """``table``: the break rows and each log's last row (``is_break`` tells them apart)."""
    return f"CREATE OR REPLACE TEMP TABLE {table} AS " + _WINDOWED.format(
        rows=rows or entries_sql()
    )


SEQUENCE_BREAKS = (
    f"CREATE OR REPLACE TEMP TABLE dw_sequence_breaks AS SELECT {_COLUMNS}"
    " FROM dw_log_rows WHERE is_break"
)

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
    """``dw_sequence_breaks`` and ``dw_log_sizes`` over the rows ``on_base`` reads
    (``whole``: every log of the store, sorted narrow by :mod:`detectors.log_rows`)."""
    if whole:
        from detectors import log_rows  # (it builds on this module)

        log_rows.build(con)
    else:
        con.execute(on_base(log_rows_sql()))
    con.execute(SEQUENCE_BREAKS)
    con.execute(on_base(LOG_SIZES))


_TABLES = (
    "rule_state_batches", "rule_state", "rule_log_breaks", "rule_log_tail",
    "rule_recon_sides", "rule_custody_events", "rule_log_sizes", chain_state.TABLE,
    custody_state.REACH_TABLE,
)  # fmt: skip
LOG_ORDER = "log_order"
LOG_CODE_VERSION = hashlib.md5((_ENTRIES + _WINDOWED).encode()).hexdigest()[:12]


def available(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the store has the state tables (migration 0022)."""
    row = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE NOT temporary"
        " AND table_name IN (SELECT unnest($t::VARCHAR[]))",
        {"t": list(_TABLES)},
    ).fetchone()
    return bool(row) and row[0] == len(_TABLES)


def _save_tails(con: duckdb.DuckDBPyConnection, table: str, run_id: str) -> None:
    con.execute(
        "INSERT INTO rule_log_tail SELECT source_system, sequence_no, event_id, occurred_at,"
        " ingest_run_id, source_row, prev_no, prev_at, coalesce(prev_no = sequence_no, false),"
        f" $run FROM {table} WHERE next_no IS NULL",
        {"run": run_id},
    )


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
    con.execute(f"INSERT INTO rule_log_breaks SELECT {_COLUMNS} FROM dw_log_rows WHERE is_break")
    _save_tails(con, "dw_log_rows", run_id)
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
        " true AS is_tail, prev_no AS t_prev_no, prev_at AS t_prev_at FROM rule_log_tail"
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
    con.execute(f"DELETE FROM rule_log_breaks WHERE source_system IN {logs}")
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
        step(con)
    con.execute(
        "DELETE FROM rule_log_tail WHERE source_system IN (SELECT source_system FROM dw_log_plan)"
    )
    _save_tails(con, "dw_log_appended", run_id)
    _save_tails(con, "dw_log_reopened", run_id)
    con.execute(  # a copy: the breaks are few, and prepare's table has this name
        f"CREATE OR REPLACE TEMP TABLE dw_sequence_breaks AS SELECT {_COLUMNS} FROM rule_log_breaks"
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
