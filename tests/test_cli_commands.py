"""Every command is discovered by convention, named after its module, and documented."""

from __future__ import annotations

import importlib

import click
import pytest
from click.testing import CliRunner

from dwatch.cli import _command_modules, main

COMMANDS = sorted(_command_modules())


def test_the_issue_surface_exists() -> None:
    for name in (
        "ingest",
        "validate",
        "detect",
        "train",
        "report",
        "run",
        "generate",
        "evaluate",
        "alerts",
        "serve",
    ):
        assert name in COMMANDS


@pytest.mark.parametrize("name", COMMANDS)
def test_command_module_exposes_its_command_with_examples(name: str) -> None:
    module = importlib.import_module(f"dwatch.commands.{_command_modules()[name]}")
    assert isinstance(module.command, click.Command) and module.command.name == name
    out = CliRunner().invoke(main, [name, "--help"])
    assert out.exit_code == 0, out.output
    assert "Example" in out.output, f"`dwatch {name} --help` shows no examples"


def test_top_level_help_lists_every_command() -> None:
    out = CliRunner().invoke(main, ["--help"])
    assert out.exit_code == 0
    for name in COMMANDS:
        assert f"  {name}" in out.output


def test_help_listing_does_not_import_heavy_libraries() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from dwatch.cli import main\n"
        "assert CliRunner().invoke(main, ['--help']).exit_code == 0\n"
        "print(sorted(m for m in ('sklearn', 'great_expectations', 'prefect', 'polars') if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"
