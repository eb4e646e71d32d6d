"""Run benchmark modules: ``python -m benchmarks [name ...] [-- args]``; ``--help`` lists them."""

from __future__ import annotations

import importlib
import pkgutil
import sys

import benchmarks

USAGE = """usage: python -m benchmarks [NAME ...] [-- ARGS]

Runs the named benchmarks (all of them when no name is given); ARGS after `--` go to each
one (`python -m benchmarks NAME -- --help` shows a benchmark's own options).

benchmarks:
"""


def _names() -> list[str]:
    return sorted(
        m.name.removeprefix("bench_")
        for m in pkgutil.iter_modules(benchmarks.__path__)
        if m.name.startswith("bench_")
    )


def _summary(name: str) -> str:
    doc = importlib.import_module(f"benchmarks.bench_{name}").__doc__ or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def main() -> None:
    argv = sys.argv[1:]
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1 :]
    names = _names()
    if any(a in ("-h", "--help") for a in argv):
        print(USAGE + "\n".join(f"  {n:<10} {_summary(n)}" for n in names))
        return
    wanted = [a.removeprefix("bench_") for a in argv]
    unknown = [a for a in wanted if a not in names]
    if unknown:
        sys.exit(
            f"error: no benchmark named {', '.join(unknown)}; "
            f"choose from {', '.join(names)} (python -m benchmarks --help)"
        )
    for name in wanted or names:
        print(f"\n=== bench_{name} ===", flush=True)
        importlib.import_module(f"benchmarks.bench_{name}").main(extra)


if __name__ == "__main__":
    main()
