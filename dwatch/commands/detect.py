"""``dwatch detect``: judge the store by the policy registry (rules), then the models."""

from __future__ import annotations

import json
from pathlib import Path

import click

from detectors.engine import DetectResult, detect_rules, new_run_id, summarise
from dwatch.errors import DWatchError
from dwatch.store import connect


def _as_json(result: DetectResult, models: str | None) -> str:
    merge = result.merge
    return json.dumps(
        {
            "run_id": result.run_id,
            "registry_version": result.registry_version,
            "citations_refreshed": result.citations_refreshed,
            "alerts": None
            if merge is None
            else {
                "new": merge.new,
                "updated": merge.updated,
                "reopened": merge.reopened,
                "retracted": merge.retracted,
                "coverage_incomplete": result.coverage_flagged,
            },
            "rules": [
                {"rule_id": r.rule_id, "findings": r.findings, "seconds": round(r.seconds, 3)}
                for r in result.rules
            ],
            "models": models,
        },
        indent=2,
    )


@click.command("detect")
@click.option(
    "--registry",
    "registry_path",
    type=click.Path(exists=True, path_type=Path),
    help="Policy registry folder or file (default: the shipped policies/).",
)
@click.option("--ml/--no-ml", default=True, help="Also score the trained ML detectors.")
@click.option("--json", "as_json", is_flag=True, help="Print the run summary as JSON.")
@click.option(
    "--prefect",
    is_flag=True,
    help="Run as the Prefect flow `detect` (ephemeral unless PREFECT_API_URL is set).",
)
@click.pass_context
def command(
    ctx: click.Context, registry_path: Path | None, ml: bool, as_json: bool, prefect: bool
) -> None:
    """Raise alerts: every rule in detectors/rules/, judged by the policy registry as of each
    event's time, then the ML detectors.

    The whole history is re-judged each run, so a registry change (an order stayed, a new
    alias) updates the alerts: new findings appear, findings that no longer hold are
    retracted with the reason, alert ids stay stable.

    \b
    Examples:
      dwatch detect
      dwatch detect --no-ml --json
      dwatch detect --registry /tmp/what-if-policies/   # judge by an edited copy
      dwatch --db /srv/dwatch.duckdb detect --prefect
    """
    db: Path = ctx.obj["db"]
    if prefect:
        from flows.detect import detect_flow

        result = detect_flow(
            db=str(db), registry_path=str(registry_path) if registry_path else None, ml=ml
        )
        click.echo(_as_json(result, None) if as_json else summarise(result))
        return
    con = connect(db)
    models: str | None = None
    try:
        result = detect_rules(con, registry_path=registry_path, run_id=new_run_id())
        if ml:
            from detectors.ml.run import score_models

            try:
                summary = score_models(con, run_id=result.run_id)
                models = "; ".join(f"{d.detector_id}: {d.message}" for d in summary.detectors)
            except DWatchError as exc:
                # Rule alerts are already committed; the model step's problem is reported.
                models = f"model scoring failed: {exc.what}"
    finally:
        con.close()
    if as_json:
        click.echo(_as_json(result, models))
    else:
        click.echo(summarise(result))
        if models:
            click.echo(f"  models: {models}")
