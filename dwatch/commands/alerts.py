"""``dwatch alerts``: list cases, show one, and record triage decisions and suppressions."""

from __future__ import annotations

import getpass
import json
import os
from datetime import date
from pathlib import Path
from typing import Any

import click

from detectors.alerts import SEVERITIES
from dwatch.report.cases import SEVERITY_RANK, build_cases
from dwatch.report.citations import load_directory
from dwatch.report.safety import mask_json, terminal_text
from dwatch.report.suppressions import (
    CRITERIA,
    add_suppression,
    describe_criteria,
    list_suppressions,
)
from dwatch.report.triage import RESOLUTIONS, decision_history, record_decision, resolve_target
from dwatch.store import connect, transaction

ANALYST_ENV = "DWATCH_ANALYST"


def _analyst() -> str:
    return os.environ.get(ANALYST_ENV) or getpass.getuser()


def _open(ctx: click.Context) -> Any:
    db: Path = ctx.obj["db"]
    con = connect(db)
    build_cases(con)  # cases follow the alerts table; ids are stable, so this is safe to repeat
    return con


def _t(value: object) -> str:
    return terminal_text(value)


def _ft(value: object) -> str:
    """Free text from logs or analysts: TIN-shaped numbers redacted too."""
    return terminal_text(value, free_text=True)


@click.group("alerts", context_settings={"help_option_names": ["-h", "--help"]})
def command() -> None:
    """Work the alert queue: cases, triage decisions and suppressions.

    Alerts are grouped into cases (by recipient, request and court order). Decisions are
    recorded against a case id (cs_...) or a single alert id (al_...); both are stable across
    re-runs, so a decision survives the next detection run. Ids may be shortened to any
    unique prefix of 6+ characters.

    \b
    Examples:
      dwatch alerts list                         open cases, highest risk first
      dwatch alerts list --all --min-severity high
      dwatch alerts show cs_4de236
      dwatch alerts ack cs_4de236 --note "looking at the request letter"
      dwatch alerts resolve cs_4de236 --as violation --note "no address set forth" --by j.doe
      dwatch alerts suppress --detector iforest_recipient_mix --recipient CA-FTB \\
          --reason "annual re-extract agreed with FTB" --owner j.doe --expires 2026-06-30
      dwatch alerts suppressions
    """


