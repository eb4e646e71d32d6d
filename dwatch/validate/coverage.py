"""Batch-level checks: is the log complete? Column types, sequence gaps and silences.

Each is a query over the batches being validated (``b``) that lists every gap with the
batch, source and time window it speaks for; all batches of a validation run are judged
in one query, each against its own place in load order (``neighbours.bounds_cte``). A failure here
is a coverage gap (view ``coverage_gaps``), not a bad row.
"""

from __future__ import annotations

from datetime import timedelta

from dwatch.schema import TableSpec
from dwatch.validate.checks import (
    DUCKDB_TYPE_NAMES,
    WITH_B,
    BatchFacts,
    Check,
    _custom,
    ident,
    sql_literal,
)
from dwatch.validate.neighbours import bounds_cte, sequence_gaps_cte, silence_candidates_cte


def _window_of_batch(table: TableSpec) -> tuple[str, str]:
    if "occurred_at" in table.names:
        return "min(b.occurred_at)", "max(b.occurred_at)"
    return "NULL::TIMESTAMPTZ", "NULL::TIMESTAMPTZ"


def _types_check(table: TableSpec) -> Check:
    """Columns of the batch have the canonical types (a batch that fails is not trusted)."""
    probes = ", ".join(f"typeof({ident(f.name)}) AS {ident(f.name)}" for f in table.fields)
    mismatches = " UNION ALL ".join(
        f"SELECT {sql_literal(f.name)} AS field, {ident(f.name)} AS actual,"
        f" {sql_literal(DUCKDB_TYPE_NAMES[f.type])} AS expected FROM t"
        f" WHERE {ident(f.name)} <> {sql_literal(DUCKDB_TYPE_NAMES[f.type])}"
        for f in table.fields
    )
    start, end = _window_of_batch(table)
    source = "b.source_system" if "source_system" in table.names else "NULL::VARCHAR"
    query = (
        WITH_B + f", t AS (SELECT {probes} FROM b LIMIT 1), m AS ({mismatches}),"
        f" w AS (SELECT b.ingest_run_id, {source} AS source_system, {start} AS window_start,"
        f" {end} AS window_end FROM b GROUP BY 1, 2)"
        " SELECT w.ingest_run_id, w.source_system, w.window_start, w.window_end,"
        " json_object('field', m.field, 'actual', m.actual, 'expected', m.expected) AS observed,"
        " 'column ' || m.field || ' has type ' || m.actual || ', expected ' || m.expected AS message"
        " FROM m CROSS JOIN w"
    )
    description = "every column of the batch has its canonical type"
    return _custom("expect_columns_of_canonical_type", None, "batch", description, query)


# SQL CTE: every ingest run with its place in load order (started_at, then run id).
_LOADED = (
    " loaded AS (SELECT run_id, coalesce(started_at, '-infinity'::TIMESTAMPTZ) AS run_at"
    " FROM ingest_runs),"
)


def _span_cte(column: str) -> str:
    """SQL CTE ``span``: per batch of b and source, the batch's place in load order and the
    lowest and highest ``column`` it holds."""
    return (
        f" span AS (SELECT b.ingest_run_id, b.source_system, l.run_at, min(b.{column}) AS lo,"
        f" max(b.{column}) AS hi FROM b JOIN loaded l ON l.run_id = b.ingest_run_id"
        f" WHERE b.source_system IS NOT NULL AND b.{column} IS NOT NULL GROUP BY ALL),"
    )


# Rows quarantined by validation, or by ingest with a readable number, still arrived: their
# numbers are not missing (source_system, sequence_no, occurred_at).
HELD_NUMBERS = (
    "SELECT j ->> 'source_system' AS source_system,"
    " TRY_CAST(j ->> 'sequence_no' AS BIGINT) AS sequence_no,"
    " TRY_CAST(j ->> 'occurred_at' AS TIMESTAMPTZ) AS occurred_at"
    " FROM (SELECT CASE WHEN q.canonical_row IS NOT NULL THEN q.canonical_row"
    " WHEN q.stage = 'validate' AND json_valid(q.raw_row) THEN q.raw_row::JSON END AS j"
    " FROM quarantine q) WHERE j IS NOT NULL"
)

