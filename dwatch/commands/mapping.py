"""``dwatch mapping``: draft, try and check source mappings (schemas/sources/*.yaml)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from dwatch.mapping import reference_markdown
from dwatch.mapping_cases import render, run_cases
from dwatch.mapping_tools import check_all, suggest, try_mapping

_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.group("mapping")
def command() -> None:
    """Draft, try and check source mappings.

    \b
    Examples:
      dwatch mapping suggest export.csv > schemas/sources/ledger.yaml
      dwatch mapping test schemas/sources/ledger.yaml export.csv --rows 20
      dwatch mapping test schemas/sources/aws-cloudtrail-s3.yaml   # its own cases
      dwatch mapping check
      dwatch mapping reference > schemas/sources/README.md
    """


@command.command("suggest")
@click.argument("file", type=_FILE)
def suggest_command(file: Path) -> None:
    """Draft a mapping from FILE's header and a sample of its values (edit it, do not trust it)."""
    click.echo(suggest(file).to_yaml(), nl=False)


@command.command("test")
@click.argument("mapping", type=_FILE)
@click.argument("file", type=_FILE, required=False)
@click.option("--rows", default=10, show_default=True, help="Records to show.")
def test_command(mapping: Path, file: Path | None, rows: int) -> None:
    """Show how FILE's first records map with MAPPING, and why any would be quarantined.

    Without FILE, run the mapping's own cases (samples/<name>/cases.yaml beside it) and
    exit 1 if any fails. Files are loaded into a throw-away store; the real store is not
    touched."""
    if file is not None:
        click.echo(try_mapping(mapping, file, rows))
        return
    outcomes = run_cases(mapping)
    click.echo(render(mapping, outcomes))
    if not outcomes or not all(o.passed for o in outcomes):
        sys.exit(1)


@command.command("check")
@click.option(
    "--dir",
    "directory",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Folder of mappings (default: $DWATCH_SOURCES_DIR or schemas/sources).",
)
def check_command(directory: Path | None) -> None:
    """Validate every mapping; each error names its file and key. Exit 1 on any error."""
    checked, problems = check_all(directory)
    for problem in problems:
        click.echo(f"error: {problem}", err=True)
    click.echo(f"{checked} mapping(s) checked, {len(problems)} with errors")
    if problems:
        sys.exit(1)


@command.command("reference")
def reference_command() -> None:
    """Print the reference page of mapping keys (schemas/sources/README.md)."""
    click.echo(reference_markdown(), nl=False)
