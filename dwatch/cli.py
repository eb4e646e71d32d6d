"""The ``dwatch`` command line.

Subcommands live one per module in ``dwatch/commands/`` and are discovered by scanning
that package: adding a command touches one file. Each module exposes ``command``, a
``click.Command``.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path

import click

from dwatch import commands
from dwatch.errors import DWatchError
from dwatch.store import default_db_path


class _Group(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_discover())

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        return _discover().get(name)

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except DWatchError as exc:
            click.echo(f"error: {exc.render()}", err=True)
            sys.exit(2)


def _discover() -> dict[str, click.Command]:
    found: dict[str, click.Command] = {}
    for info in pkgutil.iter_modules(commands.__path__):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        cmd = getattr(module, "command", None)
        if isinstance(cmd, click.Command) and cmd.name:
            found[cmd.name] = cmd
    return found


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
