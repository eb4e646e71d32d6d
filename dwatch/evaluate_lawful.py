"""Findings on lawful sources: validation gaps whose window holds no injected event.

The issue's target "no silence or out-of-order finding on a lawful source" is measured on
both worlds the same way: a failed batch check (``coverage_gaps``) is *explained* when the
window it names holds an event of an injected case in the same log (the rows either side
of deleted rows, say), and *on lawful rows* otherwise. A silence on a bursty audit's
quiet week is the second kind.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import duckdb
import polars as pl

# Checks about a source going quiet (batch-level and store-wide); validation names them
# with their column, ``expect_source_not_silent(occurred_at)``.
SILENCE_CHECKS = frozenset({"expect_source_not_silent", "expect_source_not_silent_until_now"})


def coverage_on_lawful(
    con: duckdb.DuckDBPyConnection, injected: Callable[[str, str], bool]
) -> list[dict[str, Any]]:
    """Open coverage gaps per (source, check): how many, and how many name only lawful rows.

    ``injected(source_system, event_id)`` says whether a stored event belongs to an
    injected case. A gap without a window (a whole file) counts as on lawful rows unless the
    file's source holds an injected event.
    """
    gaps = con.execute(
        "SELECT row_number() OVER () AS gap, source_system, expectation, window_start, window_end"
        " FROM coverage_gaps"
    ).fetchall()
    if not gaps:
        return []
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _eval_gaps (gap BIGINT, source_system VARCHAR,"
        " window_start TIMESTAMPTZ, window_end TIMESTAMPTZ)"
    )
    con.executemany(
        "INSERT INTO _eval_gaps VALUES (?, ?, ?, ?)", [[g[0], g[1], g[3], g[4]] for g in gaps]
    )
    inside = con.execute(
        "SELECT g.gap, e.source_system, e.event_id FROM _eval_gaps g JOIN disclosure_events e"
        " ON e.source_system = g.source_system AND (g.window_start IS NULL OR"
        " e.occurred_at BETWEEN g.window_start AND coalesce(g.window_end, g.window_start))"
    ).fetchall()
    con.execute("DROP TABLE _eval_gaps")
    explained = {gap for gap, source, event_id in inside if injected(source, str(event_id))}
    counts: dict[tuple[str, str], list[int]] = {}
    for gap, source, expectation, _start, _end in gaps:
        row = counts.setdefault((source or "-", expectation), [0, 0])
        row[0] += 1
        row[1] += gap not in explained
    return [
        {
            "source_system": source,
            "expectation": expectation,
            "gaps": n,
            "on_lawful_rows": lawful,
            "silence": expectation.split("(")[0] in SILENCE_CHECKS,
        }
        for (source, expectation), (n, lawful) in sorted(counts.items())
    ]


def lawful_summary(coverage: list[dict[str, Any]], false_by_detector: dict[str, int]) -> str:
    """One line for the target: silence gaps and out-of-order findings on lawful rows."""
    silent = {
        c["source_system"]: c["on_lawful_rows"]
        for c in coverage
        if c["silence"] and c["on_lawful_rows"]
    }
    late = false_by_detector.get("out_of_order_timestamps", 0)
    where = ", ".join(f"{s} x{n}" for s, n in sorted(silent.items())) or "none"
    return (
        f"on lawful rows: silence gaps {sum(silent.values())} ({where}); "
        f"false out_of_order_timestamps alerts {late}"
    )


def validate_generated(
    con: duckdb.DuckDBPyConnection, labelled: set[tuple[str, str]]
) -> list[dict[str, Any]]:
    """Validate a generated store as ``dwatch run`` would (no Data Docs), then count its
    coverage gaps; ``labelled`` holds (source_system, event_id) of every scenario event.

    Called after rules and ML are measured: validation may quarantine rows, and the
    figures before it must not depend on that."""
    from dwatch.validate import validate_batches

    validate_batches(con, build_docs=False)
    return coverage_on_lawful(con, lambda source, event_id: (source, event_id) in labelled)


def false_by_detector(detectors: Sequence[str], touched: Iterable[int]) -> dict[str, int]:
    """Alerts per detector id that touch no scenario event: ``detectors`` lists each alert's
    detector id in row order, ``touched`` the row ids that touch one."""
    hit = set(touched)
    counts: dict[str, int] = {}
    for row, detector in enumerate(detectors):
        if row not in hit:
            counts[detector] = counts.get(detector, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


# Columns that say who and what an ML row is about, where a detector's frame has them.
ENTITY_COLUMNS = (
    "source_system", "event_id", "actor_id", "disclosing_agency", "recipient_agency",
    "legal_authority", "day", "occurred_at", "record_count", "channel",
)  # fmt: skip


def entity_of(frame: pl.DataFrame) -> pl.Expr:
    """``entity``: 'column=value; ...' over the ENTITY_COLUMNS the frame has."""
    present = [c for c in ENTITY_COLUMNS if c in frame.columns]
    if not present:
        return pl.lit("").alias("entity")
    parts = [pl.lit(f"{c}=") + pl.col(c).cast(pl.String).fill_null("") for c in present]
    return pl.concat_str(parts, separator="; ").alias("entity")


def false_examples(
    alerted: pl.DataFrame, touch: pl.DataFrame, per_detector: int = 5
) -> dict[str, list[dict[str, Any]]]:
    """The highest-scored ML alerts touching no scenario, per detector (for a reader to
    judge why they look lawful): score, threshold, entity and a few event keys."""
    false = alerted.join(touch.select("row_id").unique(), on="row_id", how="anti")
    out: dict[str, list[dict[str, Any]]] = {}
    for (detector,), rows in false.sort("score", descending=True).group_by(
        "detector_id", maintain_order=True
    ):
        out[str(detector)] = [
            {
                "score": round(float(r["score"]), 2),
                "threshold": round(float(r["threshold"]), 2),
                "entity": r.get("entity", ""),
                "events": [k.replace("\x1f", ":") for k in (r["event_keys"] or [])[:3]],
            }
            for r in rows.head(per_detector).iter_rows(named=True)
        ]
    return dict(sorted(out.items()))
