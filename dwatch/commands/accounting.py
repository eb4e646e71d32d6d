"""``dwatch accounting``: every recorded disclosure of one taxpayer's data, or of a file of them."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import click

from dwatch.accounting.write import FORMATS, WRITERS, copy_csv
from dwatch.errors import InputError


def _read_lines(source: str) -> list[str]:
    if source == "-":
        return sys.stdin.read().splitlines()
    try:
        return Path(source).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InputError(
            f"cannot read the identifier file: {exc.strerror}",
            where=source,
            fix="give a text file with one taxpayer identifier per line, or - for standard input",
        ) from exc


@click.command("accounting", context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--ids",
    "ids_file",
    metavar="FILE",
    help="Identifiers (TIN/SSN/EIN/ITIN), one per line; - reads standard input (the default"
    " when no --pseudonym is given).",
)
@click.option(
    "--pseudonym",
    "pseudonyms",
    multiple=True,
    metavar="TP_REF",
    help="A taxpayer's pseudonym (tp_...) as the store holds it; repeatable.",
)
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write here.")
@click.option(
    "--refresh",
    is_flag=True,
    help="Bring the accounting index up to date first (needs the store's write lock).",
)
@click.pass_context
def command(
    ctx: click.Context,
    ids_file: str | None,
    pseudonyms: tuple[str, ...],
    fmt: str,
    out: Path | None,
    refresh: bool,
) -> None:
    """Every request, disclosure, receipt, access, redisclosure and disposal of a taxpayer's data.

    For each: the date, sender, recipient, the authority cited and whether the registry
    knows it and had it in force that day, the purpose, and the findings on it with their
    triage state (26 USC 6103(p)(3), 5 USC 552a(c)). Identifiers are read from standard
    input or a file, never from the command line, pseudonymised with DWATCH_PSEUDONYM_KEY
    at once, and never stored or printed. A taxpayer with nothing recorded gets "no
    disclosures recorded in the covered sources and windows" with the coverage gaps.
    Opens the store read-only (a published snapshot works) unless --refresh.

    \b
    Examples:
      echo 123-45-6789 | dwatch accounting
      dwatch accounting --ids counsel-request.txt --format csv --out accounting.csv
      dwatch --db data/snapshots/current.duckdb accounting --pseudonym tp_3f2a... --format html --out a.html
    """
    from dwatch.accounting.index import refresh_index
    from dwatch.accounting.lookup import (
        build_accounting,
        subjects_from_identifiers,
        subjects_from_pseudonyms,
    )
    from dwatch.pseudonym import resolve_key
    from dwatch.store import connect, transaction

    if ids_file and pseudonyms:
        raise click.UsageError("give identifiers (--ids) or pseudonyms (--pseudonym), not both")
    if pseudonyms:
        subjects = subjects_from_pseudonyms(pseudonyms)
        bad = [s.row for s in subjects if s.taxpayer_ref is None]
        if bad:
            raise click.UsageError(
                f"--pseudonym number {bad[0]} is not a pseudonym (tp_ followed by hex);"
                " pass identifiers on standard input or with --ids instead"
            )
    else:
        key = resolve_key()
        subjects = subjects_from_identifiers(_read_lines(ids_file or "-"), key)
        if not subjects:
            raise click.UsageError(
                "no identifier given: one per line on standard input or --ids FILE"
            )
    con = connect(ctx.obj["db"], read_only=not refresh)
    try:
        if refresh:
            with transaction(con):
                click.echo(refresh_index(con).describe(), err=True)
        # CSV is written by DuckDB from the build's temp tables (no row reaches Python).
        accounting = build_accounting(con, subjects, fetch=fmt != "csv")
        if fmt == "csv":
            with tempfile.TemporaryDirectory(prefix="dwatch-accounting-") as folder:
                target = out or Path(folder) / "accounting.csv"
                rows = copy_csv(con, accounting, target)
                if out is None:
                    with target.open(encoding="utf-8", newline="") as handle:  # keep a bare CR
                        click.echo(handle.read(), nl=False)
        else:
            text = WRITERS[fmt](accounting)
            rows = len(accounting.rows)
            if out is None:
                click.echo(text, nl=False)
            else:
                out.write_text(text, encoding="utf-8")
    finally:
        con.close()
    if out:
        click.echo(f"wrote {out} ({rows:,} rows)", err=True)
