"""``dwatch ingest``: load disclosure logs into the store."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from dwatch.ingest import ingest_paths, summarise, to_json
from dwatch.store import connect


@click.command("ingest")
@click.argument("paths", nargs=-1, required=True)
@click.option(
    "--kind",
    type=click.Choice(["events", "request_items"]),
    help="Force the file kind (default: from the columns).",
)
@click.option(
    "--source",
    metavar="NAME",
    help="Source mapping in schemas/sources/NAME.yaml (default: canonical or auto-matched).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Load content already loaded before (its rows then quarantine as duplicates).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option(
    "--prefect",
    is_flag=True,
    help="Run as the Prefect flow `ingest` (ephemeral unless PREFECT_API_URL is set).",
)
@click.pass_context
def command(
    ctx: click.Context,
    paths: tuple[str, ...],
    kind: str | None,
    source: str | None,
    force: bool,
    as_json: bool,
    prefect: bool,
) -> None:
    """Load CSV, JSON Lines and Parquet disclosure logs (files, folders, globs).

    Every record ends in disclosure_events / request_items or in quarantine with a reason;
    each file is one transaction recorded in ingest_runs. Raw taxpayer identifiers are
    pseudonymised with DWATCH_PSEUDONYM_KEY. Exit status 1 if any file failed.

    \b
    Examples:
      dwatch ingest sample_logs/
      dwatch ingest 'exports/2026-0*/*.csv' --source kiteworks-activity
      dwatch --db /srv/dwatch.duckdb ingest ledger.parquet --kind events
    """
    db: Path = ctx.obj["db"]
    if prefect:
        from flows.ingest import ingest_flow

        results = ingest_flow(list(paths), db=str(db), kind=kind, source=source, force=force)
    else:
        con = connect(db)
        try:
            results = ingest_paths(con, list(paths), kind=kind, source=source, force=force)
        finally:
            con.close()
    click.echo(to_json(results) if as_json else summarise(results))
    if any(r.status == "failed" for r in results):
        sys.exit(1)
