"""Judge only what new data touches: each rule re-reads the part of the store its findings
rest on, and the alerts come out as a full re-judgement would make them.

A full judgement (:func:`detectors.engine.run_rules`) reads all history. When the rules and
the registry are those the store was last judged by, and nothing but new batches changed
it, a run needs only:

1. **the delta**: the events and request items of the new batches, and the events new
   items ride on (their carriers);
2. per rule with a ``scope`` (:class:`detectors.engine.RuleScope`), the **partitions** (values
   of ``scope.by``) the delta touches. ``touched_by: findings``: the partitions of the rule's
   findings over the delta (new rows that qualify), and of delta rows that are already
   events of one of the rule's open alerts (a carrier whose verdict may have changed).
   ``touched_by: rows``: the partition of every delta row its ``touches`` selects (and of
   rows a new batch quarantined, of new request items);
3. each touched partition **re-read whole** - a finding aggregates all its history (every
   event of a recipient's unlawful transfers, a log's every gap) - with the rule's findings
   kept only there. Where every rule of a partition column judges each row alone
   (``touched_by: findings``), only the partition's new rows and its alerts' events are read:
   the other old rows qualified for nothing and still do (:func:`_finding_rows`); the rule's open alerts in those partitions that are not found again
   are retracted, the rest of the store is left as judged;
4. rules that read only what the store keeps between runs (a log's order breaks, the sides
   of each reconciliation, every custody event with its holder: :mod:`detectors.rule_state`,
   :mod:`detectors.custody_state`) are judged over all history from that state, which the
   run first brings up to date with the new rows (or rebuilds, saying why);
5. rules without a scope are judged over all history; their YAML's ``history`` says why
   (a comparison with peers, the authority a request was disclosed under) and ``reads``,
   when given, the rows of history their findings can rest on: only those are read.

History is read through the partition column (``source_system`` is one log per batch, so
DuckDB's zone maps skip the other logs' row groups; ``request_id``, ``actor_id`` and the
recipient's agency are column scans of one dictionary-encoded column) and new batches
through ``ingest_run_id`` bounded by the row id their rows start from (batch ids of one day
share the first bytes DuckDB's zone maps keep; row ids skip the old row groups); the
carriers of items in the logs the items name. Which partitions the delta touches:
:mod:`detectors.touched`. Every revisit is reported with its reason
(:attr:`detectors.engine.DetectResult.revisits`).
"""

from __future__ import annotations

from collections import defaultdict

import duckdb

from detectors import chain_state, custody_state, rule_state
from detectors.alerts import MergeResult, mark_coverage, merge_alerts
from detectors.custody import replace_temp
from detectors.engine import (
    DetectResult,
    Rule,
    RuleRun,
    _create_candidates,
    _explain_retractions,
    check_rule_citations,
    prepare,
    run_rule,
)
from detectors.evidence import forget_chains, logs_of
from detectors.touched import NEW_ROWS, bound, touch
from dwatch.errors import RuleError
from dwatch.policy import Registry


def _new_events(con: duckdb.DuckDBPyConnection, alias: str = "e") -> str:
    """:data:`NEW_ROWS` on ``disclosure_events`` (as ``alias``), bounded by the row id the
    new rows start from (:func:`detectors.rule_state.find_new_rows`; 0 when not sought): a
    batch id skips no row group when all ids of a day share their first bytes, a row id
    (a constant here, so DuckDB compares it with each row group's range) does."""
    first = int(rule_state.new_rows_from(con))
    return f"({alias}.rowid >= {first} AND {alias}.{NEW_ROWS})"