@command.command("list")
@click.option(
    "--all", "show_all", is_flag=True, help="Include resolved, suppressed and retracted cases."
)
@click.option(
    "--state",
    type=click.Choice(["new", "acknowledged", "resolved"]),
    help="Only this triage state.",
)
@click.option("--min-severity", type=click.Choice(SEVERITIES), default="info", show_default=True)
@click.option(
    "--alerts", "show_alerts", is_flag=True, help="List individual alerts instead of cases."
)
@click.option("--limit", type=int, default=50, show_default=True)
@click.pass_context
def list_cmd(
    ctx: click.Context,
    show_all: bool,
    state: str | None,
    min_severity: str,
    show_alerts: bool,
    limit: int,
) -> None:
    """List cases (or alerts), highest risk first.

    \b
    Examples:
      dwatch alerts list
      dwatch alerts list --state acknowledged
      dwatch alerts list --alerts --min-severity critical
    """
    con = _open(ctx)
    wanted = [s for s in SEVERITIES if SEVERITY_RANK[s] >= SEVERITY_RANK[min_severity]]
    if show_alerts:
        rows = con.execute(
            """
            SELECT a.alert_id, a.severity, a.status, t.triage_state, a.detector_id, a.recipient_agency,
                   a.subjects_affected, ca.suppression_id, a.explanation
            FROM alerts a JOIN alert_triage_state t USING (alert_id) LEFT JOIN case_alerts ca USING (alert_id)
            WHERE a.severity IN (SELECT unnest(?::VARCHAR[]))
              AND (? OR (a.status = 'open' AND ca.suppression_id IS NULL AND t.triage_state <> 'resolved'))
              AND (?::VARCHAR IS NULL OR t.triage_state = ?)
            ORDER BY list_position(?::VARCHAR[], a.severity) DESC, a.alert_id LIMIT ?
            """,
            [wanted, show_all, state, state, list(SEVERITIES), limit],
        ).fetchall()
        for r in rows:
            flags = "suppressed" if r[7] else r[2]
            click.echo(
                f"{r[0]}  {r[1]:<8} {flags:<10} {r[3]:<12} {_t(r[4])}  {_t(r[5] or '-')}"
                f"  subjects={r[6] if r[6] is not None else '-'}\n    {_ft(r[8])[:160]}"
            )
        click.echo(f"{len(rows)} alert(s)")
        return
    rows = con.execute(
        """
        SELECT c.case_id, c.severity, c.risk_score, c.status, t.triage_state, t.resolution,
               c.alert_count, c.subjects_affected, c.title, c.coverage_incomplete,
               coalesce(p.resolved_alerts, 0), c.open_alert_count
        FROM cases c JOIN case_triage_state t USING (case_id)
        LEFT JOIN (
            -- progress on a case worked alert by alert: its active alerts resolved so far
            SELECT ca.case_id, count(*) FILTER (WHERE s.triage_state = 'resolved') AS resolved_alerts
            FROM case_alerts ca JOIN alerts a USING (alert_id) JOIN alert_triage_state s USING (alert_id)
            WHERE a.status = 'open' AND ca.suppression_id IS NULL
            GROUP BY ca.case_id
        ) p USING (case_id)
        WHERE c.severity IN (SELECT unnest(?::VARCHAR[]))
          AND (? OR (c.status = 'open' AND t.triage_state <> 'resolved'))
          AND (?::VARCHAR IS NULL OR t.triage_state = ?)
        ORDER BY c.risk_score DESC, c.case_id LIMIT ?
        """,
        [wanted, show_all, state, state, limit],
    ).fetchall()
    if not rows:
        click.echo("no cases to show (try --all, or run detection and `dwatch report`)")
        return
    click.echo(f"{'case':<27}  {'severity':<8} {'risk':>7}  {'status':<10} {'triage':<22} title")
    for r in rows:
        triage = f"{r[4]}:{r[5]}" if r[5] else r[4]
        if r[4] != "resolved" and r[10]:
            triage += f" {r[10]}/{r[11]} resolved"
        gap = "  [coverage incomplete]" if r[9] else ""
        click.echo(f"{r[0]:<27}  {r[1]:<8} {r[2]:>7.2f}  {r[3]:<10} {triage:<22} {_t(r[8])}{gap}")
    click.echo(f"{len(rows)} case(s)")


def _show_case(con: Any, case_id: str) -> None:
    directory = load_directory(con)
    row = con.execute(
        "SELECT c.*, t.triage_state, t.resolution, t.note AS triage_note"
        " FROM cases c JOIN case_triage_state t USING (case_id) WHERE case_id = ?",
        [case_id],
    ).fetchone()
    names = [d[0] for d in con.description]
    case = dict(zip(names, row, strict=True))
    click.echo(f"case {case_id}  {_t(case['title'])}")
    click.echo(
        f"  status {case['status']}, triage {case['triage_state']}"
        + (f" ({case['resolution']})" if case["resolution"] else "")
        + f", severity {case['severity']}, risk {case['risk_score']:.2f}"
        f" (sensitivity {case['sensitivity']:.2f})"
    )
    click.echo(
        f"  subjects {case['subjects_affected'] or '-'}, records {case['records_affected'] or '-'},"
        f" alerts {case['alert_count']} ({case['open_alert_count']} active,"
        f" {case['suppressed_alert_count']} suppressed, {case['retracted_alert_count']} retracted)"
    )
    if case["triage_state"] != "new" and case["triage_note"]:
        # A state rolled up from alert decisions says how far the work has got.
        click.echo(f"  triage note: {_ft(case['triage_note'])}")
    if case["coverage_incomplete"]:
        click.echo("  coverage incomplete: some logs behind this case failed validation")
    for cid in case["citations"] or []:
        click.echo(f"  cites {_t(directory.lookup(cid).label)}")
    alerts = con.execute(
        "SELECT a.alert_id, a.severity, a.status, a.detector_id, ca.suppression_id, a.explanation"
        " FROM case_alerts ca JOIN alerts a USING (alert_id) WHERE ca.case_id = ?"
        " ORDER BY list_position(?::VARCHAR[], a.severity) DESC, a.alert_id",
        [case_id, list(SEVERITIES)],
    ).fetchall()
    click.echo("  alerts:")
    for a in alerts:
        state = f"suppressed by {a[4]}" if a[4] else a[2]
        click.echo(f"    {a[0]}  {a[1]:<8} {state:<12} {_t(a[3])}\n      {_ft(a[5])}")


