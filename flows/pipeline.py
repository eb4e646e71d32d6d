"""Prefect flow ``pipeline``: ingest -> plan -> validate -> detect (rules, ML) -> report -> notify -> publish.

Thin: every step is a function in :mod:`dwatch.pipeline` (the same ones ``run_pipeline``
calls); a task here only runs one of them on the run's context, so each step shows in the
Prefect UI with its state and duration. Retries only where the work is I/O that can fail
transiently: reading input files, sending e-mail, copying the snapshot.

Works in Prefect's ephemeral mode (no server) and against a server (``PREFECT_API_URL``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from dwatch import progress
from dwatch.masking import mask_json, mask_text
from dwatch.pipeline import RunContext, RunSummary, StepResult, begin_run
from dwatch.pipeline_config import parse_backfill
from dwatch.report.safety import markdown_text


def _step(name: str, *, retries: int = 0, delay: int = 0) -> Any:
    """A task that runs the named pipeline step on the run's context."""

    def run_step(ctx: RunContext) -> StepResult:
        return ctx.run(name)

    run_step.__name__ = name
    run_step.__doc__ = f"Pipeline step {name} (dwatch.pipeline.step_{name})."
    # The context holds the store connection: never hash or persist it.
    return task(
        run_step,
        name=name,
        retries=retries,
        retry_delay_seconds=delay,
        cache_policy=NO_CACHE,
        persist_result=False,
    )


ingest = _step("ingest", retries=2, delay=10)  # file reads: shares and mounts hiccup
plan = _step("plan")
validate = _step("validate")
detect_rules = _step("detect_rules")
detect_ml = _step("detect_ml")
report = _step("report")
notify = _step("notify", retries=2, delay=30)  # SMTP
publish = _step("publish", retries=2, delay=10)  # snapshot copy to disk
STEP_TASKS = (ingest, plan, validate, detect_rules, detect_ml, report, notify, publish)


def summary_markdown(summary: RunSummary) -> str:
    """The run as the Prefect UI shows it (every log-derived text escaped)."""
    md = markdown_text
    c = summary.counts
    lines = [
        f"# Pipeline run {summary.run_id}: {summary.status}",
        "",
        "| Step | Status | Seconds | Result |",
        "|---|---|---:|---|",
    ]
    for s in summary.steps:
        lines.append(f"| {s.step} | {s.status} | {s.seconds:.2f} | {md(s.message)} |")
    lines += [
        "",
        f"Files read {c.get('files_new', 0)}, unchanged {c.get('files_unchanged', 0)};"
        f" events loaded {c.get('events_loaded', 0):,}; windows judged {c.get('windows_processed', 0)}"
        f" (gaps filled {c.get('gaps_filled', 0)}, late events {c.get('late_events', 0)}).",
        f"Alerts: {c.get('alerts_new', 0)} new, {c.get('alerts_retracted', 0)} retracted,"
        f" {c.get('alerts_open', 0)} open.",
    ]
    for label, path in (
        ("Report", summary.report_path),
        ("Data Docs", summary.data_docs_path),
        ("Analyst snapshot", summary.current_snapshot),
    ):
        if path:
            lines.append(f"{label}: `{md(str(path))}`")
    lines += [f"- {md(n)}" for n in summary.notes]
    return "\n".join(lines) + "\n"


@flow(name="pipeline", log_prints=False)
@progress.in_prefect_logs
def pipeline_flow(
    paths: list[str] | None = None,
    db: str | None = None,
    backfill_from: str | None = None,
    backfill_to: str | None = None,
    trigger: str = "prefect",
    notify_email: bool | None = None,
    reports_dir: str | None = None,
    config_path: str | None = None,
) -> dict[str, Any]:
    """Run Disclosure Watch end to end on new logs; publish a read-only snapshot for analysts."""
    from prefect.runtime import flow_run

    from dwatch.pipeline import load_pipeline_config

    logger = get_run_logger()
    backfill = parse_backfill(backfill_from, backfill_to) if backfill_from and backfill_to else None
    ctx = begin_run(
        Path(db) if db else None,
        paths,
        backfill=backfill,
        trigger=trigger,
        config=load_pipeline_config(config_path),
        notify=notify_email,
        reports_dir=Path(reports_dir) if reports_dir else None,
        flow_run_id=str(flow_run.id) if flow_run.id else None,
    )
    try:
        for step_task in STEP_TASKS:
            step_task(ctx)
    except BaseException as exc:
        ctx.fail(exc)
        logger.error("run %s failed: %s", ctx.run_id, ctx.error)
        raise
    finally:
        ctx.close()
    summary = ctx.summary()
    create_markdown_artifact(
        markdown=mask_text(summary_markdown(summary)),  # last line (dwatch.masking)
        key="dwatch-pipeline-run",
        description="Disclosure Watch pipeline run: steps, counts, where the outputs are",
    )
    if ctx.report_result is not None:
        from dwatch.report.artifacts import case_table

        create_table_artifact(
            table=mask_json(case_table(ctx.report_result.data), None)
            or [{"case_id": "", "severity": "", "title": "no open cases"}],
            key="dwatch-open-cases",
            description="Open cases, highest severity and risk first",
        )
    logger.info("%s", summary.describe())
    return {
        "run_id": summary.run_id,
        "status": summary.status,
        "steps": {s.step: s.status for s in summary.steps},
        "counts": summary.counts,
        "report": str(summary.report_path) if summary.report_path else None,
        "snapshot": str(summary.current_snapshot) if summary.current_snapshot else None,
    }