# How a partition value selects its rows in the store (raw columns, so the filter reaches
# the scan): any of the predicates, each scanned alone (:func:`read_rows_sql`). A recipient
# is its registry code: the agencies resolving to it, or its own spelling upper-cased (the
# fallback dw_events uses).
_PARTITION_ROWS: dict[str, tuple[str, ...]] = {
    "recipient_code": (
        "e.recipient_agency IN (SELECT a.agency FROM dw_agencies a"
        " WHERE a.code IN (SELECT part FROM dw_parts))",
        "upper(trim(e.recipient_agency)) IN (SELECT part FROM dw_parts)",
        "e.recipient_agency IS NULL AND EXISTS (SELECT 1 FROM dw_parts WHERE part IS NULL)",
    ),
    "actor_id": (
        "e.actor_id IN (SELECT part FROM dw_parts)",
        "e.actor_id IS NULL AND EXISTS (SELECT 1 FROM dw_parts WHERE part IS NULL)",
    ),
    "request_id": (
        "e.request_id IN (SELECT part FROM dw_parts)",
        "e.request_id IS NULL AND EXISTS (SELECT 1 FROM dw_parts WHERE part IS NULL)",
        # an item's carrier may carry no request id of its own (read from the store in the
        # logs the items name: _carriers_of_parts)
        "e.event_id IN (SELECT i.event_id FROM request_items i"
        " WHERE i.request_id IN (SELECT part FROM dw_parts))",
    ),
    "source_system": ("e.source_system IN (SELECT part FROM dw_parts)",),
}


def _partition_filter(by: str) -> str:
    """The partition's rows as one predicate, for tables of a few rows."""
    return " OR ".join(f"({p})" for p in _PARTITION_ROWS[by])


def _reads(rule: Rule, *views: str) -> bool:
    return any(v in (rule.query or "") for v in views)


def _reads_any(rules: list[Rule], *views: str) -> bool:
    return any(_reads(r, *views) for r in rules)


# Views built from kept state (detectors.rule_state, detectors.custody_state), and the views
# only detectors.engine.prepare builds over the events judged.
STATE_VIEWS = ("dw_sequence_breaks", "dw_log_behind", "dw_reconciliation_pairs", "dw_custody")
_PREPARED_VIEWS = ("dw_events", "dw_items", "dw_order_hits", "dw_element_lists")
_LOG_ORDER_VIEWS = ("dw_sequence_breaks", "dw_log_behind")  # detectors.rule_state


def _reads_views(rule: Rule) -> bool:
    """Whether the rule reads a view :func:`detectors.engine.prepare` builds over events."""
    return _reads(rule, *_PREPARED_VIEWS)


def _rebuild_custody(
    con: duckdb.DuckDBPyConnection, registry: Registry, batches: list[str]
) -> tuple[dict[str, str | None], list[str]]:
    """Which state must be rebuilt; custody rebuilt now, from every event resolved (before
    the views are prepared over the new rows alone)."""
    stale = rule_state.stale(con, batches, registry.version)
    reason = stale[custody_state.FAMILY]
    if reason is None:
        return stale, []
    prepare(con, registry, sync=False, refresh=_new_events(con), log_order=False, custody=True)
    return stale, [f"custody: state rebuilt from all history: {reason}"]


def _state_up_to_date(
    con: duckdb.DuckDBPyConnection,
    registry: Registry,
    run_id: str,
    batches: list[str],
    stale: dict[str, str | None],
) -> list[str]:
    """Add the new rows to the kept state (views prepared over them) and build the views
    the state-judged rules read; the run summary's lines."""
    lines = []
    if stale[custody_state.FAMILY] is None:
        added = custody_state.append_new(con)
        lines.append(
            f"custody: {added:,} new receipt, disposal and use row(s) added to the kept rows;"
            " pairing and custody read the kept rows, no old event resolved again"
        )
    lines += rule_state.update_log_order(
        con, run_id=run_id, batches=batches, rebuild=stale[rule_state.LOG_ORDER]
    )
    chain_stale = stale[chain_state.FAMILY]
    if chain_stale is None:
        added = chain_state.append_new(con, rule_state.new_rows_from(con))
        lines.append(
            f"chains: {added:,} new request, disclosure and receipt row(s) added to the kept"
            " links; findings' chains read the kept links, no old event read"
        )
    else:
        chain_state.rebuild(con)
        lines.append(f"chains: kept links rebuilt from all history: {chain_stale}")
    custody_state.judge_from_state(con)
    rule_state.finish(con, run_id, registry.version)
    return lines


