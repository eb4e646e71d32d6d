"""``dwatch generate``: write synthetic disclosure logs with labelled scenarios."""

from __future__ import annotations

from pathlib import Path

import click

from dwatch.generate import ALL_FORMATS, DEFAULT_SCALE, SCENARIOS, generate, parse_scenarios
from dwatch.generate.core import DEFAULT_CHUNK


def _scenario_list() -> str:
    return "\n".join(f"  {name:34s} {d.summary}" for name, d in SCENARIOS.items())


@click.command(
    "generate",
    epilog="\b\nScenarios (default: one instance each):\n" + _scenario_list(),
)
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--events", "-n", type=int, default=10_000, show_default=True, help="Events to write (about)."
)
@click.option(
    "--seed",
    type=int,
    default=7,
    show_default=True,
    help="Same seed and options give identical files.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(ALL_FORMATS),
    default="csv",
    show_default=True,
    help="File format; 'mixed' = IRS ledger CSV, recipient logs JSONL, request items Parquet.",
)
@click.option(
    "--scale",
    type=float,
    default=DEFAULT_SCALE,
    show_default=True,
    help="Size of the bulk ICE case; 1.0 = the reported 2025 sizes (1.28M names, ~47k addresses).",
)
@click.option(
    "--scenario",
    "scenario_specs",
    multiple=True,
    metavar="NAME=COUNT",
    help="Instances of a scenario (repeatable); all=0 turns every scenario off.",
)
@click.option(
    "--chunk-events",
    type=int,
    default=DEFAULT_CHUNK,
    show_default=True,
    help="Background events generated per chunk (memory vs speed; output is the same).",
)
def command(
    out_dir: Path,
    events: int,
    seed: int,
    fmt: str,
    scale: float,
    scenario_specs: tuple[str, ...],
    chunk_events: int,
) -> None:
    """Write synthetic disclosure logs, request items and ground_truth.json to OUT_DIR.

    One file per log (events-<source_system>.<ext>): the IRS disclosure ledger and
    each recipient agency's receipt/access log, in the canonical schema; raw fake
    identifiers are in a taxpayer_tin column (SSN areas 000/666, never issued).

    \b
    Examples:
      dwatch generate /tmp/logs --events 100000
      dwatch generate /tmp/logs -n 1000000 --format parquet --seed 42
      dwatch generate sample_logs --events 5000 --format mixed --scale 0.002
      dwatch generate /tmp/logs -n 50000 --scenario insider_browsing=3 --scenario volume_spike=0
      dwatch generate /tmp/clean -n 50000 --scenario all=0      # legitimate traffic only
    """
    result = generate(
        out_dir,
        events=events,
        seed=seed,
        fmt=fmt,
        scale=scale,
        scenarios=parse_scenarios(list(scenario_specs)),
        chunk_events=chunk_events,
    )
    click.echo(
        f"wrote {result.events} events in {len(result.events_by_source)} logs, "
        f"{result.request_items} request items, "
        f"{sum(result.scenarios.values())} scenario instances to {result.out_dir}"
    )
    click.echo(f"ground truth: {result.ground_truth}")
