"""Data Docs built beside the validation run, not inside it.

The checks run on DuckDB SQL alone; Great Expectations renders the Data Docs from the
suites and the verdicts, and importing it costs seconds (more than a small run's checks).
So the run writes what the pages show, each suite's expectations as data (``GxSpec``) and
every outcome, to ``<docs>/.pending/<time>-<validation run>.json``, then either builds the
pages itself (``inline``) or starts ``python -m dwatch.validate.docs_job <docs>`` and goes
on (``background``, what ``dwatch run`` does unless ``DWATCH_DATA_DOCS=inline``). The job
does not open the store (the pipeline holds it): everything it needs is in the file.

A job holds a lock on the folder, builds the site from the newest pending file (the site
shows the latest validation run, as it did when built inside the run), then deletes the
files it covered. A job that fails or dies leaves its file, so the next one builds it (or
a newer one); the error is kept in ``<docs>/.pending/job.log``.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from dwatch.validate.checks import Check, GxSpec
from dwatch.validate.report import Outcome, ValidationReport

log = logging.getLogger(__name__)

MODE_ENV = "DWATCH_DATA_DOCS"
MODES = ("inline", "background")
PENDING = ".pending"
LOG = "job.log"


def docs_mode(default: str = "inline") -> str:
    """``inline`` or ``background``, from ``DWATCH_DATA_DOCS`` (else ``default``)."""
    chosen = os.environ.get(MODE_ENV) or default
    if chosen not in MODES:
        from dwatch.errors import ConfigError

        raise ConfigError(f"unknown Data Docs mode {chosen!r}", where=MODE_ENV, fix=f"use {MODES}")
    return chosen


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"$datetime": value.isoformat()}
    raise TypeError(f"cannot write {type(value).__name__} into a Data Docs job")


def _decode(obj: dict[str, Any]) -> Any:
    if set(obj) == {"$datetime"}:
        return datetime.fromisoformat(obj["$datetime"])
    return obj


def _check_data(check: Check) -> dict[str, Any]:
    return {
        "expectation_type": check.expectation_type,
        "field": check.field,
        "scope": check.scope,
        "description": check.description,
        "gx": {"class_name": check.gx.class_name, "kwargs": check.gx.kwargs},
    }


def _check_from(data: dict[str, Any]) -> Check:
    spec = GxSpec(data["gx"]["class_name"], data["gx"]["kwargs"])
    return Check(data["expectation_type"], data["field"], data["scope"], data["description"], spec)


def write_job(docs_dir: Path, suites: dict[str, list[Check]], report: ValidationReport) -> Path:
    """What the pages of this validation run show, as a pending job file."""
    pending = docs_dir / PENDING
    pending.mkdir(parents=True, exist_ok=True)
    body = {
        "validation_run_id": report.validation_run_id,
        "batch_count": len(report.batches),
        "suites": {name: [_check_data(c) for c in checks] for name, checks in suites.items()},
        "outcomes": [asdict(o) for b in report.all_batches for o in b.outcomes],
    }
    target = pending / f"{time.time_ns():020d}-{report.validation_run_id}.json"
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(json.dumps(body, default=_encode), encoding="utf-8")
    os.replace(tmp, target)
    return target


def build_pending(docs_dir: Path) -> Path | None:
    """Build the site from the newest pending job (under the folder's lock); its index.html,
    or None when nothing was pending."""
    from dwatch.validate.docs import build_offline_docs
    from dwatch.validate.recording import record_outcomes, start_gx

    pending = docs_dir / PENDING
    pending.mkdir(parents=True, exist_ok=True)
    with (pending / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        jobs = sorted(pending.glob("*.json"))
        if not jobs:
            return None
        job = json.loads(jobs[-1].read_text(encoding="utf-8"), object_hook=_decode)
        suites = {n: [_check_from(c) for c in cs] for n, cs in job["suites"].items()}
        outcomes = [Outcome(**o) for o in job["outcomes"]]
        context = start_gx(docs_dir)
        record_outcomes(context, suites, outcomes, job["batch_count"], job["validation_run_id"])
        index = build_offline_docs(context, docs_dir)
        for path in jobs:  # the newest covers the older ones
            path.unlink(missing_ok=True)
        return index


def start_job(docs_dir: Path) -> int:
    """Start a process that builds the pending pages; its pid (the caller does not wait)."""
    pending = docs_dir / PENDING
    pending.mkdir(parents=True, exist_ok=True)
    with (pending / LOG).open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dwatch.validate.docs_job", str(docs_dir)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,  # outlives the run; a Ctrl-C of the run does not stop it
            close_fds=True,
        )
    return proc.pid


def main(argv: list[str]) -> int:
    """``python -m dwatch.validate.docs_job DOCS_DIR``: build what is pending there."""
    os.nice(10)  # the pages wait; a run on the same machine does not
    # Warnings from every library, one line of our own per job: job.log stays small.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    log.setLevel(logging.INFO)
    docs_dir = Path(argv[0])
    try:
        index = build_pending(docs_dir)
    except Exception:
        log.exception("Data Docs for %s could not be built; the next job tries again", docs_dir)
        return 1
    log.info("Data Docs: %s", index or "nothing pending")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
