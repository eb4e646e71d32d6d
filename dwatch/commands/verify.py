"""``dwatch verify``: check an evidence bundle against its manifest, or the store's ingest chain."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("verify", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("bundle", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("--expect", help="The manifest SHA-256 printed at export; checked too.")
@click.option("--store", "check_store", is_flag=True, help="Walk the store's ingest-record chain.")
@click.pass_context
def command(ctx: click.Context, bundle: Path | None, expect: str | None, check_store: bool) -> None:
    """Check that evidence was not changed: exit 0 when it holds, 1 naming each problem.

    \b
    Examples:
      dwatch verify evidence/cs_4de236                 # every file against MANIFEST.json
      dwatch verify evidence/cs_4de236 --expect 9f2c...  # and the manifest itself
      dwatch verify --store                            # ingest records: changed or deleted?
    """
    if bundle is None and not check_store:
        raise click.UsageError("give a bundle folder, --store, or both")
    problems: list[str] = []
    if bundle is not None:
        from dwatch.evidence import manifest_sha256, verify_bundle

        if not bundle.is_dir():
            raise click.UsageError(f"{bundle}: no such folder")
        found = verify_bundle(bundle, expect)
        problems += found
        if not found:
            click.echo(
                f"bundle {bundle}: every file matches; manifest sha256 {manifest_sha256(bundle)}"
            )
    if check_store:
        from dwatch import ledger
        from dwatch.store import connect

        con = connect(ctx.obj["db"], read_only=True)
        found = ledger.verify_store(con)
        problems += found
        head = ledger.chain_head(con)
        if not found:
            click.echo(f"store: ingest chain holds; head #{head.seq} {head.chain_hash}")
    for p in problems:
        click.echo(f"FAIL {p}", err=True)
    if problems:
        ctx.exit(1)
