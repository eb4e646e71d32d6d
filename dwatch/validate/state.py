"""Per-source validation state: what the silence checks need of each source's history.

The silence checks judge a batch against its source's rhythm (first and last event time,
how many events), its neighbours either side and its longest quiet spells, all over every
event the store holds for the source; the store-wide check reads every source's last
event. ``validation_source_state`` (migration 0029) keeps those per source, so a run reads
the state and its new rows instead:

- ``prepare`` (before the checks): which new batches the state does not cover yet, which
  sources must read their history after all (a sequence number at or below the source's
  highest stored one, a batch loaded before batches already validated, an old batch
  revisited for its open gaps), which read their tail only (an event at or before the
  source's last stored event: its stored events from the last one before it on, while
  its longest gaps lie before that), and the stand-in relations the checks read (``HIST`` rows: the new
  rows, each other source's last event, the whole history of reopened sources;
  ``HIST_SEQ`` the same by sequence number, with each source's highest numbered event;
  ``STATE_NOW``: the statistics of the sources not reopened);
- ``update`` (after the verdicts): the state brought up to date from the new batches' rows
  left in the store, reopened sources recomputed from their rows, and the whole state
  rebuilt from the store when it was missing or no longer described it.

Only raw statistics are kept (no setting enters them): windows and factors apply at check
time, so a settings change reopens nothing. Verdicts are those of reading history.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import duckdb

from dwatch.validate import flow_state
from dwatch.validate.coverage import QUIET_TAIL_GAPS
from dwatch.validate.state_build import summarize
from dwatch.validate.suites import sql_literal

TABLE = "disclosure_events"
STATE = "validation_source_state"
BATCHES = "validation_state_batches"
FLOWS = flow_state.FLOWS
# Temporary relations the checks read in place of history (this connection only).
HIST = "_dw_val_hist"
STATE_NOW = "_dw_val_state"
HIST_SEQ = "_dw_val_hist_seq"
# Per source not reopened: the stored events the checks read (its last event, or its
# events from before its earliest late one on) and its longest gaps outside them.
SEED = "_dw_val_seed"
KEPT = "_dw_val_kept"
NEW = "_dw_val_new"


@dataclass
class StatePlan:
    """What one validation run reads from the state, and why it reads history instead."""

    usable: bool
    pending: list[str] = field(default_factory=list)
    # source -> why its history is read (and its state recomputed)
    reopened: dict[str, str] = field(default_factory=dict)
    rebuilt_because: str | None = None
    # source -> why part of its history (its tail) is read
    tails: dict[str, str] = field(default_factory=dict)
    # Reopened only because an old batch of theirs is checked again: the checks read
    # their history, but their stored events are unchanged, so their state is brought up
    # to date like any other's (not recomputed).
    revisited: set[str] = field(default_factory=set)

    @property
    def recomputed(self) -> list[str]:
        """Sources whose state is recomputed from all their rows."""
        return sorted(set(self.reopened) - self.revisited)

    # False: batches outside this run are not validated yet; the state is neither read
    # nor rebuilt (a later run validating them rebuilds it).
    keep: bool = True
    # No row of the new batches has a lower rowid (selecting.first_rows).
    since: int = 0

    def notes(self) -> list[str]:
        out = []
        if self.rebuilt_because:
            out.append(f"validation state rebuilt from the store: {self.rebuilt_because}")
        out += [f"{s}: history read ({why})" for s, why in sorted(self.reopened.items())]
        out += [f"{s}: {why}" for s, why in sorted(self.tails.items()) if s not in self.reopened]
        return out


def _in(values: list[str]) -> str:
    """SQL list for IN / NOT IN (empty: no value, so NOT IN holds for every row)."""
    if not values:
        return "(SELECT NULL::VARCHAR WHERE FALSE)"
    return "(" + ", ".join(sql_literal(v) for v in values) + ")"


def _scalar(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    rows = con.execute(sql).fetchall()
    return int(rows[0][0]) if rows and rows[0][0] is not None else 0


def prepare(con: duckdb.DuckDBPyConnection, run_ids: list[str], since: int = 0) -> StatePlan:
    """Plan the state's use for the events batches ``run_ids`` and write the relations the
    silence check reads; ``usable`` False: the checks read history (the state is rebuilt
    by ``update``). ``since``: no row of the batches not covered yet has a lower rowid."""
    covered = dict(con.execute(f"SELECT ingest_run_id, events FROM {BATCHES}").fetchall())
    pending = [r for r in run_ids if r not in covered]
    revisits = [r for r in run_ids if r in covered]
    total = _scalar(con, f"SELECT count(*) FROM {TABLE}")
    if covered:
        _read_new(con, pending, since)
        new_rows = _scalar(con, f"SELECT count(*) FROM {NEW}")
    else:
        new_rows = _scalar(
            con,
            f"SELECT count(*) FROM {TABLE} WHERE rowid >= {int(since)}"
            f" AND ingest_run_id IN {_in(pending)}",
        )
    why = None
    waiting = _scalar(
        con,
        "SELECT count(*) FROM ingest_runs WHERE status = 'loaded' AND kind = 'events'"
        f" AND run_id NOT IN {_in(run_ids)} AND run_id NOT IN (SELECT DISTINCT ingest_run_id"
        " FROM validation_results WHERE ingest_run_id IS NOT NULL)",
    )
    if waiting:
        return StatePlan(False, pending, keep=False)
    if not covered and total == new_rows:
        # A first run: the store holds nothing but the new rows, which the checks read as
        # they are; the state is then built from them.
        return StatePlan(False, pending)
    if not covered:
        why = "no state yet (a store from before it was kept)"
    elif sum(covered.values()) + new_rows != total:
        why = (
            f"the store holds {total:,} events where the state's batches held"
            f" {sum(covered.values()):,} and the new batches hold {new_rows:,}"
        )
    elif _scalar(con, f"SELECT count(*) FROM {STATE} WHERE gaps_kept <> {QUIET_TAIL_GAPS}"):
        why = f"it kept another number of longest gaps than {QUIET_TAIL_GAPS}"
    if why:
        return StatePlan(False, pending, rebuilt_because=why)
    plan = StatePlan(True, pending, since=since)
    plan.reopened, plan.revisited = _reopened(con, pending, revisits)
    kept = _late_tails(con, plan)
    _write_relations(con, plan, kept)
    return plan


def _read_new(con: duckdb.DuckDBPyConnection, pending: list[str], since: int) -> None:
    """The new batches' rows as the state needs them, read once (``NEW``)."""
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {NEW} AS SELECT source_system, occurred_at, ingest_run_id,"
        " sequence_no, event_type, disclosing_agency, recipient_agency"
        f" FROM {TABLE} WHERE rowid >= {int(since)} AND ingest_run_id IN {_in(pending)}"
    )