def _delta(con: duckdb.DuckDBPyConnection, batches: list[str]) -> tuple[int, int]:
    """``dw_delta_events`` / ``dw_delta_items``: new rows and the carriers of new items."""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE dw_new_batches AS"
        " SELECT unnest($b::VARCHAR[]) AS ingest_run_id",
        {"b": batches},
    )
    marks = ", ".join(f"$b{n}" for n in range(len(batches))) or "NULL"
    params = {f"b{n}": b for n, b in enumerate(batches)}
    # constants in the IN list: DuckDB compares them with each row group's min/max
    con.execute(
        "CREATE OR REPLACE TEMP TABLE dw_delta_items AS"
        f" SELECT * FROM request_items WHERE ingest_run_id IN ({marks})",
        params,
    )
    con.execute(  # row ids: the new rows' place at the end of the table (rule_state)
        "CREATE OR REPLACE TEMP TABLE dw_delta_events AS SELECT * FROM disclosure_events"
        f" WHERE rowid >= $from AND ingest_run_id IN ({marks})",
        {**params, "from": rule_state.new_rows_from(con)},
    )
    # the carriers of new items, in the logs the items name (an item naming a log rides on
    # an event of that log: dw_items): constants zone maps compare, so other logs' row
    # groups are skipped, not every event's id read (any item naming none: every log)
    if not _empty(con, "dw_delta_items"):
        logs, log_params = logs_of(con, "SELECT source_system FROM dw_delta_items")
        con.execute(
            "INSERT INTO dw_delta_events SELECT e.* FROM disclosure_events e"
            f" WHERE {logs} AND e.event_id IN (SELECT event_id FROM dw_delta_items)"
            f" AND e.ingest_run_id NOT IN ({marks})",
            {**params, **log_params},
        )
    counts = con.execute(
        "SELECT (SELECT count(*) FROM dw_delta_events), (SELECT count(*) FROM dw_delta_items)"
    ).fetchone()
    return (int(counts[0]), int(counts[1])) if counts else (0, 0)


def _empty(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    row = con.execute(f"SELECT count(*) FROM {table}").fetchone()
    return not row or row[0] == 0


def _partition_base(con: duckdb.DuckDBPyConnection, by: str) -> tuple[int, int]:
    """``dw_part_events`` / ``dw_part_items``: every row of the touched partitions.

    A table, read from the store once: prepare reads the rows six times (citations, element
    lists, items, the resolved events it copies whole into ``dw_events_rows``), and as a
    view each read evaluated the partition's filter over every event of the store."""
    replace_temp(con, "dw_part_events")
    predicates, params = list(_PARTITION_ROWS[by]), {}
    if by == "request_id":  # the items' carriers, in the logs the items name
        predicates[-1:], params = _carriers_of_parts(con)
    con.execute(f"CREATE TEMP TABLE dw_part_events AS {read_rows_sql(predicates)}", params)
    return _part_items(con)


def _carriers_of_parts(con: duckdb.DuckDBPyConnection) -> tuple[list[str], dict[str, str]]:
    """The predicate reading the carriers of the touched requests' items: events with an
    item's id in the logs the items name (an item naming a log rides on an event of that
    log, as ``dw_items`` joins them), so zone maps skip other logs' row groups instead of
    every event's id being read; none when the requests have no item."""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE dw_part_item_keys AS SELECT DISTINCT i.source_system,"
        " i.event_id FROM request_items i WHERE i.request_id IN (SELECT part FROM dw_parts)"
    )
    if _empty(con, "dw_part_item_keys"):
        return [], {}
    logs, params = logs_of(con, "SELECT source_system FROM dw_part_item_keys")
    return [f"{logs} AND e.event_id IN (SELECT event_id FROM dw_part_item_keys)"], params


