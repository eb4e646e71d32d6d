"""Does a run's cost grow with the new data or with history? Measured side by side.

    python -m benchmarks pipeline -- --history 2000,8000 --new 200

For each history size: generate that many events (all scenarios), run the pipeline once
on them (the initial load), then add one small file of ``--new`` events dated after the
history and run again (incremental), then run once more with nothing new (idle). Prints
each run's total and per-step seconds, and the ratios of the initial and of the
incremental runs across history sizes next to the ratio of the history sizes. Everything
runs in this process after an unreported warm-up run; the machine's other load shows in
the figures.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import tempfile
import time
from pathlib import Path

from dwatch.pipeline import STEP_NAMES, PipelineConfig, RunSummary, run_pipeline

HEADER = [
    "event_id", "source_system", "sequence_no", "occurred_at", "event_type", "disclosing_agency",
    "recipient_agency", "actor_id", "actor_role", "request_id", "legal_authority", "purpose",
    "data_elements", "record_count", "taxpayer_tin", "channel", "encrypted", "agreement_id",
    "case_number", "description", "outcome",
]  # fmt: skip


def _compact(raw: Path, out: Path) -> None:
    """One file for the IRS ledger, one for every recipient log, one for request items."""
    out.mkdir(parents=True, exist_ok=True)
    groups = {
        "events-ledger.csv": sorted(raw.glob("events-irs-*.csv")),
        "events-recipients.csv": sorted(
            p for p in raw.glob("events-*.csv") if not p.name.startswith("events-irs-")
        ),
        "request_items.csv": [raw / "request_items.csv"],
    }
    for name, files in groups.items():
        with (out / name).open("w", newline="", encoding="utf-8") as fh:
            writer = None
            for f in files:
                with f.open(newline="", encoding="utf-8") as g:
                    reader = csv.reader(g)
                    head = next(reader)
                    if writer is None:
                        writer = csv.writer(fh)
                        writer.writerow(head)
                    writer.writerows(reader)


def _new_file(path: Path, n: int) -> None:
    """``n`` state-tax disclosures in July 2026, after every generated event."""
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, HEADER)
        writer.writeheader()
        for i in range(n):
            writer.writerow(
                {
                    "event_id": f"BENCH-NEW-{i:07d}",
                    "source_system": "bench-new-log",
                    "sequence_no": i + 1,
                    "occurred_at": f"2026-07-{1 + i % 28:02d}T{8 + i % 10:02d}:00:00Z",
                    "event_type": "disclosure",
                    "disclosing_agency": "IRS",
                    "recipient_agency": "CA-FTB",
                    "actor_id": f"irs.bench.{i % 7}",
                    "actor_role": "disclosure_specialist",
                    "legal_authority": "26 USC 6103(d)",
                    "purpose": "state_tax_administration",
                    "data_elements": json.dumps(["name", "address", "income"]),
                    "record_count": 1,
                    "channel": "secure_file_transfer",
                    "encrypted": "true",
                    "outcome": "success",
                }
            )


def _row(label: str, summary: RunSummary) -> str:
    steps = {s.step: s.seconds for s in summary.steps}
    cells = " ".join(f"{steps.get(n, 0.0):>8.2f}" for n in STEP_NAMES)
    return f"{label:<24} {summary.duration_seconds or 0:>8.2f} {cells}  {summary.status}"


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench_pipeline")
    parser.add_argument("--history", default="2000,8000", help="comma-separated event counts")
    parser.add_argument("--new", type=int, default=200, help="events in the new file")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.history.split(",")]
    os.environ.setdefault("DWATCH_PSEUDONYM_KEY", "benchmark-key-not-secret-0123456789")
    from dwatch.generate import generate

    print(f"{'run':<24} {'total s':>8} " + " ".join(f"{n[:8]:>8}" for n in STEP_NAMES))
    initial: dict[int, float] = {}
    incremental: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="dwatch-bench-pipeline-") as tmp:
        # Warm-up (not reported): the first run in a process pays for importing and starting
        # Great Expectations, scikit-learn and the registry, which would swamp the first size.
        warm = Path(tmp) / "warm-up"
        generate(warm / "raw", events=500, seed=3)
        _compact(warm / "raw", warm / "inbox")
        run_pipeline(
            warm / "store.duckdb",
            [warm / "inbox"],
            config=PipelineConfig(
                reports_dir=warm / "reports", snapshot_dir=warm / "snapshots", notify=False
            ),
            trigger="benchmark",
        )
        for size in sizes:
            root = Path(tmp) / str(size)
            generate(root / "raw", events=size, seed=11)
            inbox = root / "inbox"
            _compact(root / "raw", inbox)
            config = PipelineConfig(
                reports_dir=root / "reports",
                snapshot_dir=root / "snapshots",
                notify=False,
                source="(benchmark)",
            )
            db = root / "store.duckdb"
            t0 = time.perf_counter()
            first = run_pipeline(db, [inbox], config=config, trigger="benchmark")
            print(_row(f"history {size:,}: initial", first))
            _new_file(inbox / "new.csv", args.new)
            second = run_pipeline(db, [inbox], config=config, trigger="benchmark")
            print(_row(f"history {size:,}: +{args.new}", second))
            third = run_pipeline(db, [inbox], config=config, trigger="benchmark")
            print(_row(f"history {size:,}: idle", third))
            initial[size] = first.duration_seconds or 0.0
            incremental[size] = second.duration_seconds or 0.0
            print(f"  ({time.perf_counter() - t0:.1f}s for the three runs)", flush=True)
    if len(sizes) >= 2:
        lo, hi = sizes[0], sizes[-1]
        print(
            f"history x{hi / lo:.1f}: initial run x{initial[hi] / max(initial[lo], 1e-9):.2f}"
            f" ({initial[lo]:.2f}s -> {initial[hi]:.2f}s); incremental run"
            f" x{incremental[hi] / max(incremental[lo], 1e-9):.2f}"
            f" ({incremental[lo]:.2f}s -> {incremental[hi]:.2f}s for the same {args.new} new events)"
        )