def _reopened(
    con: duckdb.DuckDBPyConnection, pending: list[str], revisits: list[str]
) -> tuple[dict[str, str], set[str]]:
    """Sources whose history the checks must read, with the reason for each, and those
    of them read only for an old batch checked again."""
    found: dict[str, str] = {}
    revisited: set[str] = set()
    # A new row numbered at or below its source's highest stored number changes the
    # source's neighbours by number inside its history.
    for source, first, run_id, last in con.execute(
        "SELECT e.source_system, min(e.sequence_no), arg_min(e.ingest_run_id, e.sequence_no),"
        f" any_value(s.last_seq) FROM {NEW} e JOIN {STATE} s USING (source_system)"
        " GROUP BY 1 HAVING min(e.sequence_no) <= any_value(s.last_seq) ORDER BY 1"
    ).fetchall():
        found.setdefault(
            source,
            f"number out of order: batch {run_id} holds sequence_no {first},"
            f" not above its highest stored number {last}",
        )
    # Neighbours are looked up among batches loaded before: a new batch loaded before a
    # covered one sees only part of the history the state summarises.
    early = (
        "WITH o AS (SELECT run_id, coalesce(started_at, '-infinity'::TIMESTAMPTZ) AS at"
        " FROM ingest_runs), top AS (SELECT max((o.at, o.run_id)) AS k FROM o"
        f" JOIN {BATCHES} c ON c.ingest_run_id = o.run_id)"
        f" SELECT DISTINCT e.source_system, e.ingest_run_id FROM {NEW} e"
        " JOIN o ON o.run_id = e.ingest_run_id, top"
        " WHERE (o.at, o.run_id) <= top.k"
        " AND e.source_system IS NOT NULL ORDER BY 1, 2"
    )
    for source, run_id in con.execute(early).fetchall():
        found.setdefault(source, f"batch {run_id} was loaded before batches validated already")
    for source, run_id in con.execute(
        f"SELECT DISTINCT source_system, ingest_run_id FROM {TABLE}"
        f" WHERE ingest_run_id IN {_in(revisits)} AND source_system IS NOT NULL ORDER BY 1, 2"
    ).fetchall():
        if source not in found:
            found[source] = f"old batch {run_id} checked again for its open gaps"
            revisited.add(source)
    return found, revisited


