"""The ``dwatch`` command line.

Subcommands live one per module in ``dwatch/commands/`` and are discovered by scanning
that package: adding a command touches one file. Each module is named after its command
and exposes ``command``, a ``click.Command``. Modules are imported only when their command
runs (validation and ML pull in heavy libraries); the listing in ``dwatch --help`` reads
each module's docstring without importing it.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import sys
from pathlib import Path

import click

from dwatch import commands, progress
from dwatch.errors import DWatchError
from dwatch.store import default_db_path


class _Group(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_command_modules())

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        module_name = _command_modules().get(name)
        if module_name is None:
            return None
        module = importlib.import_module(f"{commands.__name__}.{module_name}")
        cmd = getattr(module, "command", None)
        if not isinstance(cmd, click.Command):
            return None
        if name in progress.COMMANDS and cmd.callback is not None:
            cmd.callback = progress.shown_for(name, cmd.callback)  # long work shows progress
        return cmd

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, _short_help(module)) for name, module in sorted(_command_modules().items())]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except DWatchError as exc:
            click.echo(f"error: {exc.render()}", err=True)
            sys.exit(2)


def _command_modules() -> dict[str, str]:
    """Command name -> module name; a module ``foo_bar.py`` is the command ``foo-bar``."""
    return {
        info.name.replace("_", "-"): info.name
        for info in pkgutil.iter_modules(commands.__path__)
        if not info.name.startswith("_")
    }


def _short_help(module_name: str) -> str:
    """First sentence of the module docstring, minus the ``dwatch x``: prefix."""
    path = Path(commands.__path__[0]) / f"{module_name}.py"
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    first = doc.strip().splitlines()[0] if doc.strip() else ""
    text = first.split(":", 1)[1].strip() if first.startswith("``") and ":" in first else first
    return text[:1].upper() + text[1:].rstrip(".").replace("``", "")


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--db",
    "db",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="DuckDB store to use (default: $DWATCH_DB or data/dwatch.duckdb).",
)
@click.version_option(package_name="disclosure-watch")
@click.pass_context
def main(ctx: click.Context, db: Path | None) -> None:
    """Disclosure Watch: prove whether taxpayer data left an agency lawfully.

    \b
    Examples:
      dwatch ingest sample_logs/                 load every log under a folder
      dwatch --db /tmp/x.duckdb ingest a.csv     use another store
      dwatch schema --markdown                   print the canonical field docs
    """
    ctx.ensure_object(dict)
    ctx.obj["db"] = db or default_db_path()


if __name__ == "__main__":
    main()