def _part_items(con: duckdb.DuckDBPyConnection) -> tuple[int, int]:
    # a table: the items of a few partitions, read by prepare more than once
    replace_temp(con, "dw_part_items")
    con.execute(
        "CREATE TEMP TABLE dw_part_items AS SELECT i.* FROM request_items i"
        " WHERE i.request_id IN (SELECT request_id FROM dw_part_events)"
        " OR i.event_id IN (SELECT event_id FROM dw_part_events)"
    )
    row = con.execute(
        "SELECT count(*), count(DISTINCT ingest_run_id) FILTER (WHERE NOT (" + NEW_ROWS + "))"
        " FROM dw_part_events"
    ).fetchone()
    return (int(row[0]) if row else 0, int(row[1]) if row else 0)


def _short_alerts(con: duckdb.DuckDBPyConnection, rules: list[Rule]) -> list[str]:
    """The rules' alerts whose kept finding events name fewer event ids than the alert
    counts (an event the evidence could not key): their events are not all known."""
    rows = con.execute(
        "SELECT a.alert_id FROM alerts a LEFT JOIN (SELECT alert_id,"
        " count(DISTINCT event_id) AS n FROM alert_events WHERE role = 'finding' GROUP BY ALL)"
        " k USING (alert_id) WHERE a.detector_id IN (SELECT unnest($rules::VARCHAR[]))"
        " AND a.status <> 'retracted' AND coalesce(k.n, 0) < coalesce(a.event_count, 0)"
        " ORDER BY a.alert_id",
        {"rules": [r.id for r in rules]},
    ).fetchall()
    return [r[0] for r in rows]


def _finding_rows(con: duckdb.DuckDBPyConnection, by: str, rules: list[Rule]) -> tuple[int, int]:
    """For rules judging each row alone (``touched_by: findings``): of the touched
    partitions, only the new rows (with the carriers of new items) and the events of the
    rules' alerts. An old row's verdict rests on that row and the registry alone, and every
    old row that qualifies is an event of the alert its finding became (the last judgement
    of its partition merged it, and a merge keeps every finding event: alerts whose kept
    events fall short of their count are read whole instead, :func:`_short_alerts`); so
    each finding there aggregates the same rows as over the whole partition.

    The new rows are the delta's (copied already); the alerts' events are read by their
    keys from the logs they name (:func:`detectors.evidence.logs_of`), and the partition's
    filter is evaluated on those rows alone, not on every event of the store."""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE dw_part_known AS SELECT DISTINCT ae.source_system,"
        " ae.event_id FROM alert_events ae JOIN alerts a USING (alert_id)"
        " WHERE a.detector_id IN (SELECT unnest($rules::VARCHAR[])) AND ae.role = 'finding'",
        {"rules": [r.id for r in rules]},
    )
    logs, params = logs_of(con, "SELECT source_system FROM dw_part_known")
    # an event kept without its log (none is written so) matches its id in any log
    unkeyed = " OR e.event_id IN (SELECT event_id FROM dw_part_known WHERE source_system IS NULL)"
    con.execute(
        "CREATE OR REPLACE TEMP TABLE dw_part_alerted AS SELECT e.* FROM disclosure_events e"
        f" WHERE {logs} AND ((e.source_system, e.event_id) IN"
        f" (SELECT (source_system, event_id) FROM dw_part_known){unkeyed if logs == 'true' else ''})",
        params,
    )
    replace_temp(con, "dw_part_events")
    con.execute(
        "CREATE TEMP TABLE dw_part_events AS SELECT e.* FROM dw_delta_events e"
        f" WHERE {_partition_filter(by)}"
    )
    con.execute(  # an alert's event that is in the delta already (a carrier) is read once
        "INSERT INTO dw_part_events SELECT e.* FROM dw_part_alerted e"
        f" WHERE ({_partition_filter(by)}) AND NOT EXISTS (SELECT 1 FROM dw_delta_events d"
        " WHERE d.source_system = e.source_system AND d.event_id = e.event_id"
        " AND d.ingest_run_id IS NOT DISTINCT FROM e.ingest_run_id"
        " AND d.source_row IS NOT DISTINCT FROM e.source_row)"
    )
    con.execute("DROP TABLE dw_part_alerted")
    return _part_items(con)


