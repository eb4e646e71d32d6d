"""Load a probe set with the commands a user runs, and score it.

    .venv/bin/python -m benchmarks.probe.run OUTDIR [--events N --seed S] [--train-to DATE]

1. writes the set (``python -m benchmarks.probe``) unless OUTDIR/labels exists;
2. merges the shipped ``policies/`` with the probe's overlay (OUTDIR/registry/) into
   OUTDIR/merged-registry/: ``dwatch run`` always judges by the shipped registry, and
   ``dwatch detect --registry`` is how dwatch is pointed at another one;
3. ``dwatch run OUTDIR/logs`` (ingest, validate, rules, ML bootstrap-trained on everything);
4. ``dwatch train --from START --to TRAIN_TO`` (a reviewed window, as the README advises),
   then ``dwatch detect --registry OUTDIR/merged-registry`` (re-judges all history; alerts
   that only held under the shipped registry are retracted);
5. ``dwatch evaluate --truth OUTDIR`` on the store, figures to OUTDIR/score.txt and .json.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DWATCH = Path(sys.executable).parent / "dwatch"
KEY = "probe-key-0123456789abcdef"


def _dwatch(out: Path, *args: str) -> str:
    env = {
        **os.environ,
        "DWATCH_DB": str(out / "store.duckdb"),
        "DWATCH_PSEUDONYM_KEY": os.environ.get("DWATCH_PSEUDONYM_KEY", KEY),
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "GX_ANALYTICS_ENABLED": "false",
    }
    started = time.monotonic()
    done = subprocess.run(
        [str(DWATCH), *args], env=env, capture_output=True, text=True, check=False
    )
    log = f"$ dwatch {' '.join(args)}   ({time.monotonic() - started:.1f} s, exit {done.returncode})\n"
    with (out / "commands.log").open("a", encoding="utf-8") as fh:
        fh.write(log + done.stdout + done.stderr + "\n")
    if done.returncode != 0:
        raise SystemExit(f"dwatch {args[0]} failed:\n{done.stdout}\n{done.stderr}")
    print(log.strip(), flush=True)
    return done.stdout


def merge_registry(out: Path) -> Path:
    merged = out / "merged-registry"
    shutil.rmtree(merged, ignore_errors=True)
    merged.mkdir(parents=True)
    for path in [
        *sorted((ROOT / "policies").glob("*.yaml")),
        *sorted((out / "registry").glob("*.yaml")),
    ]:
        shutil.copy(path, merged / path.name)
    return merged


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.probe.run", description=__doc__.splitlines()[0]
    )
    parser.add_argument("out", type=Path)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--instances", type=int, default=1)
    parser.add_argument(
        "--train-to", default="2026-01-01", help="end of the ML training window (exclusive)"
    )
    args = parser.parse_args(argv)
    out: Path = args.out
    if not (out / "labels").is_dir():
        from benchmarks.probe.__main__ import main as write

        write(
            [
                str(out),
                "--events",
                str(args.events),
                "--seed",
                str(args.seed),
                "--instances",
                str(args.instances),
            ]
        )
    merged = merge_registry(out)
    _dwatch(out, "run", str(out / "logs"), "--reports", str(out / "reports"), "--no-notify")
    _dwatch(out, "train", "--from", "2025-01-01", "--to", args.train_to)
    _dwatch(out, "detect", "--registry", str(merged))
    figures = _dwatch(out, "evaluate", "--truth", str(out), "--json", str(out / "score.json"))
    (out / "score.txt").write_text(figures, encoding="utf-8")
    print(figures)


if __name__ == "__main__":
    main()
