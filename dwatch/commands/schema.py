"""``dwatch schema``: show the canonical schema or the DDL derived from it."""

from __future__ import annotations

import click

from dwatch.schema import ddl, field_docs_markdown, load_schema


@click.command("schema")
@click.option(
    "--markdown", "fmt", flag_value="markdown", default=True, help="Field documentation (default)."
)
@click.option("--ddl", "fmt", flag_value="ddl", help="The CREATE TABLE statements.")
def command(fmt: str) -> None:
    """Print the canonical disclosure-event schema.

    \b
    Examples:
      dwatch schema --markdown > docs/schema.md
      dwatch schema --ddl
    """
    schema = load_schema()
    if fmt == "ddl":
        click.echo("\n\n".join(ddl(t) for t in schema.tables.values()))
    else:
        click.echo(field_docs_markdown(schema))