def _show_alert(con: Any, alert_id: str) -> None:
    row = con.execute(
        "SELECT a.*, t.triage_state, t.resolution, t.case_id, ca.suppression_id FROM alerts a"
        " JOIN alert_triage_state t USING (alert_id) LEFT JOIN case_alerts ca USING (alert_id)"
        " WHERE alert_id = ?",
        [alert_id],
    ).fetchone()
    names = [d[0] for d in con.description]
    alert = dict(zip(names, row, strict=True))
    click.echo(f"alert {alert_id}  in case {alert['case_id']}")
    for key in (
        "detector_id",
        "detector_kind",
        "detector_version",
        "severity",
        "score",
        "status",
        "triage_state",
        "resolution",
        "suppression_id",
        "entity_type",
        "entity_id",
        "recipient_agency",
        "request_id",
        "actor_id",
        "source_system",
        "window_start",
        "window_end",
        "event_count",
        "subjects_affected",
        "records_affected",
        "citations",
        "coverage_incomplete",
        "retracted_reason",
    ):
        if alert.get(key) not in (None, [], ""):
            click.echo(f"  {key}: {_t(alert[key])}")
    click.echo(f"  explanation: {_ft(alert['explanation'])}")
    evidence = mask_json(alert["evidence"])
    if evidence:
        click.echo("  evidence: " + _ft(json.dumps(evidence, ensure_ascii=False)))


@command.command("show")
@click.argument("ident")
@click.pass_context
def show_cmd(ctx: click.Context, ident: str) -> None:
    """Show a case or alert: what, why, evidence, and every decision so far.

    \b
    Examples:
      dwatch alerts show cs_4de236fa2c60991ce3f4f3a5
      dwatch alerts show al_1f0e9c
    """
    con = _open(ctx)
    target = resolve_target(con, ident)
    if target.target_type == "case":
        _show_case(con, target.target_id)
    else:
        _show_alert(con, target.target_id)
    history = decision_history(con, target)
    click.echo("  decisions:" if history else "  decisions: none yet (state: new)")
    for d in history:
        on = "" if d["target_id"] == target.target_id else f" (on case {d['target_id']})"
        note = f": {_ft(d['note'])}" if d["note"] else ""
        click.echo(
            f"    {d['decided_at']:%Y-%m-%d %H:%M} {d['decision']} by {_t(d['decided_by'])}{on}{note}"
        )


@command.command("export")
@click.argument("ident")
@click.option(
    "--bundle",
    "bundle_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="New or empty folder for the evidence bundle.",
)
@click.pass_context
def export_cmd(ctx: click.Context, ident: str, bundle_dir: Path) -> None:
    """Write a case's evidence bundle: alerts, events, rules, registry, triage, manifest.

    Every file's SHA-256 is listed in MANIFEST.json; the manifest's own SHA-256 is printed
    here, to be recorded with the filing. `dwatch verify DIR` checks the bundle anywhere.

    \b
    Examples:
      dwatch alerts export cs_4de236fa2c60991ce3f4f3a5 --bundle evidence/cs_4de236
    """
    from dwatch.evidence import export_bundle

    con = _open(ctx)
    target = resolve_target(con, ident)
    if target.target_type != "case":
        raise click.UsageError(
            f"{ident} is an alert; give its case id (dwatch alerts show {ident})"
        )
    bundle = export_bundle(con, target.target_id, bundle_dir)
    click.echo(f"wrote {bundle.files} files to {bundle.directory} for case {bundle.case_id}")
    click.echo(f"manifest sha256: {bundle.manifest_sha256}")


def _decide(
    ctx: click.Context, ident: str, decision: str, note: str | None, by: str | None
) -> None:
    con = _open(ctx)
    with transaction(con):
        stored = record_decision(con, ident, decision, decided_by=by or _analyst(), note=note)
    click.echo(
        f"{stored['target_type']} {stored['target_id']}: {decision} by {_t(stored['decided_by'])}"
        f" at {stored['decided_at']:%Y-%m-%d %H:%M %Z}"
    )


_by = click.option("--by", help=f"Who decides (default: ${ANALYST_ENV} or your login name).")


