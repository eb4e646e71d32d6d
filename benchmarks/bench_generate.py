"""Generator throughput and memory: ``python -m benchmarks generate -- [--events N] ...``.

Runs the generator at N/10 and at N events, side by side in the same process, and prints
rows/s and peak resident memory of each plus their ratios: throughput should hold and
peak memory should stay flat as N grows ten-fold (streamed, bounded memory).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import threading
import time
from pathlib import Path

from dwatch.generate import ALL_FORMATS, generate
from dwatch.generate.core import DEFAULT_CHUNK


def _rss_bytes() -> int:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class _PeakRSS:
    """Samples resident memory every 20 ms while a run is in progress."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_bytes())
            self._stop.wait(0.02)

    def __enter__(self) -> _PeakRSS:
        self.peak = _rss_bytes()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes())


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.iterdir() if p.is_file())


def _run(out: Path, events: int, fmt: str, chunk: int) -> dict[str, float]:
    shutil.rmtree(out, ignore_errors=True)
    with _PeakRSS() as rss:
        wall, cpu = time.perf_counter(), time.process_time()
        result = generate(out, events=events, fmt=fmt, chunk_events=chunk)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    figures = {
        "events": float(result.events),
        "wall_s": wall,
        "cpu_s": cpu,
        "rows_per_s": result.events / wall,
        "peak_rss_mb": rss.peak / 2**20,
        "output_mb": _dir_size(out) / 2**20,
    }
    shutil.rmtree(out, ignore_errors=True)
    return figures


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench_generate")
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--format", dest="fmt", choices=ALL_FORMATS, default="parquet")
    parser.add_argument("--chunk-events", type=int, default=DEFAULT_CHUNK)
    parser.add_argument(
        "--out", type=Path, default=None, help="scratch folder (default: a temp dir)"
    )
    args = parser.parse_args(argv)
    scratch = args.out or Path(tempfile.mkdtemp(prefix="bench-generate-"))
    sizes = [max(1_000, args.events // 10), args.events]
    print(f"format={args.fmt} chunk_events={args.chunk_events} scratch={scratch}")
    print(
        f"{'events':>12} {'wall s':>8} {'cpu s':>8} {'rows/s':>12} {'peak RSS MB':>12} {'output MB':>10}"
    )
    rows = []
    for n in sizes:
        f = _run(scratch / f"n{n}", n, args.fmt, args.chunk_events)
        rows.append(f)
        print(
            f"{int(f['events']):>12,} {f['wall_s']:>8.1f} {f['cpu_s']:>8.1f} {f['rows_per_s']:>12,.0f}"
            f" {f['peak_rss_mb']:>12.0f} {f['output_mb']:>10.1f}",
            flush=True,
        )
    small, big = rows
    print(
        f"ratios (N vs N/10): throughput x{big['rows_per_s'] / small['rows_per_s']:.2f}, "
        f"peak memory x{big['peak_rss_mb'] / small['peak_rss_mb']:.2f}"
    )
    target = 60.0 * big["events"] / 10_000_000
    verdict = "met" if big["wall_s"] <= target else "NOT met"
    print(f"target: {int(big['events']):,} events in <= {target:.0f} s wall -> {verdict}")
    if args.out is None:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
