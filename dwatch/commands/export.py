"""``dwatch export``: write the analyst views as Parquet for tools without DuckDB."""

from __future__ import annotations

from pathlib import Path

import click
import duckdb

from dwatch.memory import memory_budget
from dwatch.snapshot import current_snapshot, default_snapshot_dir, export_parquet


@click.command("export")
@click.option(
    "--parquet",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to write one <view>.parquet per analyst view into.",
)
@click.pass_context
def command(ctx: click.Context, out_dir: Path) -> None:
    """Export the analyst views (open_cases, alerts, case_subjects, ...) as Parquet.

    Reads the current analyst snapshot (never blocks a run); before the first run it reads
    the store read-only.

    \b
    Examples:
      dwatch export --parquet exports/2026-03
    """
    db: Path = ctx.obj["db"]
    source = current_snapshot(default_snapshot_dir(db)) or db
    con = duckdb.connect(str(source), read_only=True, config=memory_budget().duckdb_config(source))
    try:
        con.execute("SET TimeZone = 'UTC'")
        written = export_parquet(con, out_dir)
    finally:
        con.close()
    click.echo(f"{len(written)} view(s) from {source} written to {out_dir}")