def _late_tails(con: duckdb.DuckDBPyConnection, plan: StatePlan) -> dict[str, list[float]]:
    """Sources whose new events land at or before their last stored event (a late file,
    or logs whose times are not in order): their stored events from the last one before
    the earliest new event on (the tail) are read instead of their whole history; the
    longest gaps before that still stand. Returns those gaps per source; a source whose
    tail may hold one of its longest gaps, or that has no stored event before its new
    ones, is reopened whole."""
    late = con.execute(
        "SELECT e.source_system, min(e.occurred_at), arg_min(e.ingest_run_id, e.occurred_at),"
        f" any_value(s.last_at), any_value(s.top_gaps) FROM {NEW} e JOIN {STATE} s"
        f" USING (source_system) WHERE e.source_system NOT IN {_in(plan.recomputed)}"
        " GROUP BY 1 HAVING min(e.occurred_at) <= any_value(s.last_at) ORDER BY 1"
    ).fetchall()
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _dw_val_late (source_system VARCHAR, t_min TIMESTAMPTZ)"
    )
    if late:
        con.executemany("INSERT INTO _dw_val_late VALUES (?, ?)", [(r[0], r[1]) for r in late])
    pending = _in(plan.pending)
    window = _tail_window(late)
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _dw_val_tail AS WITH t AS (SELECT e.source_system,"
        f" max(e.occurred_at) AS t FROM {TABLE} e JOIN _dw_val_late l"
        " ON e.source_system = l.source_system AND e.occurred_at < l.t_min"
        f" WHERE e.ingest_run_id NOT IN {pending}{window} GROUP BY 1)"
        " SELECT e.source_system, e.occurred_at, e.ingest_run_id, e.sequence_no, t.t AS since"
        f" FROM {TABLE} e JOIN t ON e.source_system = t.source_system AND e.occurred_at >= t.t"
        f" WHERE e.ingest_run_id NOT IN {pending}{window}"
    )
    tail_gaps = {
        source: (gaps or [], since)
        for source, gaps, since in con.execute(
            "SELECT source_system, list(gap_s) FILTER (WHERE gap_s IS NOT NULL),"
            " any_value(since) FROM (SELECT source_system, since, epoch(occurred_at)"
            " - epoch(lag(occurred_at) OVER (PARTITION BY source_system"
            " ORDER BY occurred_at)) AS gap_s FROM _dw_val_tail) GROUP BY 1"
        ).fetchall()
    }
    kept: dict[str, list[float]] = {}
    for source, first, run_id, last, top in late:
        when = (
            f"batch {run_id} holds an event at {first:%Y-%m-%dT%H:%M:%SZ}, not after its last"
            f" stored event at {last:%Y-%m-%dT%H:%M:%SZ}"
        )
        gaps, since = tail_gaps.get(source, ([], None))
        standing = _still_standing(list(top), list(gaps)) if since is not None else None
        if standing is None:
            why = "and none stored before it" if since is None else "among its longest gaps"
            plan.reopened.setdefault(source, f"event out of order {why}: {when}")
            plan.revisited.discard(source)
            continue
        kept[source] = standing
        plan.tails[source] = (
            f"stored events from {since:%Y-%m-%dT%H:%M:%SZ} on read (event out of order: {when})"
        )
    return kept