# The sequence gap check's rows from ``found(ingest_run_id, source_system, prev_no,
# sequence_no, prev_at, occurred_at)`` (shared with dwatch.validate.revisits).
SEQUENCE_GAP_SELECT = (
    " SELECT ingest_run_id, source_system, prev_at AS window_start, occurred_at AS window_end,"
    " json_object('missing_from', prev_no + 1, 'missing_to', sequence_no - 1,"
    " 'missing_count', sequence_no - prev_no - 1) AS observed,"
    " 'sequence_no ' || (prev_no + 1) || CASE WHEN sequence_no - prev_no > 2"
    " THEN '-' || (sequence_no - 1) ELSE '' END || ' missing (' || (sequence_no - prev_no - 1)"
    " || ' event(s)) between ' || strftime(prev_at, '%Y-%m-%dT%H:%M:%SZ') || ' and '"
    " || strftime(occurred_at, '%Y-%m-%dT%H:%M:%SZ') AS message"
    " FROM found ORDER BY ingest_run_id, source_system, prev_no"
)


def _sequence_gap_check(table: str, facts: BatchFacts) -> Check:
    """Missing sequence numbers between a source's rows (store and quarantine included),
    per batch of b and source."""
    t = facts.history[2] if facts.history else ident(table)
    query = (
        WITH_B
        + ","
        + _LOADED
        + _span_cte("sequence_no")
        + bounds_cte(t, "sequence_no")
        # Rows quarantined by validation, or by ingest with a readable number, still
        # arrived: their numbers are not missing.
        + f" held AS ({HELD_NUMBERS}),"
        + sequence_gaps_cte(t, "held")
        + SEQUENCE_GAP_SELECT
    )
    description = (
        "sequence_no has no gaps per source_system (a gap means events were lost or removed)"
    )
    return _custom("expect_sequence_no_without_gaps", "sequence_no", "batch", description, query)


def _window_case(silence_windows: dict[str, timedelta]) -> str:
    """SQL: the silence window of the row's source_system (per-source suites override)."""
    default = silence_windows.get("*", timedelta(days=7))
    cases = " ".join(
        f"WHEN {sql_literal(src)} THEN {sql_literal(w)}"
        for src, w in sorted(silence_windows.items())
        if src != "*"
    )
    return (
        f"CASE source_system {cases} ELSE {sql_literal(default)} END"
        if cases
        else sql_literal(default)
    )


def _silence_limit(window_expr: str, factor: float, alias: str) -> str:
    """SQL (seconds): the longer of the silence window and ``factor`` x the source's mean gap.

    A source that writes a few events a month normally has weeks without one; only a
    silence well beyond its own rhythm means missing logs.
    """
    col = f"{alias}.occurred_at"
    return _limit_of(window_expr, factor, f"max({col})", f"min({col})", f"count({col})")


def _limit_of(window_expr: str, factor: float, last: str, first: str, n: str) -> str:
    """``_silence_limit`` from a source's last and first event time and timed events."""
    return (
        f"greatest(epoch({window_expr}), {float(factor)!r} * (epoch({last})"
        f" - epoch({first})) / greatest({n} - 1, 1))"
    )


# A source's own quiet spells: its longest gaps between events form a tail, read as
# exponential (peaks over a threshold): from the QUIET_SPELLS-th longest gap (the longest
# ones may be the silences being judged) to the QUIET_TAIL_GAPS-th, the spread of that tail
# is (gap_3 - gap_m) / sum(1/i, i = 3..m-1) (the expected spacing of exponential order
# statistics). A stretch is the source's rhythm up to gap_3 + z spreads: beyond it, the
# longest of all the source's quiet spells would fall by chance in at most
# QUIET_SPELL_CHANCE of histories like its own (a bursty audit's quiet weeks drawn at
# random are often 1.5x the third-longest; half a year is not). With the spread known,
# z = ln(2 / chance); estimated from n = m - 3 spacings it is uncertain, and the
# predictive z = n ((2 / chance)^(1/n) - 1) (9.6 from 20 gaps, 27 from 8) keeps a source
# with a few dozen events from being judged on a rare spell it has had no chance to show.
QUIET_SPELLS = 3
QUIET_TAIL_GAPS = 20
QUIET_SPELL_CHANCE = 0.001


