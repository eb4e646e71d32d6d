"""``make demo``: the whole pipeline on the committed sample logs, on a fresh store.

ingest -> validate -> detect (rules and ML) -> report -> notify -> publish, exactly as the
nightly run does (``dwatch.pipeline.run_pipeline``), then where everything is and how to
query it. Uses the published demo pseudonymisation key unless DWATCH_PSEUDONYM_KEY is set,
and says so: the demo store is not for real data.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from dwatch.pipeline import load_pipeline_config, run_pipeline
from dwatch.pseudonym import ENV_KEY, resolve_key
from dwatch.snapshot import default_snapshot_dir, open_snapshot
from dwatch.store import default_db_path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_logs"


def main() -> int:
    db = default_db_path()
    if not os.environ.get(ENV_KEY):
        print(
            f"note: {ENV_KEY} is not set; using the published demo key (never use it for real data)"
        )
    key = resolve_key(allow_demo=True)
    config = load_pipeline_config()
    snapshots = config.snapshot_dir or default_snapshot_dir(db)
    # A fresh demo every time: the store and its snapshots start empty.
    for suffix in ("", ".wal"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    shutil.rmtree(snapshots, ignore_errors=True)
    print(f"running the pipeline on {SAMPLE} (validation of every log takes a while) ...\n")
    summary = run_pipeline(
        db, [SAMPLE], trigger="demo", config=config, key=key, snapshot_dir=snapshots
    )
    print(summary.describe())

    con = open_snapshot(snapshots)
    try:
        top = con.execute(
            "SELECT severity, round(risk_score, 1), title FROM open_cases LIMIT 5"
        ).fetchall()
    finally:
        con.close()
    print("\nriskiest open cases:")
    for severity, risk, title in top:
        print(f"  {severity:<8} risk {risk:>7}  {title}")

    current = snapshots / "current.duckdb"
    print(
        "\nwhere things are:"
        f"\n  store (pipeline only)  {db.resolve()}"
        f"\n  analyst snapshot       {current}  (-> {summary.snapshot_path.name if summary.snapshot_path else '-'})"
        f"\n  report                 {summary.report_path or '(not written)'}"
        f"\n  Data Docs              {summary.data_docs_path or '(not built)'}"
        "\n\nquery it (read-only; never blocks a run):"
        f'\n  duckdb -readonly {current} "SELECT severity, title FROM open_cases"'
        f"\n  .venv/bin/python -c \"import duckdb; print(duckdb.connect('{current}',"
        " read_only=True).sql('SELECT * FROM run_history'))\""
        "\n  more example queries: docs/analyst-guide.md; schedules and the Prefect UI:"
        " docs/operations.md"
    )
    return 0 if summary.ok else 1


if __name__ == "__main__":
    sys.exit(main())
