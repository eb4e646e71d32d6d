"""Benchmarks: each ``bench_*.py`` module has ``main(argv: list[str]) -> None`` that prints
figures and ratios measured side by side in one run. ``make bench`` runs them all."""
