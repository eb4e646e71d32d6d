"""Write an independent labelled set of disclosure logs.

    .venv/bin/python -m benchmarks.probe OUTDIR --events 20000 --seed 3

OUTDIR/logs/ (several sources in their own layouts), OUTDIR/labels/ (the truth, format in
docs/evaluation-labels.md) and OUTDIR/registry/ (the probe's own agencies and agreements,
to be merged with policies/: see ``python -m benchmarks.probe.run``).
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchmarks.probe import audits, injected, lawful
from benchmarks.probe.layouts import write_labels, write_logs, write_overlay
from benchmarks.probe.world import World


def build(events: int, seed: int, instances: int = 1) -> World:
    """The whole world: lawful traffic, injected cases, log-integrity cases, numbered."""
    w = World(seed=seed, events_target=events)
    lawful.bulk_flows(w)
    fixed = len(w.events)
    injected.ice_flow(w)
    rest = max(2_000, events - fixed - (len(w.events) - fixed))
    audits.tx_ledger(w, int(rest * 0.07))
    audits.county_requests(w, max(5, int(rest * 0.006)))
    lawful.criminal_requests(w, max(20, int(rest * 0.035)))
    pool = audits.hi_pool(w, rest)
    audits.hi_audits(w, events - len(w.events), pool)
    for n in range(instances):
        shift = timedelta(days=47 * n)
        injected.chain_cases(w, datetime(2025, 3, 4, 15, tzinfo=UTC) + shift)
        injected.bulk_cases(w, datetime(2025, 9, 2, 14, tzinfo=UTC) + shift)
        injected.behaviour_cases(w, datetime(2026, 1, 12, tzinfo=UTC) + shift, pool, n)
    injected.relabel_registry_cases(w)
    integrity_cases(w)
    w.number_logs()
    sequence_gap(w)
    return w


def integrity_cases(w: World) -> None:
    """Cases about the log itself, set up before numbering: a late run, duplicates."""
    inst = w.instance(
        "late_logged_run",
        "behaviour",
        ["out_of_order_timestamps"],
        note="30 consecutive rows logged about 51 hours after they happened",
    )
    after = datetime(2026, 3, 16, 19, tzinfo=UTC)
    run = sorted(
        (
            e
            for e in w.events
            if e["source_system"] == "pub1075-audit"
            and e["label"] == "lawful"
            and e["occurred_at"] >= after
        ),
        key=lambda e: e["occurred_at"],
    )[:30]
    for e in run:
        e.update(label="anomaly", instance=inst, logged_at=e["occurred_at"] + timedelta(hours=51))
    inst = w.instance("duplicate_event_id", "rule", ["duplicate_events"])
    twin = next(
        e
        for e in w.events
        if e["source_system"] == "kiteworks-activity"
        and e["label"] == "lawful"
        and e["event_type"] == "receipt"
        and e["occurred_at"] > datetime(2025, 10, 1, tzinfo=UTC)
    )
    twin.update(label="violation", instance=inst, duplicate_row=True)
    # A lawful row the log wrote malformed: ingest quarantines it, but it was logged, so its
    # sequence number is no gap.
    malformed = next(
        e
        for e in w.events
        if e["source_system"] == "txoag-fti-ledger"
        and e["label"] == "lawful"
        and e["occurred_at"] > datetime(2025, 6, 1, tzinfo=UTC)
    )
    malformed["malformed"] = True
    inst = w.instance("shared_sequence_number", "rule", ["duplicate_events"])
    first = next(
        e
        for e in w.events
        if e["source_system"] == "irs-matching-exchange"
        and e["label"] == "lawful"
        and e["occurred_at"] > datetime(2025, 7, 1, tzinfo=UTC)
    )
    first.update(label="violation", instance=inst)
    copy = {k: v for k, v in first.items() if k not in {"event_id", "duplicate_row"}}
    copy.update(
        event_id=w.event_id("irs-matching-exchange", first["occurred_at"]),
        seq_twin=True,
        logged_at=first["logged_at"] + timedelta(seconds=1),
    )
    w.events.append(copy)


def sequence_gap(w: World) -> None:
    """Four consecutive rows deleted from the access audit; the rows either side are the case."""
    inst = w.instance("deleted_rows", "rule", ["sequence_gap"], note="4 rows removed from the log")
    rows = sorted(
        (e for e in w.events if e["source_system"] == "pub1075-audit"),
        key=lambda e: e["sequence_no"],
    )
    at = int(len(rows) * 0.61)
    while any(r["label"] != "lawful" for r in rows[at - 1 : at + 5]):
        at += 7
    gone = rows[at : at + 4]
    for e in (rows[at - 1], rows[at + 4]):
        e.update(label="violation", instance=inst)
    w.dropped.extend(gone)
    ids = {id(e) for e in gone}
    w.events = [e for e in w.events if id(e) not in ids]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.probe", description=__doc__.splitlines()[0]
    )
    parser.add_argument("out", type=Path, help="folder to write logs/, labels/ and registry/ into")
    parser.add_argument("--events", type=int, default=20_000, help="events to write (about)")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument(
        "--instances", type=int, default=1, help="injected instances of each repeatable case"
    )
    args = parser.parse_args(argv)
    w = build(args.events, args.seed, args.instances)
    counts = write_logs(w, args.out)
    write_labels(w, args.out, counts)
    write_overlay(args.out)
    print(
        f"{len(w.events):,} events ({w.lawful_count():,} lawful), {len(w.items):,} request items, "
        f"{len(w.instances)} injected instances, {len(w.subjects):,} per-taxpayer truths -> {args.out}"
    )
    for source, n in sorted(counts.items()):
        print(f"  {source:<24} {n:>9,}")


if __name__ == "__main__":
    main()
