"""``dwatch registry``: check the policy registry, show it as of a date, read citations."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import click

from dwatch.policy import Registry, classify_all, load_registry
from dwatch.policy.asof import agreement_state_at, order_binds_at, order_status_at

_REGISTRY_OPTION = click.option(
    "--registry",
    "registry_path",
    type=click.Path(exists=True, path_type=Path),
    help="Registry folder or file (default: the shipped policies/).",
)


@click.group("registry")
def command() -> None:
    """The policy registry: authorities, court orders, agreements, recipients.

    \b
    Examples:
      dwatch registry check
      dwatch registry show --as-of 2026-03-01
      dwatch registry cite "IRC 6103(i)(2)" "Privacy Act (b)(7)" "per MOU"
    """


@command.command("check")
@_REGISTRY_OPTION
def check(registry_path: Path | None) -> None:
    """Load and validate the registry and every rule's citations; print the version."""
    from detectors.engine import check_rule_citations, load_rules

    registry = load_registry(registry_path)
    rules = load_rules()
    check_rule_citations(rules, registry)
    click.echo(f"registry {registry.version}: ok")
    click.echo(
        f"  {len(registry.authorities)} authorities, {len(registry.court_orders)} court orders,"
        f" {len(registry.agreements)} agreements, {len(registry.recipients)} recipients"
        f" (+{len(registry.recipient_patterns)} code patterns); {len(rules)} rules cite it"
    )


def _status_at(registry: Registry, order_id: str, when: datetime) -> str:
    change = order_status_at(registry, order_id, when)
    return "not yet issued" if change is None else f"{change.status} since {str(change.on)[:10]}"


@command.command("show")
@_REGISTRY_OPTION
@click.option(
    "--as-of",
    "as_of",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="Judge statuses and validity on this day (default: today).",
)
def show(registry_path: Path | None, as_of: datetime | None) -> None:
    """Court orders and agreements with their status on a day; authorities in brief."""
    registry = load_registry(registry_path)
    day = as_of.date() if as_of else date.today()
    when = datetime(day.year, day.month, day.day, 23, 59, 59, tzinfo=UTC)
    click.echo(f"registry {registry.version}, as of {day.isoformat()}\n\ncourt orders:")
    for order in registry.court_orders:
        status = _status_at(registry, order.id, when)
        binding = order_binds_at(registry, order.id, when)
        click.echo(
            f"  {order.id}: {order.case} ({order.court} No. {order.docket}, issued {order.issued})"
        )
        click.echo(f"      {status}{'  [binding]' if binding else ''}")
        for restraint in order.restraints:
            click.echo(
                f"      restrains: {restraint.description} [{', '.join(restraint.event_types)}]"
            )
            if restraint.reading:
                click.echo(f"        as read here: {restraint.reading}")
    click.echo("\nagreements:")
    for agreement in registry.agreements:
        state = agreement_state_at(registry, agreement.id, when).replace("_", " ")
        click.echo(f"  {agreement.id}: {agreement.title} - {state}")
    click.echo("\nauthorities:")
    for auth in registry.authorities:
        who = ", ".join([*auth.recipient_categories, *auth.recipient_codes]) or "-"
        click.echo(f"  {auth.id:<20} {auth.kind:<24} recipients: {who}")


@command.command("cite")
@_REGISTRY_OPTION
@click.argument("texts", nargs=-1, required=True)
def cite(registry_path: Path | None, texts: tuple[str, ...]) -> None:
    """How the registry reads citation texts as logs write them."""
    registry = load_registry(registry_path)
    for text in texts:
        reading = classify_all(text, registry)
        click.echo(f"{text!r:<40} {reading.status:<10} {'; '.join(reading.authority_ids)}")