def _ordinal(n: int) -> str:
    return {1: "1st", 2: "2nd", 3: "3rd"}.get(n, f"{n}th")


def _quiet_spell_cte(name: str, rows: str | None, among: str, state: str | None = None) -> str:
    """SQL CTEs ending in ``name(source_system, spell_s, spread_s, spreads, tail_s)``: for each
    source in ``among`` with at least QUIET_SPELLS + 1 gaps, its QUIET_SPELLS-th longest gap
    (seconds) between events of ``rows``, the spread of its longest gaps, how many spreads
    it may exceed that gap by (``spreads``) and the quiet spell its rhythm allows
    (``tail_s``).

    ``state``: a relation of sources with their longest gaps so far (``top_gaps``, see
    dwatch.validate.state), joined to the gaps between ``rows`` (their last event and what
    came after it); ``rows`` None: the state's gaps alone."""
    k, m = QUIET_SPELLS, QUIET_TAIL_GAPS
    parts = []
    if rows is not None:
        parts.append(
            f"SELECT source_system, epoch(occurred_at) - epoch(lag(occurred_at)"
            f" OVER (PARTITION BY source_system ORDER BY occurred_at)) AS gap_s FROM {rows}"
            f" SEMI JOIN {among} USING (source_system) WHERE occurred_at IS NOT NULL"
        )
    if state is not None:
        parts.append(
            f"SELECT source_system, unnest(top_gaps) AS gap_s FROM {state}"
            f" SEMI JOIN {among} USING (source_system)"
        )
    return (
        f" {name}_gaps AS ({' UNION ALL '.join(parts)}),"
        f" {name}_top AS (SELECT source_system, gap_s, row_number() OVER (PARTITION BY"
        f" source_system ORDER BY gap_s DESC) AS rn FROM {name}_gaps WHERE gap_s IS NOT NULL"
        f" QUALIFY rn <= {m}),"
        f" {name}_tail AS (SELECT source_system, max(rn) AS m,"
        f" any_value(gap_s) FILTER (WHERE rn = {k}) AS spell_s,"
        f" min(gap_s) AS last_s FROM {name}_top GROUP BY source_system"
        f" HAVING count(*) > {k}),"
        f" {name}_spread AS (SELECT source_system, m, spell_s, (spell_s - last_s)"
        f" / {_spacing_sums(k, m)}[m] AS spread_s FROM {name}_tail),"
        # The spread is estimated from m - k spacings, so the allowance is predictive: with
        # few gaps it widens (a source of 26 events cannot show a rare spell is abnormal).
        f" {name}_allow AS (SELECT *, (m - {k}) * (pow({2.0 / QUIET_SPELL_CHANCE!r},"
        f" 1.0 / (m - {k})) - 1) AS spreads FROM {name}_spread),"
        f" {name} AS (SELECT source_system, spell_s, spread_s, spreads,"
        f" spell_s + spreads * spread_s AS tail_s FROM {name}_allow)"
    )


def _spacing_sums(k: int, m: int) -> str:
    """SQL list literal whose element j (1-based) is sum(1/i, i = k..j-1): the expected gap
    between the k-th and j-th longest of exponential spells, in units of their spread."""
    sums = [sum(1.0 / i for i in range(k, j)) or 1.0 for j in range(1, m + 1)]
    return "[" + ", ".join(f"{v!r}" for v in sums) + "]"


