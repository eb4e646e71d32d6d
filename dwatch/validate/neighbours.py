"""Neighbours by order without joining every row to its neighbour: the SQL the sequence
gap and silence checks share.

Both checks ask, for each batch of ``b`` and source (its ``span``: lowest and highest
value of the ordering column), which gaps lie between the source's consecutive rows from
the nearest row below the span to the nearest row above it, those neighbours taken
among batches loaded no later than the batch (``bounds``), the rows between them taken
from every batch. A gap between consecutive rows of one source is the same whichever
batch asks, so each gap is found once per source and then handed to every span that
holds it (a join of gaps, not of rows):

- ``bounds``: one aggregate of the rows by batch and source gives each batch's lowest
  and highest value; a batch lying wholly below (above) a span gives its highest
  (lowest) value as a candidate neighbour, and only a batch that straddles a span's edge
  (batches whose values interleave) has its rows read for the exact neighbour;
- sequence numbers: one aggregate of the rows into buckets of 64 numbers, each bucket a
  bitmap of the numbers present; a gap lies between consecutive non-empty buckets or
  inside a bucket whose bitmap has holes, and only the gaps' end rows are read again
  for their times;
- silences: one aggregate of the rows into time buckets of half the source's silence
  limit; a silence longer than the limit leaves a bucket empty, so it lies between the
  last event of a bucket and the first of the next non-empty one.

Values are compared and gaps measured with the same expressions as reading every row in
order would use, so the gaps found are the same, to the last bit.
"""

from __future__ import annotations

# A bucket of sequence numbers: 2**SEQ_BITS numbers, one bit each in a UBIGINT.
SEQ_BITS = 6


def bounds_cte(rows: str, column: str) -> str:
    """SQL CTEs ending in ``bounds(ingest_run_id, source_system, lo, hi)``: each span of
    ``span`` (see dwatch.validate.coverage) widened to its source's nearest rows of
    ``rows`` on either side, among batches loaded no later than its own (``loaded``)."""
    earlier = (
        "(p.run_at < s.run_at OR (p.run_at = s.run_at AND p.ingest_run_id <= s.ingest_run_id))"
    )
    return (
        # Each batch's lowest and highest value per source (sources of the spans only).
        f" per AS (SELECT e.source_system, e.ingest_run_id, l.run_at, min(e.{column}) AS lo,"
        f" max(e.{column}) AS hi FROM {rows} e JOIN loaded l ON l.run_id = e.ingest_run_id"
        " WHERE e.source_system IN (SELECT source_system FROM span)"
        f" AND e.{column} IS NOT NULL GROUP BY ALL),"
        " pairs AS (SELECT s.ingest_run_id, s.source_system, s.lo, s.hi,"
        " p.ingest_run_id AS other, p.lo AS o_lo, p.hi AS o_hi FROM span s"
        f" JOIN per p ON p.source_system = s.source_system AND {earlier}),"
        " side AS (SELECT ingest_run_id, source_system, max(o_hi) FILTER (WHERE o_hi < lo)"
        " AS below, min(o_lo) FILTER (WHERE o_lo > hi) AS above FROM pairs GROUP BY 1, 2),"
        # A batch straddling a span's edge: its rows give the exact neighbour.
        " straddle AS (SELECT * FROM pairs WHERE (o_lo < lo AND o_hi >= lo)"
        " OR (o_lo <= hi AND o_hi > hi)),"
        f" near AS (SELECT x.ingest_run_id, x.source_system, max(e.{column})"
        f" FILTER (WHERE e.{column} < x.lo) AS below, min(e.{column})"
        f" FILTER (WHERE e.{column} > x.hi) AS above FROM {rows} e JOIN straddle x"
        " ON e.source_system = x.source_system AND e.ingest_run_id = x.other GROUP BY 1, 2),"
        " bounds AS (SELECT s.ingest_run_id, s.source_system,"
        " coalesce(greatest(d.below, n.below), s.lo) AS lo,"
        " coalesce(least(d.above, n.above), s.hi) AS hi FROM span s"
        " LEFT JOIN side d USING (ingest_run_id, source_system)"
        " LEFT JOIN near n USING (ingest_run_id, source_system)),"
        # Per source, the values any span's neighbours reach (rows outside are not read).
        " reach AS (SELECT source_system, min(lo) AS lo, max(hi) AS hi FROM bounds GROUP BY 1),"
    )


