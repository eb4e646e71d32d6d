"""Old batches checked again for their open coverage gaps, from what their last check kept.

An old events batch with open sequence gaps or silences is checked again when new rows of
its sources arrive (``selecting.batches_reopened``). Reading it whole costs its size, and
a log's first batch holds its whole history. But its rows have not changed since its last
check, and rows only arrive: a sequence gap can only be filled or split by numbers inside
it, a silence only split by events inside it, and what passed stays passed unless the
source's silence limit shrank below the longest stretch that passed. So each check keeps,
per batch and source (``validation_coverage_kept``, migration 0036), the rows it checked,
their window and that longest stretch (``coverage.silence_pass_max_query``); the open gaps
are its failed outcomes in ``validation_results``. A revisit then reads:

- the new batches' rows of the batch's sources (a rowid bound) and the quarantined rows
  whose numbers still count (``coverage.HELD_NUMBERS``, as the sequence gap check reads);
- each source's rhythm and longest gaps from the per-source state, brought up to date
  with the new rows first (``state.update``);

and gives the outcomes checking the batch whole would give (same SQL for the messages).

A batch is checked whole as before (``split``) when what was kept cannot stand for it:
nothing kept from its latest check, a kept stretch unknown (rows moved in that run), a
gap not listed (more than ``max_gap_rows``) or not understood, a failure of another
check, a new batch loaded before it, a batch of one of its sources checked after it, a
new batch validated before (its rows may have moved), a loaded batch left unvalidated,
or (``revisit``) a source's limit now below the stretch that passed.
"""

from __future__ import annotations

import logging
from datetime import datetime

import duckdb

from dwatch.store import transaction
from dwatch.validate.config import ValidationConfig
from dwatch.validate.coverage import (
    HELD_NUMBERS,
    LIMIT_CTE,
    SEQUENCE_GAP_SELECT,
    _limit_of,
    _quiet_spell_cte,
    _window_case,
    silence_select,
)
from dwatch.validate.report import BatchReport, Outcome, write_outcomes
from dwatch.validate.selecting import Batch
from dwatch.validate.setwise import SILENCE_CHECK, Findings, GapRow, Setting
from dwatch.validate.suites import Check, sql_literal
from dwatch.validate.verdicts import gap_outcomes

log = logging.getLogger(__name__)

TABLE = "disclosure_events"
KEPT = "validation_coverage_kept"
STATE = "validation_source_state"
SEQUENCE_CHECK = "expect_sequence_no_without_gaps(sequence_no)"
TYPES_CHECK = "expect_columns_of_canonical_type"
SUITE = f"canonical.{TABLE}"


def _in(values: list[str] | set[str]) -> str:
    if not values:
        return "(SELECT NULL::VARCHAR WHERE FALSE)"
    return "(" + ", ".join(sql_literal(v) for v in sorted(values)) + ")"


def keep(
    con: duckdb.DuckDBPyConnection,
    reports: list[BatchReport],
    findings: Findings,
    validation_run_id: str,
    started_at: datetime | None,
) -> None:
    """Keep, per events batch just judged and source, what a later revisit needs (its
    earlier rows dropped). A batch that failed to validate keeps nothing (checked whole)."""
    if started_at is None or not reports:
        return
    survey, pass_max = findings.survey, findings.pass_max
    rows = []
    for br in reports:
        run_id = br.ingest_run_id
        if br.error or run_id is None:
            continue
        windows = {w[0]: (w[1], w[2]) for w in survey.windows.get(run_id, [])}
        for (rid, source), n in survey.cells.items():
            if rid != run_id:
                continue
            stretch, lo, hi = pass_max.get((rid, source), (None, None, None))
            start, end = windows.get(source, (None, None))
            rows.append(
                (run_id, source, validation_run_id, started_at, n, start, end, stretch, lo, hi)
            )
    ids = sorted({r.ingest_run_id for r in reports if r.ingest_run_id})
    with transaction(con):
        con.execute(f"DELETE FROM {KEPT} WHERE ingest_run_id IN {_in(ids)}")
        if rows:  # one statement (executemany is a statement a row)
            values = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"] * len(rows))
            con.execute(f"INSERT INTO {KEPT} VALUES {values}", [v for r in rows for v in r])