def _rhythm_cte(rows: str, state: str | None, window_expr: str, factor: float) -> str:
    """SQL CTE ``rhythm``: per source of ``span``, its silence limit and mean gap over
    everything the store holds for it (the table; or ``rows`` without their stand-ins for
    a last event, with the ``state`` of what they leave out)."""
    limit = _limit_of(window_expr, factor, "last_at", "first_at", "n")
    mean = "(epoch(last_at) - epoch(first_at)) / greatest(n - 1, 1)"
    own = (
        "SELECT source_system, max(e.occurred_at) AS last_at, min(e.occurred_at) AS first_at,"
        f" count(e.occurred_at) AS n FROM {rows} e SEMI JOIN span USING (source_system)"
    )
    if state is None:
        stats = f"{own} GROUP BY source_system"
    else:
        stats = (
            "SELECT source_system, max(last_at) AS last_at, min(first_at) AS first_at,"
            f" sum(n)::BIGINT AS n FROM ({own} WHERE NOT e.proxy GROUP BY source_system"
            " UNION ALL SELECT source_system, last_at, first_at, timed_events AS n"
            f" FROM {state} SEMI JOIN span USING (source_system)) GROUP BY source_system"
        )
    return (
        f" rhythm AS (SELECT source_system, {limit} AS limit_s, {mean} AS mean_gap_s"
        f" FROM ({stats})),"
    )


def _silence_check(table: str, facts: BatchFacts) -> Check:
    """No stretch without an event longer than the source's silence limit, per batch of b
    and source."""
    rows, state, _ = facts.history or (ident(table), None, None)
    window_expr = _window_case(facts.silence_windows)
    query = (
        WITH_B
        + ","
        + _LOADED
        + _span_cte("occurred_at")
        + bounds_cte(rows, "occurred_at")
        # The source's rhythm over everything the store holds for it.
        + _rhythm_cte(rows, state, window_expr, facts.silence_rhythm_factor)
        + silence_candidates_cte(rows)
        # Only sources with a stretch beyond the first limit learn their quiet spells (a
        # sort of their history) and may be let off by them.
        + " quiet AS (SELECT DISTINCT source_system FROM found),"
        + _quiet_spell_cte("spells", rows, "quiet", state)
        + ","
        + LIMIT_CTE
        + silence_select(facts.silence_rhythm_factor)
    )
    description = (
        "no source goes silent longer than its silence window, "
        f"{facts.silence_rhythm_factor:g}x its own mean gap between events and the tail of "
        f"its own quiet spells (chance {QUIET_SPELL_CHANCE:g} of a longer one in its history)"
    )
    return _custom("expect_source_not_silent", "occurred_at", "batch", description, query)


def silence_pass_max_query(table: str, facts: BatchFacts) -> str:
    """SQL over the batches ``b`` (as ``_silence_check`` reads them): per batch and source,
    an upper bound (seconds) of every stretch between consecutive events within its
    bounds that the silence check lets pass: the longest such stretch between buckets,
    or a bucket's width (a stretch inside one bucket is shorter); and those bounds
    (``bound_lo``, ``bound_hi``). A later run that checks
    the batch again knows nothing that passed can fail while its limit is at least this
    (dwatch.validate.revisits)."""
    rows, state, _ = facts.history or (ident(table), None, None)
    window_expr = _window_case(facts.silence_windows)
    length = "epoch(o.occurred_at) - epoch(o.prev_at)"
    width = "CASE WHEN rh.limit_s >= 0.000002 THEN rh.limit_s / 2 * 1.000001 + 0.000001 ELSE 0 END"
    return (
        WITH_B
        + ","
        + _LOADED
        + _span_cte("occurred_at")
        + bounds_cte(rows, "occurred_at")
        + _rhythm_cte(rows, state, window_expr, facts.silence_rhythm_factor)
        + silence_candidates_cte(rows, every=True)
        + " quiet AS (SELECT DISTINCT source_system FROM span),"
        + _quiet_spell_cte("spells", rows, "quiet", state)
        + ","
        + LIMIT_CTE
        + f" SELECT s.ingest_run_id, s.source_system, greatest(any_value({width}),"
        f" coalesce(max({length}) FILTER (WHERE {length} <= l.limit_s), 0)) AS pass_max,"
        " any_value(bd.lo) AS bound_lo, any_value(bd.hi) AS bound_hi"
        " FROM span s JOIN rhythm rh USING (source_system) JOIN lim l USING (source_system)"
        " JOIN bounds bd ON bd.ingest_run_id = s.ingest_run_id"
        " AND bd.source_system = s.source_system"
        " LEFT JOIN found o ON o.ingest_run_id = s.ingest_run_id"
        " AND o.source_system = s.source_system GROUP BY 1, 2"
    )