def _tail_window(late: list[tuple[Any, ...]]) -> str:
    """SQL (`` AND ...`` or empty): the times a late source's tail can start from.

    A late event at t lies at or before its source's last stored event, so a stored event
    follows it; the stored event before it is then at most the source's longest gap
    earlier (those two are consecutive). One time bound for every late source, so DuckDB
    skips row groups by their time range instead of reading every source's history."""
    if not late:
        return " AND FALSE"
    if any(not top for *_, top in late):  # a source with no gap kept: unbounded
        return ""
    start = min(first - timedelta(seconds=float(top[0]) + 1) for _, first, _, _, top in late)
    return f" AND e.occurred_at >= {sql_literal(start)}"


def _still_standing(top: list[float], tail: list[float]) -> list[float] | None:
    """The longest gaps of a source's history outside its tail (None: cannot be known).

    ``top`` is its QUIET_TAIL_GAPS longest gaps (all of them when it has fewer), ``tail``
    the gaps between its stored events in the tail."""
    if len(top) >= QUIET_TAIL_GAPS:
        # A full list: the tail's gaps must all be shorter than its shortest, else one of
        # the longest may be in the tail and the next-longest outside it is unknown.
        return None if tail and max(tail) >= top[-1] else top
    rest = list(top)
    for gap in tail:  # every gap is listed: take the tail's out
        if gap not in rest:
            return None
        rest.remove(gap)
    return rest


def _write_relations(
    con: duckdb.DuckDBPyConnection, plan: StatePlan, kept: dict[str, list[float]]
) -> None:
    """``HIST`` (rows standing in for the table), ``STATE_NOW`` (statistics of the rest),
    ``HIST_SEQ`` (the same by number), and ``SEED``/``KEPT`` (what ``update`` starts from)."""
    reopened = _in(sorted(plan.reopened))
    full = _in(plan.recomputed)
    tails = _in(sorted(plan.tails))
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {SEED} AS SELECT source_system, occurred_at,"
        f" ingest_run_id, sequence_no FROM _dw_val_tail WHERE source_system IN {tails}"
        # Each other source's last event: the neighbour of whatever comes after it.
        f" UNION ALL SELECT source_system, last_at, last_run_id, NULL::BIGINT FROM {STATE}"
        f" WHERE last_at IS NOT NULL AND source_system NOT IN {full}"
        f" AND source_system NOT IN {tails}"
    )
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {KEPT} AS SELECT source_system, top_gaps FROM {STATE}"
        f" WHERE source_system NOT IN {full} AND source_system NOT IN {tails}"
    )
    if kept:
        con.executemany(f"INSERT INTO {KEPT} VALUES (?, ?)", list(kept.items()))
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {HIST} AS"
        " SELECT source_system, occurred_at, ingest_run_id, FALSE AS proxy FROM"
        f" {NEW} WHERE source_system IS NOT NULL"
        " UNION ALL SELECT source_system, occurred_at, ingest_run_id, FALSE FROM"
        f" {TABLE} WHERE source_system IN {reopened}"
        f" AND ingest_run_id NOT IN {_in(plan.pending)}"
        f" UNION ALL SELECT source_system, occurred_at, ingest_run_id, TRUE FROM {SEED}"
        f" WHERE source_system NOT IN {reopened}"
    )
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {STATE_NOW} AS SELECT s.source_system, s.first_at,"
        f" s.last_at, s.timed_events, k.top_gaps FROM {STATE} s JOIN {KEPT} k"
        f" USING (source_system) WHERE s.source_system NOT IN {reopened}"
    )
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {HIST_SEQ} AS"
        f" SELECT source_system, sequence_no, occurred_at, ingest_run_id FROM {NEW}"
        " WHERE source_system IS NOT NULL"
        " UNION ALL SELECT source_system, sequence_no, occurred_at, ingest_run_id FROM"
        f" {TABLE} WHERE source_system IN {reopened}"
        f" AND ingest_run_id NOT IN {_in(plan.pending)}"
        # Each other source's highest numbered event: the neighbour of what is numbered after.
        f" UNION ALL SELECT source_system, last_seq, last_seq_at, last_seq_run FROM {STATE}"
        f" WHERE last_seq IS NOT NULL AND source_system NOT IN {reopened}"
    )