def forget_moved(
    con: duckdb.DuckDBPyConnection, reports: list[BatchReport], validation_run_id: str
) -> None:
    """Rows moved to quarantine in this run: a batch whose gaps were found before the move
    and whose bounds hold a moved row of its source no longer knows what passed, nor does
    a batch that lost rows (its rows were counted before)."""
    movers = [br.ingest_run_id for br in reports if br.rows_quarantined and br.ingest_run_id]
    if not movers:
        return
    con.execute(
        f"UPDATE {KEPT} k SET silence_pass_max = NULL WHERE k.validation_run_id = ?"
        f" AND (k.ingest_run_id IN {_in(movers)} OR EXISTS (SELECT 1 FROM"
        " (SELECT j ->> 'source_system' AS source_system,"
        " TRY_CAST(j ->> 'occurred_at' AS TIMESTAMPTZ) AS t FROM (SELECT raw_row::JSON AS j"
        f" FROM quarantine WHERE stage = 'validate' AND ingest_run_id IN {_in(movers)}"
        " AND json_valid(raw_row))) m WHERE m.source_system = k.source_system"
        " AND m.t BETWEEN k.bound_lo AND k.bound_hi))",
        [validation_run_id],
    )


def split(
    con: duckdb.DuckDBPyConnection, again: list[Batch], pending: list[Batch], validation_run_id: str
) -> tuple[list[Batch], list[Batch]]:
    """(quick, whole): the old batches whose revisit can read what was kept, and the rest
    (``validation_run_id``: this run, which may have moved impossible instants already)."""
    candidates = [b.run_id for b in again if b.table == TABLE]
    if not candidates:
        return [], again
    new = [b.run_id for b in pending]
    blocked = con.execute(
        "SELECT (SELECT count(*) FROM validation_results WHERE ingest_run_id IN"
        f" {_in(new)} AND validation_run_id <> {sql_literal(validation_run_id)}),"
        " (SELECT count(*) FROM ingest_runs WHERE status = 'loaded'"
        f" AND kind IN ('events', 'request_items') AND run_id NOT IN {_in(new)}"
        " AND run_id NOT IN (SELECT DISTINCT ingest_run_id FROM validation_results"
        " WHERE ingest_run_id IS NOT NULL))"
    ).fetchall()[0]
    if any(blocked):
        return [], again
    ok = {r[0] for r in con.execute(_usable_sql(candidates, new)).fetchall()}
    quick = [b for b in again if b.run_id in ok]
    return quick, [b for b in again if b.run_id not in ok]


def _latest(ids: list[str]) -> str:
    return (
        "SELECT ingest_run_id, max_by(validation_run_id, validated_at) AS vr"
        f" FROM validation_results WHERE ingest_run_id IN {_in(ids)} GROUP BY 1"
    )


def _usable_sql(candidates: list[str], new: list[str]) -> str:
    order = "(coalesce({0}.started_at, '-infinity'::TIMESTAMPTZ), {0}.run_id)"
    complete = (
        f"CASE v.expectation WHEN {sql_literal(SEQUENCE_CHECK)} THEN v.source_system"
        " IS NOT NULL AND TRY_CAST(v.observed ->> 'missing_from' AS BIGINT) IS NOT NULL"
        " AND TRY_CAST(v.observed ->> 'missing_to' AS BIGINT) IS NOT NULL"
        f" WHEN {sql_literal(SILENCE_CHECK)} THEN v.source_system IS NOT NULL"
        " AND v.window_start IS NOT NULL AND v.window_end IS NOT NULL ELSE FALSE END"
    )
    return (
        f"WITH latest AS ({_latest(candidates)}),"
        f" mine AS (SELECT k.* FROM {KEPT} k JOIN latest l"
        " ON l.ingest_run_id = k.ingest_run_id AND l.vr = k.validation_run_id),"
        " kept AS (SELECT ingest_run_id FROM mine GROUP BY 1"
        " HAVING bool_and(source_system IS NULL OR silence_pass_max IS NOT NULL)),"
        f" newer AS (SELECT DISTINCT m.ingest_run_id FROM mine m JOIN {KEPT} k"
        " ON k.source_system = m.source_system AND k.ingest_run_id <> m.ingest_run_id"
        " AND k.run_started_at > m.run_started_at),"
        " early AS (SELECT DISTINCT o.run_id FROM ingest_runs o, ingest_runs p"
        f" WHERE o.run_id IN {_in(candidates)} AND p.run_id IN {_in(new)}"
        f" AND {order.format('p')} <= {order.format('o')}),"
        " failed AS (SELECT v.ingest_run_id, v.expectation, count(*) AS n,"
        f" max(v.unexpected_count) AS listed, bool_and({complete}) AS complete"
        " FROM validation_results v JOIN latest l ON l.ingest_run_id = v.ingest_run_id"
        " AND l.vr = v.validation_run_id WHERE NOT v.success AND v.scope = 'batch'"
        " GROUP BY 1, 2),"
        " unusable AS (SELECT ingest_run_id FROM failed WHERE NOT complete OR n <> listed"
        " UNION ALL SELECT ingest_run_id FROM newer UNION ALL SELECT run_id FROM early)"
        " SELECT ingest_run_id FROM kept WHERE ingest_run_id NOT IN"
        " (SELECT ingest_run_id FROM unusable)"
    )