# Per source: its silence limit (``limit_s``: the rhythm's, or the tail of its quiet spells
# when longer), from ``rhythm`` and ``spells``.
LIMIT_CTE = (
    " lim AS (SELECT r.source_system, r.mean_gap_s, s.spell_s,"
    " s.spread_s, s.spreads, s.tail_s, greatest(r.limit_s, coalesce(s.tail_s, 0)) AS limit_s"
    " FROM rhythm r LEFT JOIN spells s USING (source_system))"
)


def silence_select(factor: float) -> str:
    """The silence check's rows from ``found(ingest_run_id, source_system, prev_at,
    occurred_at)`` and ``lim`` (shared with dwatch.validate.revisits)."""
    return (
        " SELECT o.ingest_run_id, o.source_system, o.prev_at AS window_start,"
        " o.occurred_at AS window_end,"
        " json_object('silent_for', CAST(o.occurred_at - o.prev_at AS VARCHAR),"
        " 'limit', CAST(to_seconds(r.limit_s) AS VARCHAR),"
        " 'mean_gap', CAST(to_seconds(r.mean_gap_s) AS VARCHAR),"
        " 'quiet_spell', CAST(to_seconds(coalesce(r.spell_s, 0)) AS VARCHAR)) AS observed,"
        " 'no events for ' || (o.occurred_at - o.prev_at) || ' (limit '"
        " || to_seconds(r.limit_s) || ': the silence window, '"
        f" || {float(factor)!r} || 'x the mean gap of '"
        " || to_seconds(round(r.mean_gap_s)) || ' or the tail of its own quiet spells, '"
        f" || to_seconds(round(coalesce(r.tail_s, 0))) || ' (its {_ordinal(QUIET_SPELLS)}-longest"
        f" quiet spell ' || to_seconds(round(coalesce(r.spell_s, 0))) || ' plus '"
        " || round(coalesce(r.spreads, 0), 1) || 'x their spread of '"
        " || to_seconds(round(coalesce(r.spread_s, 0)))"
        " || '), whichever is longest)' AS message"
        " FROM found o JOIN lim r USING (source_system)"
        " WHERE epoch(o.occurred_at) - epoch(o.prev_at) > r.limit_s"
        " ORDER BY o.ingest_run_id, o.source_system, o.prev_at"
    )


TRANSFER_TYPES = "('request', 'disclosure', 'redisclosure', 'receipt')"


def _flows_newest_cte(flows: str | None) -> str:
    """SQL CTEs ending in ``flows_newest(source_system, at)``: for each source ``behind``,
    the newest transfer of its flows that other logs record (from the events ``b``, or
    from ``flows``: every source's flows with their newest transfer)."""
    on = (
        "o.disclosing_agency = f.disclosing_agency AND o.recipient_agency = f.recipient_agency"
        " AND o.source_system <> f.source_system"
    )
    if flows is not None:
        return (
            " flows AS (SELECT source_system, disclosing_agency, recipient_agency"
            f" FROM {flows} SEMI JOIN behind USING (source_system)),"
            " flows_newest AS (SELECT f.source_system, max(o.last_transfer_at) AS at"
            f" FROM flows f JOIN {flows} o ON {on} GROUP BY f.source_system),"
        )
    return (
        " flows AS (SELECT DISTINCT source_system, disclosing_agency, recipient_agency FROM b"
        " SEMI JOIN behind USING (source_system)"
        " WHERE disclosing_agency IS NOT NULL AND recipient_agency IS NOT NULL),"
        # Only transfers of its flows elsewhere say this log had something to write: a
        # recipient's later uses and disposals of data received long ago do not.
        " flows_newest AS (SELECT f.source_system, max(o.occurred_at) AS at FROM flows f"
        f" JOIN b o ON {on} WHERE o.event_type IN {TRANSFER_TYPES} GROUP BY f.source_system),"
    )