def sequence_gaps_cte(rows: str, held: str) -> str:
    """SQL CTEs ending in ``found(ingest_run_id, source_system, prev_no, sequence_no,
    prev_at, occurred_at)``: every gap in a source's sequence numbers (rows of ``rows``
    and of ``held``, relations of source_system, sequence_no, occurred_at) between the
    bounds of a span, with the times of the rows either side. Needs ``bounds_cte``."""
    bits = SEQ_BITS
    mask = (1 << bits) - 1
    return (
        " numbered AS (SELECT e.source_system, e.sequence_no AS n, e.occurred_at FROM"
        f" {rows} e JOIN reach r ON e.source_system = r.source_system"
        " AND e.sequence_no BETWEEN r.lo AND r.hi"
        " UNION ALL SELECT h.source_system, h.sequence_no, h.occurred_at FROM"
        f" {held} h JOIN reach r ON h.source_system = r.source_system"
        " AND h.sequence_no BETWEEN r.lo AND r.hi),"
        f" bucket AS (SELECT source_system, n >> {bits} AS k,"
        f" bit_or(1::UBIGINT << (n & {mask})::INTEGER) AS present, min(n) AS lo, max(n) AS hi"
        " FROM numbered GROUP BY 1, 2),"
        # Between buckets: the last number of one and the first of the next non-empty one.
        " across AS (SELECT source_system, prev_hi AS prev_no, lo AS sequence_no FROM"
        " (SELECT source_system, lo, lag(hi) OVER (PARTITION BY source_system ORDER BY k)"
        " AS prev_hi FROM bucket) WHERE lo - prev_hi > 1),"
        # Inside a bucket with holes: its numbers from its bitmap, in order.
        " holed AS (SELECT source_system, k, present FROM bucket"
        " WHERE bit_count(present) < hi - lo + 1),"
        " inside AS (SELECT source_system, prev_no, sequence_no FROM"
        f" (SELECT source_system, k * {1 << bits} + i AS sequence_no, lag(k * {1 << bits} + i)"
        " OVER (PARTITION BY source_system, k ORDER BY i) AS prev_no FROM holed"
        f" CROSS JOIN range({1 << bits}) AS r(i) WHERE (present >> i::INTEGER) & 1 = 1)"
        " WHERE sequence_no - prev_no > 1),"
        " gaps AS (SELECT * FROM across UNION ALL SELECT * FROM inside),"
        # The times of the rows either side of each gap (a number held twice: either row).
        " ends AS (SELECT source_system, n, max(occurred_at) AS last_at,"
        " min(occurred_at) AS first_at FROM numbered SEMI JOIN (SELECT source_system,"
        " prev_no AS n FROM gaps UNION SELECT source_system, sequence_no FROM gaps)"
        " USING (source_system, n) GROUP BY 1, 2),"
        " found AS (SELECT bd.ingest_run_id, bd.source_system, g.prev_no, g.sequence_no,"
        " pe.last_at AS prev_at, qe.first_at AS occurred_at FROM bounds bd JOIN gaps g"
        " ON g.source_system = bd.source_system AND g.prev_no >= bd.lo"
        " AND g.sequence_no <= bd.hi"
        " JOIN ends pe ON pe.source_system = g.source_system AND pe.n = g.prev_no"
        " JOIN ends qe ON qe.source_system = g.source_system AND qe.n = g.sequence_no)"
    )


def silence_candidates_cte(rows: str, every: bool = False) -> str:
    """SQL CTEs ending in ``found(ingest_run_id, source_system, prev_at, occurred_at)``:
    every stretch between consecutive events of a source of ``rows`` longer than its
    ``rhythm`` limit, between the bounds of a span. Needs ``bounds_cte`` and ``rhythm``.

    Buckets are half the limit wide (a longer silence covers one whole); a limit too
    short for that (under two microseconds) gives every instant a bucket of its own.
    ``every``: every stretch between consecutive non-empty buckets, whatever its length
    (any other stretch lies inside one bucket, so is shorter than a bucket's width)."""
    key = (
        "CASE WHEN r.limit_s >= 0.000002 THEN floor(epoch(e.occurred_at) / (r.limit_s / 2))"
        " ELSE epoch_us(e.occurred_at)::DOUBLE END"
    )
    return (
        f" timed AS (SELECT e.source_system, {key} AS k, min(e.occurred_at) AS lo,"
        f" max(e.occurred_at) AS hi FROM {rows} e JOIN reach v"
        " ON e.source_system = v.source_system AND e.occurred_at BETWEEN v.lo AND v.hi"
        " JOIN rhythm r ON r.source_system = e.source_system GROUP BY 1, 2),"
        " stretches AS (SELECT t.source_system, t.prev_at, t.lo AS occurred_at FROM"
        " (SELECT source_system, lo, lag(hi) OVER (PARTITION BY source_system ORDER BY k)"
        " AS prev_at FROM timed) t JOIN rhythm r USING (source_system)"
        + (
            " WHERE t.prev_at IS NOT NULL),"
            if every
            else " WHERE epoch(t.lo) - epoch(t.prev_at) > r.limit_s),"
        )
        + " found AS (SELECT bd.ingest_run_id, bd.source_system, c.prev_at, c.occurred_at"
        " FROM bounds bd JOIN stretches c ON c.source_system = bd.source_system"
        " AND c.prev_at >= bd.lo AND c.occurred_at <= bd.hi),"
    )