def revisit(
    con: duckdb.DuckDBPyConnection,
    batches: list[Batch],
    pending: list[str],
    checks: list[Check],
    types_clean: bool,
    setting: Setting,
    validation_run_id: str,
) -> tuple[list[BatchReport], list[Batch]]:
    """Check ``batches`` again from what was kept (the per-source state brought up to date
    with the new rows first); returns their reports and the batches to check whole."""
    if not batches or not types_clean or setting.started_at is None:
        return [], batches
    ids = [b.run_id for b in batches]
    if any(c.name not in (TYPES_CHECK, SEQUENCE_CHECK, SILENCE_CHECK) for c in checks):
        return [], batches  # a check this module does not know how to carry on
    if not _new_rows_in_place(con, pending, setting.since.get(TABLE, 0)):
        return [], batches
    _read_kept(con, ids, pending, setting.since.get(TABLE, 0))
    _limits(con, setting)
    short = {
        r[0]
        for r in con.execute(
            "SELECT DISTINCT k.ingest_run_id FROM _dw_rv_kept k LEFT JOIN _dw_rv_lim l"
            " USING (source_system) WHERE k.source_system IS NOT NULL"
            " AND (l.limit_s IS NULL OR k.silence_pass_max > l.limit_s)"
        ).fetchall()
    }
    quick = [b for b in batches if b.run_id not in short]
    whole = [b for b in batches if b.run_id in short]
    if not quick:
        return [], whole
    con.execute(_pieces_sql(), {"ids": [b.run_id for b in quick]})
    found = {
        SEQUENCE_CHECK: _gap_rows(con, _sequence_sql(), quick),
        SILENCE_CHECK: _gap_rows(con, _silence_select(setting), quick),
    }
    reports = _reports(con, quick, checks, found, setting.config)
    with transaction(con):
        write_outcomes(con, [o for br in reports for o in br.outcomes], validation_run_id)
        _keep_again(con, [b.run_id for b in quick], validation_run_id, setting.started_at)
    return reports, whole


def _new_rows_in_place(con: duckdb.DuckDBPyConnection, pending: list[str], since: int) -> bool:
    """The new batches' rows all lie from ``since`` on still (a checkpoint that compacts
    row groups emptied by the verdicts' deletes renumbers rows): as many as their
    ``ingest_runs`` counts say."""
    found, expected = con.execute(
        f"SELECT (SELECT count(*) FROM {TABLE} WHERE rowid >= {int(since)}"
        " AND ingest_run_id IN (SELECT unnest($ids::VARCHAR[]))),"
        " (SELECT coalesce(sum(rows_loaded), 0) FROM ingest_runs WHERE kind = 'events'"
        " AND run_id IN (SELECT unnest($ids::VARCHAR[])))",
        {"ids": pending},
    ).fetchall()[0]
    return int(found) == int(expected)