def trailing_silence_check(
    table: str,
    silence_windows: dict[str, timedelta],
    rhythm_factor: float = 8.0,
    state: str | None = None,
    flows: str | None = None,
) -> Check:
    """Store-wide: a source whose last event is older than the newest event of any source
    by more than its silence limit stopped sending (coverage incomplete up to now).

    A source whose flows (sender and recipient) other logs record is judged against the
    newest of *those* events instead: a receipt log of a flow that stopped everywhere (an
    investigation closed, nothing more was sent) is quiet because nothing happened, not
    because its logs are missing.

    ``state``: a relation holding every source's statistics (dwatch.validate.state) read
    instead of every event; the table is then read only for the flows of sources behind.
    ``flows``: a relation of every source's flows with their newest transfer
    (dwatch.validate.flow_state) read instead of the table."""
    window_expr = _window_case(silence_windows)
    if state is None:
        last = (
            "SELECT source_system, max(occurred_at) AS last_at,"
            f" {_silence_limit(window_expr, rhythm_factor, 'b')} AS limit_s FROM b"
            " WHERE source_system IS NOT NULL GROUP BY source_system"
        )
    else:
        limit = _limit_of(window_expr, rhythm_factor, "last_at", "first_at", "timed_events")
        last = f"SELECT source_system, last_at, {limit} AS limit_s FROM {state}"
    query = (
        WITH_B + f", last AS ({last}),"
        # Logs are exported at different times: the store reaches where most of its logs
        # do (the median of their last events, from 3 logs on), so one log running a day
        # ahead (or a clock in the future) does not make every other log "silent".
        " newest AS (SELECT CASE WHEN count(*) >= 3 THEN"
        " to_timestamp(quantile_disc(epoch(last_at), 0.5)) ELSE max(last_at) END AS at FROM last),"
        " behind AS (SELECT source_system FROM last, newest"
        " WHERE epoch(newest.at) - epoch(last_at) > limit_s),"
        + _flows_newest_cte(flows)
        + " judged AS (SELECT l.*, least(coalesce(fn.at, newest.at), newest.at) AS until_at,"
        " fn.at IS NOT NULL"
        " AS by_flows FROM last l SEMI JOIN behind USING (source_system)"
        " LEFT JOIN flows_newest fn USING (source_system), newest),"
        + (
            _quiet_spell_cte("spells", "b", "behind")
            if state is None
            else _quiet_spell_cte("spells", None, "behind", state)
        )
        + " SELECT NULL::VARCHAR AS ingest_run_id, source_system, last_at AS window_start,"
        " until_at AS window_end,"
        " json_object('last_event', last_at, 'newest_event_judged_against', until_at,"
        " 'judged_against', CASE WHEN by_flows THEN 'its flows in other logs'"
        " ELSE 'any source' END,"
        " 'limit', CAST(to_seconds(greatest(limit_s, coalesce(tail_s, 0))) AS VARCHAR),"
        " 'quiet_spell', CAST(to_seconds(coalesce(spell_s, 0)) AS VARCHAR)) AS observed,"
        " 'no events since ' || strftime(last_at, '%Y-%m-%dT%H:%M:%SZ') || CASE WHEN by_flows"
        " THEN ' while other logs record its flows until ' ELSE ' while most logs reach ' END"
        " || strftime(until_at, '%Y-%m-%dT%H:%M:%SZ') || ' (limit '"
        " || to_seconds(round(greatest(limit_s, coalesce(tail_s, 0)))) || ')' AS message"
        " FROM judged LEFT JOIN spells USING (source_system)"
        " WHERE epoch(until_at) - epoch(last_at) > greatest(limit_s, coalesce(tail_s, 0))"
        " ORDER BY source_system"
    )
    description = "every source reaches the newest event of the store within its silence limit"
    return _custom("expect_source_not_silent_until_now", "occurred_at", "batch", description, query)
