"""The per-source validation state computed from stored rows, without sorting every event.

A source's statistics (first and last event, events with a time, the batch of its last
event, its highest sequence number) are one aggregate. Its longest gaps between events
would need its events in time order, a sort of every row (most of a full run's state
build). Instead its events are counted into buckets of a width several times its mean
gap: a gap at least a bucket wide always spans a bucket boundary, so it is one of the
gaps between consecutive non-empty buckets (the last event of one, the first of the
next), found from the buckets alone. When a source has at least QUIET_TAIL_GAPS such
wide gaps, its longest are among them, exactly; the other sources (few wide gaps: few
events, or a very even rhythm) are sorted, their rows only. Gaps are computed by the same
expression as everywhere else (``epoch(later) - epoch(earlier)``), so they are the same
numbers to the last bit.
"""

from __future__ import annotations

import duckdb

from dwatch.validate.coverage import QUIET_TAIL_GAPS

# Bucket width in mean gaps: wide enough that buckets are several times fewer than
# events, narrow enough that a source of a few thousand events has QUIET_TAIL_GAPS gaps
# wider than one (for evenly random times, one gap in 400 is six mean gaps long).
WIDTH_IN_MEAN_GAPS = 6.0
COLUMNS = (
    "source_system, first_at, last_at, timed_events, last_run_id, top_gaps, gaps_kept,"
    " last_seq, last_seq_at, last_seq_run"
)


def summarize(con: duckdb.DuckDBPyConnection, rows: str, into: str) -> list[str]:
    """``into`` (a temp table of ``COLUMNS``): the state of each source of ``rows``, a
    relation of stored events (source_system, occurred_at, ingest_run_id, sequence_no).
    Returns the sources whose longest gaps were found from buckets (not sorted)."""
    m = QUIET_TAIL_GAPS
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _dw_val_stats AS SELECT source_system,"
        " min(occurred_at) AS first_at, max(occurred_at) AS last_at,"
        " count(occurred_at) AS timed_events, arg_max(ingest_run_id, occurred_at) AS last_run_id,"
        " max(sequence_no) AS last_seq, arg_max(occurred_at, sequence_no) AS last_seq_at,"
        f" arg_max(ingest_run_id, sequence_no) AS last_seq_run FROM ({rows}) r"
        " WHERE source_system IS NOT NULL GROUP BY 1"
    )
    width_us = (
        f"greatest({WIDTH_IN_MEAN_GAPS!r} * (epoch_us(last_at) - epoch_us(first_at))"
        " / greatest(timed_events - 1, 1), 1000000)::BIGINT"
    )
    # A wide gap: at least a bucket plus a millisecond (doubles never blur that much).
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _dw_val_wide AS WITH w AS (SELECT source_system,"
        f" epoch_us(first_at) AS first_us, {width_us} AS width_us FROM _dw_val_stats"
        " WHERE timed_events > 1),"
        " buckets AS (SELECT r.source_system,"
        " (epoch_us(r.occurred_at) - w.first_us) // w.width_us AS k,"
        " min(r.occurred_at) AS lo, max(r.occurred_at) AS hi FROM"
        f" ({rows}) r JOIN w USING (source_system) WHERE r.occurred_at IS NOT NULL GROUP BY 1, 2),"
        " gaps AS (SELECT source_system, epoch(lo) - epoch(lag(hi) OVER"
        " (PARTITION BY source_system ORDER BY k)) AS gap_s FROM buckets)"
        f" SELECT g.source_system, max(g.gap_s, {m}) AS top_gaps FROM gaps g JOIN w"
        " USING (source_system) WHERE g.gap_s >= w.width_us / 1e6 + 0.001"
        f" GROUP BY 1 HAVING count(*) >= {m}"
    )
    # The others: their rows in time order (few events, or an even rhythm).
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _dw_val_sorted AS SELECT source_system,"
        f" max(gap_s, {m}) AS top_gaps FROM (SELECT source_system, epoch(occurred_at)"
        " - epoch(lag(occurred_at) OVER (PARTITION BY source_system ORDER BY occurred_at))"
        f" AS gap_s FROM ({rows}) r WHERE occurred_at IS NOT NULL AND source_system IN"
        " (SELECT source_system FROM _dw_val_stats WHERE timed_events > 1"
        " AND source_system NOT IN (SELECT source_system FROM _dw_val_wide)))"
        " WHERE gap_s IS NOT NULL GROUP BY 1"
    )
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {into} AS SELECT s.source_system, s.first_at, s.last_at,"
        " s.timed_events, s.last_run_id,"
        " coalesce(w.top_gaps, o.top_gaps, []::DOUBLE[]) AS top_gaps,"
        f" {m} AS gaps_kept, s.last_seq, s.last_seq_at, s.last_seq_run FROM _dw_val_stats s"
        " LEFT JOIN _dw_val_wide w USING (source_system)"
        " LEFT JOIN _dw_val_sorted o USING (source_system)"
    )
    wide = [
        r[0] for r in con.execute("SELECT source_system FROM _dw_val_wide ORDER BY 1").fetchall()
    ]
    for temp in ("_dw_val_stats", "_dw_val_wide", "_dw_val_sorted"):
        con.execute(f"DROP TABLE {temp}")
    return wide