def _read_kept(
    con: duckdb.DuckDBPyConnection, ids: list[str], pending: list[str], since: int
) -> None:
    """What the batches' last check kept and left open, the new rows of their sources and
    the quarantined rows whose numbers count (temporary tables)."""
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE _dw_rv_kept AS WITH latest AS ({_latest(ids)})"
        f" SELECT k.* FROM {KEPT} k JOIN latest l ON l.ingest_run_id = k.ingest_run_id"
        " AND l.vr = k.validation_run_id"
    )
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE _dw_rv_open AS WITH latest AS ({_latest(ids)})"
        " SELECT v.ingest_run_id, v.source_system, v.expectation, v.window_start,"
        " v.window_end, TRY_CAST(v.observed ->> 'missing_from' AS BIGINT) - 1 AS p,"
        " TRY_CAST(v.observed ->> 'missing_to' AS BIGINT) + 1 AS q"
        " FROM validation_results v JOIN latest l ON l.ingest_run_id = v.ingest_run_id"
        " AND l.vr = v.validation_run_id WHERE NOT v.success AND v.scope = 'batch'"
    )
    sources = "(SELECT source_system FROM _dw_rv_kept WHERE source_system IS NOT NULL)"
    # The new batches' rows left after their verdicts (rows of every other batch were
    # there when the batches' last check kept what it found).
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _dw_rv_new AS SELECT source_system, sequence_no,"
        f" occurred_at FROM {TABLE} WHERE rowid >= {int(since)}"
        " AND ingest_run_id IN (SELECT unnest($new::VARCHAR[]))"
        f" AND source_system IN {sources}",
        {"new": pending},
    )
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE _dw_rv_held AS SELECT * FROM ({HELD_NUMBERS})"
        f" WHERE source_system IN {sources} AND sequence_no IS NOT NULL"
    )


def _limits(con: duckdb.DuckDBPyConnection, setting: Setting) -> None:
    """``_dw_rv_lim``: each kept source's silence limit as the silence check computes it,
    from the per-source state (up to date with this run's rows)."""
    window_expr = _window_case(setting.windows)
    factor = setting.config.silence_rhythm_factor
    limit = _limit_of(window_expr, factor, "last_at", "first_at", "n")
    mean = "(epoch(last_at) - epoch(first_at)) / greatest(n - 1, 1)"
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _dw_rv_lim AS WITH"
        " quiet AS (SELECT DISTINCT source_system FROM _dw_rv_kept"
        " WHERE source_system IS NOT NULL),"
        f" rhythm AS (SELECT source_system, {limit} AS limit_s, {mean} AS mean_gap_s FROM"
        f" (SELECT source_system, last_at, first_at, timed_events AS n FROM {STATE}"
        " SEMI JOIN quiet USING (source_system))),"
        + _quiet_spell_cte("spells", None, "quiet", STATE)
        + ","
        + LIMIT_CTE
        + " SELECT * FROM lim"
    )


def _gap_rows(
    con: duckdb.DuckDBPyConnection, sql: str, batches: list[Batch]
) -> dict[str, list[GapRow]]:
    found: dict[str, list[GapRow]] = {}
    params = {"ids": [b.run_id for b in batches]} if "$ids" in sql else {}
    for run_id, *gap in con.execute(sql, params).fetchall():
        found.setdefault(run_id, []).append(tuple(gap))  # type: ignore[arg-type]
    return found


def _sequence_sql() -> str:
    """The sequence gaps now inside each open one: its ends (their times as found then,
    or of new rows with the same number) and the numbers new or quarantined rows hold
    inside it, in order."""
    return (
        "WITH g AS (SELECT ingest_run_id, source_system, p, q, window_start AS prev_at,"
        f" window_end AS next_at FROM _dw_rv_open WHERE expectation = {sql_literal(SEQUENCE_CHECK)}"
        " AND ingest_run_id IN (SELECT unnest($ids::VARCHAR[]))),"
        " m AS (SELECT source_system, sequence_no AS n, occurred_at FROM _dw_rv_new"
        " WHERE sequence_no IS NOT NULL UNION ALL SELECT source_system, sequence_no,"
        " occurred_at FROM _dw_rv_held),"
        " pts AS (SELECT ingest_run_id, source_system, p, n, max(t_at) AS last_at,"
        " min(t_at) AS first_at FROM (SELECT ingest_run_id, source_system, p, p AS n,"
        " prev_at AS t_at FROM g UNION ALL SELECT ingest_run_id, source_system, p, q, next_at"
        " FROM g UNION ALL SELECT g.ingest_run_id, g.source_system, g.p, m.n, m.occurred_at"
        " FROM g JOIN m ON m.source_system = g.source_system AND m.n BETWEEN g.p AND g.q)"
        " GROUP BY ALL),"
        " ord AS (SELECT ingest_run_id, source_system, n AS sequence_no, first_at AS occurred_at,"
        " lag(n) OVER w AS prev_no, lag(last_at) OVER w AS prev_at FROM pts"
        " WINDOW w AS (PARTITION BY ingest_run_id, source_system, p ORDER BY n)),"
        " found AS (SELECT ingest_run_id, source_system, prev_no, sequence_no, prev_at,"
        " occurred_at FROM ord WHERE sequence_no - prev_no > 1)" + SEQUENCE_GAP_SELECT
    )