def _merge(
    con: duckdb.DuckDBPyConnection,
    registry: Registry,
    rules: list[Rule],
    *,
    run_id: str,
    parts: str | None,
) -> tuple[list[RuleRun], MergeResult]:
    """Run ``rules`` on the prepared views and merge; with ``parts``, only there."""
    _create_candidates(con, "dw_candidates")
    runs = [run_rule(con, r, registry, table="dw_candidates", parts=parts) for r in rules]
    retract_within = None
    if parts is not None:
        by = rules[0].scope.by if rules[0].scope else ""
        con.execute(
            "CREATE OR REPLACE TEMP TABLE dw_scope_alerts AS SELECT DISTINCT ae.alert_id"
            " FROM alert_events ae JOIN alerts a USING (alert_id)"
            " WHERE a.status = 'open' AND ae.role = 'finding'"
            " AND a.detector_id IN (SELECT unnest($rules::VARCHAR[]))"
            " AND EXISTS (SELECT 1 FROM dw_events e WHERE e.source_system = ae.source_system"
            f" AND e.event_id = ae.event_id AND CAST(e.{by} AS VARCHAR) IN"
            " (SELECT part FROM dw_parts))",
            {"rules": [r.id for r in rules]},
        )
        retract_within = "dw_scope_alerts"
    merge = merge_alerts(
        con,
        "dw_candidates",
        detector_ids=[r.id for r in rules],
        run_id=run_id,
        retract_reason=f"finding no longer holds under registry version {registry.version}",
        subjects="dw_candidates_subjects",
        events="dw_candidates_events",
        retract_within=retract_within,
    )
    return runs, merge


def read_rows_sql(predicates: list[str]) -> str:
    """The events any of ``predicates`` (SQL on ``disclosure_events e``) selects, once each
    and in the store's order.

    Each predicate is scanned alone: a filter on one column then reaches the scan, so only
    that column is read whole, and a subquery becomes a join of its own. Joined by OR, one
    scan would carry every column of every event to the join before filtering (a 10M store:
    0.8 CPU-s against 0.02)."""
    if len(predicates) == 1:
        return f"SELECT e.* FROM disclosure_events e WHERE ({predicates[0]})"
    scans = " UNION ".join(  # the row id keeps rows equal in every column apart
        f"SELECT e.rowid AS _read_row, e.* FROM disclosure_events e WHERE ({p})" for p in predicates
    )
    return f"SELECT * EXCLUDE (_read_row) FROM ({scans}) ORDER BY _read_row"


