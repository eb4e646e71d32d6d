"""Take the README screenshot: a report built from generated data, opened in Chromium.

    .venv/bin/python tests/report/make_screenshot.py docs/report-screenshot.png
    .venv/bin/python tests/report/make_screenshot.py --seeded /tmp/seeded.png

Default: the product end to end on generated logs (dwatch.generate, 60,000 events, the bulk
case at 5% scale) through ingest, validation, the rule engine and the ML detectors.
``--seeded``: the report tests' seed data (tests/report/report_seed.py) instead.
"""

from __future__ import annotations

import os
import sys
import tempfile
from datetime import date, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1]))

from browser import screenshot  # noqa: E402
from report_seed import seed_store, stand_in_registry  # noqa: E402

from dwatch.report.citations import directory_from_registry  # noqa: E402
from dwatch.report.render import build_report, render_html  # noqa: E402
from dwatch.report.suppressions import add_suppression  # noqa: E402
from dwatch.report.triage import record_decision  # noqa: E402
from dwatch.store import connect  # noqa: E402


def seeded_report(tmp: Path) -> Path:
    """The test seed: the same data the report tests use."""
    con = connect(tmp / "store.duckdb")
    seed_store(con)
    add_suppression(
        con,
        criteria={"detector_id": "iforest_recipient_mix", "recipient_agency": "CA-FTB"},
        reason="annual re-extract agreed with the state (ticket 4411)",
        owner="compliance.lead",
        expires_on=date.today() + timedelta(days=60),
    )
    directory = directory_from_registry(stand_in_registry(), source="policy registry")
    first = build_report(con, tmp / "reports", formats=["html"], directory=directory)
    ssa_case = next(c.case_id for c in first.data.cases if c.recipient_agency == "SSA")
    record_decision(
        con, ssa_case, "acknowledged", decided_by="a.analyst", note="checking the January file"
    )
    result = build_report(con, tmp / "reports", formats=["html"], directory=directory)
    # The second run sees no new cases; show the first run's "new" marks as an analyst would.
    for case in result.data.cases:
        case.is_new = case.case_id in first.cases.new_case_ids
    result.data.summary["cases_new"] = len(first.cases.new_case_ids)
    assert result.html_path is not None
    result.html_path.write_text(render_html(result.data), encoding="utf-8")
    con.close()
    return result.html_path


def pipeline_report(tmp: Path, events: int = 60_000) -> Path:
    """The product end to end: generator -> ingest -> validation -> rules -> ML -> report."""
    from detectors.engine import run_rules
    from detectors.ml.run import score_models, train_models
    from dwatch.generate import generate
    from dwatch.ingest import ingest_paths
    from dwatch.policy import load_registry
    from dwatch.store import transaction
    from dwatch.validate.runner import validate_batches

    generate(tmp / "logs", events=events, seed=7, scale=0.05)
    con = connect(tmp / "store.duckdb")
    files = sorted(
        p for p in (tmp / "logs").rglob("*") if p.suffix in (".csv", ".jsonl", ".parquet")
    )
    ingest_paths(con, files)
    reports = tmp / "reports"
    try:
        validate_batches(con, docs_dir=reports / "validation")
    except Exception as exc:  # a screenshot without validation still shows the report
        print(f"validation skipped: {exc}")
    with transaction(con):
        run_rules(con, load_registry(), run_id="detect-1")
    try:
        span = con.execute(
            "SELECT min(occurred_at), max(occurred_at) FROM disclosure_events"
        ).fetchall()[0]
        train_models(con, window_from=span[0], window_to=span[1], models_dir=tmp / "models")
        score_models(con, run_id="ml-1", models_dir=tmp / "models")
    except Exception as exc:
        print(f"ML skipped: {exc}")
    result = build_report(con, reports, formats=["html"])
    con.close()
    assert result.html_path is not None
    return result.html_path


def main(out: Path, mode: str) -> None:
    os.environ.setdefault("DWATCH_PSEUDONYM_KEY", "screenshot-key-not-secret-0123456789")
    with tempfile.TemporaryDirectory(prefix="dwatch-shot-") as tmp:
        page = seeded_report(Path(tmp)) if mode == "--seeded" else pipeline_report(Path(tmp))
        out.parent.mkdir(parents=True, exist_ok=True)
        screenshot(page, out, width=1280, height=2500)
    print(f"wrote {out}")


if __name__ == "__main__":
    paths = [a for a in sys.argv[1:] if not a.startswith("--")]
    chosen_mode = "--seeded" if "--seeded" in sys.argv else "--pipeline"
    default_out = HERE.parents[1] / "docs" / "report-screenshot.png"
    main(Path(paths[0]) if paths else default_out, chosen_mode)