def _pieces_sql() -> str:
    """``_dw_rv_pieces``: the stretches now inside each open silence (split by new events
    inside it), judged by ``_silence_select`` with the source's limit now."""
    return (
        "CREATE OR REPLACE TEMP TABLE _dw_rv_pieces AS WITH g AS (SELECT ingest_run_id,"
        " source_system, window_start AS a, window_end AS b FROM _dw_rv_open"
        f" WHERE expectation = {sql_literal(SILENCE_CHECK)}"
        " AND ingest_run_id IN (SELECT unnest($ids::VARCHAR[]))),"
        " pts AS (SELECT ingest_run_id, source_system, a, a AS t FROM g"
        " UNION ALL SELECT ingest_run_id, source_system, a, b FROM g"
        " UNION ALL SELECT g.ingest_run_id, g.source_system, g.a, n.occurred_at FROM g"
        " JOIN _dw_rv_new n ON n.source_system = g.source_system AND n.occurred_at > g.a"
        " AND n.occurred_at < g.b)"
        " SELECT * FROM (SELECT ingest_run_id, source_system, lag(t) OVER (PARTITION BY"
        " ingest_run_id, source_system, a ORDER BY t) AS prev_at, t AS occurred_at FROM pts)"
        " WHERE prev_at IS NOT NULL"
    )


def _silence_select(setting: Setting) -> str:
    return "WITH found AS (SELECT * FROM _dw_rv_pieces), lim AS (SELECT * FROM _dw_rv_lim)" + (
        silence_select(setting.config.silence_rhythm_factor)
    )


def _reports(
    con: duckdb.DuckDBPyConnection,
    batches: list[Batch],
    checks: list[Check],
    found: dict[str, dict[str, list[GapRow]]],
    config: ValidationConfig,
) -> list[BatchReport]:
    """Each batch's outcomes, as ``verdicts.judge_in_order`` gives a batch checked again."""
    kept: dict[str, list[tuple[str | None, int]]] = {}
    for run_id, source, n in con.execute(
        "SELECT ingest_run_id, source_system, rows_checked FROM _dw_rv_kept ORDER BY ALL"
    ).fetchall():
        kept.setdefault(run_id, []).append((source, int(n)))
    reports = []
    for batch in batches:
        cells = kept.get(batch.run_id, [])
        sources = sorted(s for s, _ in cells if s is not None)
        rows = sum(n for _, n in cells)
        br = BatchReport(
            batch.run_id,
            batch.kind,
            batch.source_file,
            sources,
            rows_checked=rows,
            revisit_reason=batch.revisit_reason,
        )
        single = sources[0] if len(sources) == 1 else None
        for check in checks:
            base = Outcome(
                SUITE, check.name, "batch", False, batch.run_id, single, element_count=rows
            )
            gaps = found.get(check.name, {}).get(batch.run_id, [])
            br.outcomes.extend(gap_outcomes(base, gaps, config))
        reports.append(br)
    return reports


def _keep_again(
    con: duckdb.DuckDBPyConnection, ids: list[str], validation_run_id: str, started_at: datetime
) -> None:
    """What these batches keep now: the same rows, and the longest stretch that passed
    grown by the pieces of their silences that pass now (caller's transaction)."""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _dw_rv_next AS SELECT k.ingest_run_id, k.source_system,"
        " ?::VARCHAR, ?::TIMESTAMPTZ, k.rows_checked, k.window_start, k.window_end,"
        " greatest(k.silence_pass_max, (SELECT max(epoch(p.occurred_at) - epoch(p.prev_at))"
        " FROM _dw_rv_pieces p JOIN _dw_rv_lim l USING (source_system)"
        " WHERE p.ingest_run_id = k.ingest_run_id AND p.source_system = k.source_system"
        " AND epoch(p.occurred_at) - epoch(p.prev_at) <= l.limit_s)), k.bound_lo, k.bound_hi"
        f" FROM _dw_rv_kept k WHERE k.ingest_run_id IN {_in(ids)}",
        [validation_run_id, started_at],
    )
    con.execute(f"DELETE FROM {KEPT} WHERE ingest_run_id IN {_in(ids)}")
    con.execute(f"INSERT INTO {KEPT} SELECT * FROM _dw_rv_next")
    for temp in ("next", "pieces", "new", "held", "open", "kept", "lim"):
        con.execute(f"DROP TABLE IF EXISTS _dw_rv_{temp}")