@command.command("ack")
@click.argument("ident")
@click.option("--note", help="Optional note.")
@_by
@click.pass_context
def ack_cmd(ctx: click.Context, ident: str, note: str | None, by: str | None) -> None:
    """Acknowledge a case or alert: someone is looking at it.

    \b
    Examples:
      dwatch alerts ack cs_4de236 --note "pulled the request letter"
    """
    _decide(ctx, ident, "acknowledged", note, by)


@command.command("resolve")
@click.argument("ident")
@click.option(
    "--as", "resolution", type=click.Choice(RESOLUTIONS), required=True, help="The finding."
)
@click.option("--note", required=True, help="Why: what was checked, what it showed.")
@_by
@click.pass_context
def resolve_cmd(ctx: click.Context, ident: str, resolution: str, note: str, by: str | None) -> None:
    """Resolve a case or alert as violation, authorised, data_error or false_positive.

    \b
    Examples:
      dwatch alerts resolve cs_4de236 --as violation --note "request named no address" --by j.doe
      dwatch alerts resolve al_9c1e22 --as authorised --note "ex parte order 24-mj-118 on file"
    """
    _decide(ctx, ident, resolution, note, by)


@command.command("reopen")
@click.argument("ident")
@click.option("--note", required=True, help="Why it needs another look.")
@_by
@click.pass_context
def reopen_cmd(ctx: click.Context, ident: str, note: str, by: str | None) -> None:
    """Return a resolved case or alert to new (the earlier decisions stay in the log).

    \b
    Examples:
      dwatch alerts reopen cs_4de236 --note "order reversed on appeal"
    """
    _decide(ctx, ident, "reopened", note, by)


def _parse_date(_ctx: click.Context, _param: click.Parameter, value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r} is not a date; write YYYY-MM-DD") from exc


@command.command("suppress")
@click.option("--detector", "detector_id", help="Rule or model id.")
@click.option("--recipient", "recipient_agency", help="Recipient agency code.")
@click.option("--discloser", "disclosing_agency", help="Disclosing agency code.")
@click.option("--actor", "actor_id", help="Actor (user) id.")
@click.option("--source", "source_system", help="Log source system.")
@click.option("--request", "request_id", help="Request id.")
@click.option(
    "--entity-type", "entity_type", help="Alert entity type (recipient, actor, source, ...)."
)
@click.option("--entity", "entity_id", help="Alert entity id.")
@click.option("--reason", required=True, help="Why this activity is lawful or expected.")
@click.option("--owner", required=True, help="Who answers for this entry.")
@click.option(
    "--expires", required=True, callback=_parse_date, help="Last day it suppresses (YYYY-MM-DD)."
)
@click.pass_context
def suppress_cmd(
    ctx: click.Context, reason: str, owner: str, expires: date, **criteria: str | None
) -> None:
    """Add an allowlist entry: alerts matching every given criterion are suppressed until it expires.

    \b
    Examples:
      dwatch alerts suppress --detector iforest_recipient_mix --recipient CA-FTB \\
          --reason "annual re-extract agreed with FTB, ticket 4411" --owner j.doe --expires 2026-06-30
    """
    con = _open(ctx)
    with transaction(con):
        sid = add_suppression(
            con,
            criteria=criteria,
            reason=reason,
            owner=owner,
            expires_on=expires,
            created_by=_analyst(),
        )
    result = build_cases(con)
    hidden = con.execute(
        "SELECT count(*) FROM case_alerts WHERE suppression_id = ?", [sid]
    ).fetchone()
    click.echo(
        f"added {sid}: suppresses {hidden[0] if hidden else 0} alert(s) through {expires}; {result.open} open case(s) remain"
    )


@command.command("suppressions")
@click.pass_context
def suppressions_cmd(ctx: click.Context) -> None:
    """List allowlist entries, whether each is still active, and what it suppresses.

    \b
    Examples:
      dwatch alerts suppressions
    """
    con = _open(ctx)
    entries = list_suppressions(con)
    if not entries:
        click.echo("no suppressions")
        return
    for e in entries:
        state = "active" if e["active"] else "EXPIRED"
        click.echo(
            f"{e['suppression_id']}  {state:<7} until {e['expires_on']}  owner {_t(e['owner'])}"
            f"  suppresses {e['alerts_suppressed']} alert(s)\n    match: {_t(describe_criteria(e))}"
            f"\n    reason: {_ft(e['reason'])}"
        )


__all__ = ["CRITERIA", "command"]
