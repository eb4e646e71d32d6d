"""`python -m benchmarks --help` lists every benchmark; an unknown name is an error, not silence."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_help_lists_every_benchmark_module() -> None:
    result = _run("--help")
    assert result.returncode == 0
    modules = sorted(
        p.stem.removeprefix("bench_") for p in (ROOT / "benchmarks").glob("bench_*.py")
    )
    assert modules
    for name in modules:
        assert f"  {name} " in result.stdout


def test_unknown_benchmark_names_the_choices_and_fails() -> None:
    result = _run("no_such_bench")
    assert result.returncode != 0
    assert "no_such_bench" in result.stderr
    assert "ingest" in result.stderr