def _judge_through_reads(
    con: duckdb.DuckDBPyConnection, registry: Registry, rule: Rule, run_id: str
) -> tuple[RuleRun, MergeResult, str]:
    """A history rule over the rows its ``reads`` selects from all history (a predicate on
    the raw store, so no other row is resolved), with the request items they carry.

    Exact when ``reads`` holds every row the query's findings can rest on: the query then
    sees the same rows of every table it reads (the rule's YAML says why it holds)."""
    sql = f"CREATE OR REPLACE TEMP TABLE dw_read_events AS {read_rows_sql(rule.read_predicates)}"
    con.execute(sql, bound(sql, rule, registry, what="reads"))
    replace_temp(con, "dw_read_items")
    con.execute(
        "CREATE TEMP TABLE dw_read_items AS SELECT i.* FROM request_items i"
        " WHERE i.event_id IN (SELECT event_id FROM dw_read_events)"
        " OR i.request_id IN (SELECT request_id FROM dw_read_events)"
    )
    prepare(
        con, registry, sync=False, events="dw_read_events", items="dw_read_items",
        refresh="false", log_order=False, custody=False, materialise=True,
    )  # fmt: skip
    [run], merge = _merge(con, registry, [rule], run_id=run_id, parts=None)
    row = con.execute("SELECT count(*) FROM dw_read_events").fetchone()
    return (
        run,
        merge,
        (
            f"{rule.id}: all history through its reads, {int(row[0]) if row else 0:,} event(s)"
            f" ({rule.history})"
        ),
    )


def _describe_parts(con: duckdb.DuckDBPyConnection, by: str) -> str:
    rows = con.execute(
        "SELECT coalesce(part, '(none)'), string_agg(DISTINCT reason, ', ' ORDER BY reason),"
        " string_agg(DISTINCT rule_id, ', ' ORDER BY rule_id) FROM dw_touched WHERE part_by = $by"
        " GROUP BY part ORDER BY part",
        {"by": by},
    ).fetchall()
    shown = "; ".join(f"{p} ({why}: {rules})" for p, why, rules in rows[:5])
    return shown + (f"; and {len(rows) - 5} more" if len(rows) > 5 else "")


def _add(total: MergeResult | None, more: MergeResult) -> MergeResult:
    if total is None:
        return more
    return MergeResult(
        total.new + more.new,
        total.updated + more.updated,
        total.reopened + more.reopened,
        total.retracted + more.retracted,
    )