def _summary_sql(rows: str, among: str | None) -> str:
    """SQL: per source of ``rows`` (source_system, occurred_at, ingest_run_id, sequence_no,
    seed), its statistics; ``seed`` rows are stored events read again (a source's last
    event, or its tail), counted already;
    ``among``: extra SQL giving (source_system, gap_s) of gaps kept from before."""
    m = QUIET_TAIL_GAPS
    kept = f" UNION ALL {among}" if among else ""
    return (
        f"WITH r AS ({rows}),"
        " stats AS (SELECT source_system, min(occurred_at) FILTER (WHERE NOT seed) AS first_at,"
        " max(occurred_at) AS last_at, count(occurred_at) FILTER (WHERE NOT seed) AS n,"
        " arg_max(ingest_run_id, occurred_at) AS last_run_id, max(sequence_no) AS last_seq,"
        " arg_max(occurred_at, sequence_no) AS last_seq_at,"
        " arg_max(ingest_run_id, sequence_no) AS last_seq_run FROM r GROUP BY 1),"
        " gaps AS (SELECT source_system, epoch(occurred_at) - epoch(lag(occurred_at)"
        " OVER (PARTITION BY source_system ORDER BY occurred_at)) AS gap_s FROM r"
        f" WHERE occurred_at IS NOT NULL{kept}),"
        # The m longest, longest first: an aggregate, not a second sort of every gap.
        f" top AS (SELECT source_system, max(gap_s, {m}) AS top_gaps FROM gaps"
        " WHERE gap_s IS NOT NULL GROUP BY 1)"
        " SELECT s.source_system, s.first_at, s.last_at, s.n AS timed_events, s.last_run_id,"
        f" coalesce(t.top_gaps, []::DOUBLE[]) AS top_gaps, {m} AS gaps_kept, s.last_seq,"
        " s.last_seq_at, s.last_seq_run"
        " FROM stats s LEFT JOIN top t USING (source_system)"
    )


def update(con: duckdb.DuckDBPyConnection, plan: StatePlan, validation_run_id: str) -> None:
    """Bring the state up to date with the store after the run's verdicts."""
    by = sql_literal(validation_run_id)
    cols = (
        "source_system, first_at, last_at, timed_events, last_run_id, top_gaps, gaps_kept,"
        " last_seq, last_seq_at, last_seq_run"
    )
    if not plan.keep:
        con.execute(f"DELETE FROM {STATE}")
        con.execute(f"DELETE FROM {BATCHES}")
        flow_state.clear(con)
        return
    con.execute("BEGIN TRANSACTION")
    try:
        if not plan.usable:
            con.execute(f"DELETE FROM {STATE}")
            con.execute(f"DELETE FROM {BATCHES}")
            rows = (
                "SELECT source_system, occurred_at, ingest_run_id, sequence_no"
                f" FROM {TABLE} WHERE source_system IS NOT NULL"
            )
            summarize(con, rows, "_dw_val_redo")
            con.execute(
                f"INSERT INTO {STATE} ({cols}, updated_by) SELECT *, {by} FROM _dw_val_redo"
            )
            con.execute("DROP TABLE _dw_val_redo")
            con.execute(
                f"INSERT INTO {BATCHES} SELECT ingest_run_id, count(*), {by} FROM {TABLE}"
                " GROUP BY 1"
            )
            flow_state.rebuild(con)
        else:
            _update_from_new(con, plan, by, cols)
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise


def _update_from_new(con: duckdb.DuckDBPyConnection, plan: StatePlan, by: str, cols: str) -> None:
    _read_new(con, plan.pending, plan.since)  # what the verdicts left of them
    reopened = _in(plan.recomputed)
    # Sources recomputed: from all their rows.
    rows = (
        "SELECT source_system, occurred_at, ingest_run_id, sequence_no"
        f" FROM {TABLE} WHERE source_system IN {reopened}"
    )
    summarize(con, rows, "_dw_val_redo")
    if plan.recomputed:
        flow_state.recompute(con, reopened)
    flow_state.merge(con, NEW, reopened)
    # The others with new rows: what the checks read of them (their last stored event, or
    # their tail), then the new rows; their longest gaps outside those.
    touched = (
        f"(SELECT DISTINCT source_system FROM {NEW} WHERE source_system IS NOT NULL"
        f" AND source_system NOT IN {reopened})"
    )
    rows = (
        "SELECT source_system, occurred_at, ingest_run_id, sequence_no, FALSE AS seed"
        f" FROM {NEW} WHERE source_system IN {touched}"
        f" UNION ALL SELECT source_system, occurred_at, ingest_run_id, sequence_no, TRUE"
        f" FROM {SEED} WHERE source_system IN {touched}"
    )
    kept = f"SELECT source_system, unnest(top_gaps) FROM {KEPT} WHERE source_system IN {touched}"
    con.execute(f"CREATE OR REPLACE TEMP TABLE _dw_val_more AS {_summary_sql(rows, kept)}")
    newer = "(m.last_seq > s.last_seq OR s.last_seq IS NULL)"
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE _dw_val_next AS SELECT m.source_system,"
        " CASE WHEN s.first_at IS NULL THEN m.first_at WHEN m.first_at IS NULL THEN s.first_at"
        " ELSE least(s.first_at, m.first_at) END, m.last_at,"
        " m.timed_events + coalesce(s.timed_events, 0), m.last_run_id, m.top_gaps, m.gaps_kept,"
        f" CASE WHEN {newer} THEN m.last_seq ELSE s.last_seq END,"
        f" CASE WHEN {newer} THEN m.last_seq_at ELSE s.last_seq_at END,"
        f" CASE WHEN {newer} THEN m.last_seq_run ELSE s.last_seq_run END"
        f" FROM _dw_val_more m LEFT JOIN {STATE} s USING (source_system)"
    )
    con.execute(
        f"DELETE FROM {STATE} WHERE source_system IN (SELECT source_system FROM _dw_val_redo"
        " UNION ALL SELECT source_system FROM _dw_val_next)"
    )
    for temp in ("_dw_val_redo", "_dw_val_next"):
        con.execute(f"INSERT INTO {STATE} ({cols}, updated_by) SELECT *, {by} FROM {temp}")
        con.execute(f"DROP TABLE {temp}")
    con.execute("DROP TABLE _dw_val_more")
    con.execute(
        f"INSERT INTO {BATCHES} SELECT r.run_id, count(e.ingest_run_id), {by}"
        f" FROM (SELECT unnest(?::VARCHAR[]) AS run_id) r LEFT JOIN {NEW} e"
        " ON e.ingest_run_id = r.run_id GROUP BY 1",
        [plan.pending],
    )
    con.execute(f"DROP TABLE {NEW}")
