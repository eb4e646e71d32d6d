"""``dwatch affected``: the taxpayers a case, court order or finding says were harmed, for notification."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import click

from dwatch.accounting.affected import AffectedTaxpayer, NotificationList
from dwatch.pseudonym import mask_ref
from dwatch.report.safety import csv_cell, terminal_text

_FORMATS = ("text", "csv", "json")
_HEADER = (
    "taxpayer_ref",
    "reasons",
    "findings",
    "detectors",
    "requests",
    "event_types",
    "recipients",
    "first_at",
    "last_at",
    "match_lines",
)


def _cells(t: AffectedTaxpayer) -> list[object]:
    return [
        ";".join(t.reasons),
        ";".join(t.alert_ids),
        ";".join(t.detector_ids),
        ";".join(t.request_ids),
        ";".join(t.event_types),
        ";".join(t.recipients),
        t.first_at.isoformat() if t.first_at else "",
        t.last_at.isoformat() if t.last_at else "",
        ";".join(str(r) for r in t.match_rows),
    ]


def _summary(found: NotificationList, whole: bool = False) -> str:
    line = f"{found.scope} {found.scope_id}: {len(found.taxpayers):,} affected taxpayer(s)"
    if whole:
        line += " (whole pseudonyms: keep this list as you keep the key)"
    if found.identifiers_supplied is not None:
        line += (
            f"; {found.matched:,} matched among {found.identifiers_supplied:,} supplied line(s)"
            f", {len(found.taxpayers) - found.matched:,} not in the supplied list"
        )
        if found.not_identifiers:
            line += f", {len(found.not_identifiers)} line(s) held no identifier"
    return line


def render(found: NotificationList, fmt: str, whole: bool = False) -> str:
    """The list as text, CSV or JSON. Pseudonyms are shortened as in every other output
    unless ``whole``: the full pseudonym is a join key into every log that names the person,
    so it is printed only when the key holder asks for it to match against."""

    def ref(t: AffectedTaxpayer) -> str:
        return t.taxpayer_ref if whole else mask_ref(t.taxpayer_ref)

    if fmt == "json":
        return (
            json.dumps(
                {
                    "scope": found.scope,
                    "scope_id": csv_cell(found.scope_id),
                    "taxpayers": len(found.taxpayers),
                    "matched": found.matched if found.identifiers_supplied is not None else None,
                    "identifiers_supplied": found.identifiers_supplied,
                    "lines_without_identifier": found.not_identifiers,
                    "affected": [
                        {
                            "taxpayer_ref": ref(t),
                            **dict(zip(_HEADER[1:], _cells(t), strict=True)),
                        }
                        for t in found.taxpayers
                    ],
                },
                indent=2,
                ensure_ascii=False,
                default=str,
            )
            + "\n"
        )
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(_HEADER)
        for t in found.taxpayers:
            # A pseudonym (tp_ + hex, shortened or whole) has nothing to neutralise.
            writer.writerow([ref(t), *(csv_cell(v) for v in _cells(t))])
        return buffer.getvalue()
    lines = [_summary(found, whole)]
    for t in found.taxpayers:
        cells = _cells(t)
        lines.append(
            f"  {ref(t)}  {terminal_text(cells[0])}  {terminal_text(cells[4])} to"
            f" {terminal_text(cells[5])}  {cells[6][:10]}..{cells[7][:10]}"
            + (f"  line(s) {cells[8]}" if cells[8] else "")
        )
    return "\n".join(lines) + "\n"


@click.command("affected", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--case", "case_id", metavar="CASE_ID", help="A case (dwatch alerts list).")
@click.option("--order", "order_id", metavar="ORDER_ID", help="A court order in the registry.")
@click.option("--alert", "alert_id", metavar="ALERT_ID", help="One finding.")
@click.option(
    "--match-ids",
    metavar="FILE",
    help="The key holder's identifiers, one per line (- for standard input): each affected"
    " taxpayer is marked with the lines that name them.",
)
@click.option(
    "--whole-pseudonyms",
    is_flag=True,
    help="Print each pseudonym whole instead of shortened (tp_3f2a…), for the key holder to"
    " match against their own pseudonymised list. A whole pseudonym links the person across"
    " every log in the store: handle the output as you handle the key.",
)
@click.option("--format", "fmt", type=click.Choice(_FORMATS), default="text", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write here.")
@click.pass_context
def command(
    ctx: click.Context,
    case_id: str | None,
    order_id: str | None,
    alert_id: str | None,
    match_ids: str | None,
    whole_pseudonyms: bool,
    fmt: str,
    out: Path | None,
) -> None:
    """The taxpayers to notify for a case, a court order or a finding, with what happened to each.

    Listed as shortened pseudonyms, as in every other output (the count is the distinct
    per-taxpayer count of the report); --whole-pseudonyms prints them whole. The store
    cannot re-identify anyone: with --match-ids the key holder's identifiers are
    pseudonymised with DWATCH_PSEUDONYM_KEY and each match is reported by its line number
    in that file; no identifier is printed, whatever the options. Opens the store read-only.

    \b
    Examples:
      dwatch affected --case cs_4de236 --format csv --out notify.csv
      dwatch affected --order "CTR v. IRS 25-cv-00457" --match-ids ids.txt
      dwatch affected --case cs_4de236 --whole-pseudonyms --format csv --out refs.csv
    """
    from dwatch.accounting.affected import affected_taxpayers, match_identifiers
    from dwatch.commands.accounting import _read_lines
    from dwatch.pseudonym import resolve_key
    from dwatch.store import connect

    given = [(s, v) for s, v in (("case", case_id), ("order", order_id), ("alert", alert_id)) if v]
    if len(given) != 1:
        raise click.UsageError("give exactly one of --case, --order, --alert")
    scope, scope_id = given[0]
    key = resolve_key() if match_ids else None
    con = connect(ctx.obj["db"], read_only=True)
    try:
        found = affected_taxpayers(con, scope, scope_id)
    finally:
        con.close()
    if match_ids and key is not None:
        found = match_identifiers(found, _read_lines(match_ids), key)
    text = render(found, fmt, whole_pseudonyms)
    if out:
        out.write_text(text, encoding="utf-8")
        click.echo(_summary(found, whole_pseudonyms), err=True)
    else:
        click.echo(text, nl=False)