def judge_new(
    con: duckdb.DuckDBPyConnection,
    registry: Registry,
    rules: list[Rule],
    *,
    run_id: str,
    batches: list[str],
) -> DetectResult:
    """Judge what ``batches`` touch and merge; the alerts equal a full re-judgement's.

    Only valid when the store was last judged in full or by this function under the same
    rules and registry version, and nothing but ``batches`` changed it since (the
    pipeline's plan decides: :func:`dwatch.pipeline.step_detect_rules`). Caller owns the
    transaction.
    """
    check_rule_citations(rules, registry)
    forget_chains(con)
    # resolved once, by the first prepare: each prepare below reads the registry unsynced
    con.execute("DROP TABLE IF EXISTS dw_agencies")
    result = DetectResult(run_id=run_id, registry_version=registry.version)
    # rules reading only what state keeps (detectors.rule_state) are judged from it
    kept = rule_state.available(con)
    from_state = [r for r in rules if kept and _reads(r, *STATE_VIEWS) and not _reads_views(r)]
    scoped = [r for r in rules if r.scope is not None and r not in from_state]
    history = [r for r in rules if r.scope is None and r not in from_state]
    if kept:
        rule_state.find_new_rows(con, batches)
    delta_events, delta_items = _delta(con, batches)
    # the kept state is brought up to date whenever a rule reads it or names chains
    uses_state = kept and (_reads_any(rules, *STATE_VIEWS) or any(r.links_chain for r in rules))
    stale, state_lines = _rebuild_custody(con, registry, batches) if uses_state else ({}, [])
    result.citations_refreshed = prepare(
        con, registry, sync=False, events="dw_delta_events", items="dw_delta_items",
        refresh=_new_events(con), log_order=False, custody=False, materialise=True,
    )  # fmt: skip
    if result.citations_refreshed:  # the delta was copied before its citations were read
        _delta(con, batches)
        prepare(
            con, registry, sync=False, events="dw_delta_events", items="dw_delta_items",
            refresh="false", log_order=False, custody=False, materialise=True,
        )  # fmt: skip
    result.revisits.append(
        f"new: {len(batches)} batch(es), {delta_events:,} event(s) (with the carriers of new"
        f" items) and {delta_items:,} request item(s)"
    )
    runs: dict[str, RuleRun] = {}
    if uses_state:
        result.revisits += state_lines + _state_up_to_date(con, registry, run_id, batches, stale)
    if from_state:
        state_runs, merge = _merge(con, registry, from_state, run_id=run_id, parts=None)
        runs.update({r.rule_id: r for r in state_runs})
        result.merge = _add(result.merge, merge)
    touch(con, registry, scoped)
    by_column: dict[str, list[Rule]] = defaultdict(list)
    for rule in scoped:
        assert rule.scope is not None
        by_column[rule.scope.by].append(rule)
    for by, group in sorted(by_column.items()):
        con.execute(
            "CREATE OR REPLACE TEMP TABLE dw_parts AS SELECT DISTINCT part FROM dw_touched"
            " WHERE part_by = $by",
            {"by": by},
        )
        touched = con.execute("SELECT count(*) FROM dw_parts").fetchone()
        if not touched or touched[0] == 0:
            runs.update({r.id: RuleRun(r.id, 0, 0.0) for r in group})
            continue
        per_row = all(r.scope is not None and r.scope.touched_by == "findings" for r in group)
        short = _short_alerts(con, group) if per_row else []
        if per_row and not short:
            events, old_batches = _finding_rows(con, by, group)
            read = "new rows and the events of the rules' alerts (each row is judged alone)"
        else:
            events, old_batches = _partition_base(con, by)
            read = "whole (every finding there aggregates its history)" + (
                f"; alert(s) whose events are not all kept: {', '.join(short[:3])}" if short else ""
            )
        prepare(
            con, registry, sync=False, events="dw_part_events", items="dw_part_items",
            refresh="false", log_order=not kept and _reads_any(group, *_LOG_ORDER_VIEWS),
            custody=False, materialise=True,
        )  # fmt: skip
        group_runs, merge = _merge(con, registry, group, run_id=run_id, parts="dw_parts")
        runs.update({r.rule_id: r for r in group_runs})
        result.merge = _add(result.merge, merge)
        result.revisits.append(
            f"{by}: re-read {touched[0]}, {read}: {events:,} event(s) from {old_batches}"
            f" judged batch(es) - {_describe_parts(con, by)}"
        )
    # through reads alone, unless it also reads state this store does not keep
    for rule in [r for r in history if r.reads and (kept or not _reads(r, *STATE_VIEWS))]:
        runs[rule.id], merge, line = _judge_through_reads(con, registry, rule, run_id)
        result.merge = _add(result.merge, merge)
        result.revisits.append(line)
    history = [r for r in history if not r.reads or (not kept and _reads(r, *STATE_VIEWS))]
    if history:
        prepare(
            con, registry, sync=False, refresh="false",
            log_order=not kept and _reads_any(history, *_LOG_ORDER_VIEWS),
            custody=not kept and _reads_any(history, "dw_reconciliation_pairs", "dw_custody"),
        )  # fmt: skip
        history_runs, merge = _merge(con, registry, history, run_id=run_id, parts=None)
        runs.update({r.rule_id: r for r in history_runs})
        result.merge = _add(result.merge, merge)
        why: dict[str, list[str]] = defaultdict(list)
        for rule in history:
            why[rule.history or "(no reason given)"].append(rule.id)
        result.revisits.append(
            f"all history for {len(history)} rule(s): "
            + "; ".join(f"{', '.join(ids)} ({reason})" for reason, ids in why.items())
        )
    result.rules = [runs[r.id] for r in rules if r.id in runs]
    if result.merge is None:
        result.merge = MergeResult(0, 0, 0, 0)
    _explain_retractions(con, run_id, registry.version)
    result.coverage_flagged = mark_coverage(con)
    return result


__all__ = ["NEW_ROWS", "RuleError", "judge_new"]
