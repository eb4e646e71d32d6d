"""``dwatch report``: write the compliance report (HTML, CSV, Markdown) and send it if configured."""

from __future__ import annotations

from pathlib import Path

import click

from dwatch.report.render import FORMATS, build_report, parse_formats
from dwatch.store import connect


@click.command("report")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("reports"),
    show_default=True,
    help="Folder for report.html, report.md and report-*.csv.",
)
@click.option(
    "--format",
    "formats",
    default=",".join(FORMATS),
    show_default=True,
    help="Comma-separated formats: html, csv, md.",
)
@click.option(
    "--data-docs",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Great Expectations Data Docs index to link (default: OUT/validation/index.html when present).",
)
@click.option(
    "--notify/--no-notify",
    default=True,
    show_default=True,
    help="E-mail the report when new cases reach the configured severity (needs SMTP config).",
)
@click.option(
    "--notify-config",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="SMTP settings (YAML); default $DWATCH_NOTIFY_CONFIG, and DWATCH_SMTP_* variables win.",
)
@click.pass_context
def command(
    ctx: click.Context,
    out_dir: Path,
    formats: str,
    data_docs: Path | None,
    notify: bool,
    notify_config: Path | None,
) -> None:
    """Group alerts into cases and write the report for compliance staff.

    The HTML report is one self-contained file (inline CSS and SVG, no script, nothing
    fetched from the network). CSV files hold the same content, one file per section, with
    formula-shaped cells neutralised. Taxpayer references are masked in every format.

    \b
    Examples:
      dwatch report                              reports/report.html, .md and report-*.csv
      dwatch report --out /srv/reports --format html,md
      dwatch --db data/dwatch.duckdb report --no-notify
      DWATCH_SMTP_PASSWORD=... dwatch report --notify-config config/notify.yaml
    """
    wanted = parse_formats(formats)
    con = connect(ctx.obj["db"])
    try:
        result = build_report(con, out_dir, formats=wanted, data_docs=data_docs)
        summary = result.data.summary
        click.echo(
            f"{summary['cases_needing_attention']} case(s) need attention"
            f" ({summary['cases_new']} new) from {summary['alerts_total']} alert(s);"
            f" {summary['alerts_suppressed']} suppressed, {summary['coverage_gaps']} coverage gap(s)"
        )
        for path in result.files:
            click.echo(f"wrote {path}")
        if notify:
            from dwatch.report.notify import load_smtp_config, notify_after_report

            config = load_smtp_config(notify_config)
            click.echo(notify_after_report(con, result, config).describe())
    finally:
        con.close()
