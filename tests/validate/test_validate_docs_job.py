"""Data Docs beside the run: checking needs no Great Expectations, and the pages a separate
process builds from the job file are the pages the run would have built itself."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from dwatch.validate import ValidationConfig, validate_batches
from dwatch.validate.docs_job import PENDING, build_pending, docs_mode
from dwatch.validate.sources import load_source_suites
from tests.validate.conftest import InsertBatch, event_row


def _pages(docs: Path) -> dict[str, str]:
    """Every page of a site, by path; the run's times and ids differ between two builds."""
    return {
        p.relative_to(docs).as_posix(): p.read_text(encoding="utf-8")
        for p in sorted(docs.rglob("*.html"))
    }


def test_checking_new_batches_does_not_load_great_expectations(
    con: duckdb.DuckDBPyConnection, db_path: Path, insert_batch: InsertBatch
) -> None:
    insert_batch([event_row(1), event_row(3, channel="carrier_pigeon")])
    con.execute("CHECKPOINT")
    con.close()
    script = (
        "import sys\n"
        "from dwatch.store import connect\n"
        "from dwatch.validate import validate_batches\n"
        "con = connect(sys.argv[1])\n"
        "report = validate_batches(con, build_docs=False)\n"
        "print(len(report.batches), len(report.failed), 'great_expectations' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(db_path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    # one batch, its channel and its sequence gap failed, and GX was never imported
    assert out.stdout.split() == ["1", "2", "False"], out.stderr


def test_pages_built_in_the_background_are_the_pages_built_inline(
    con: duckdb.DuckDBPyConnection,
    db_path: Path,
    insert_batch: InsertBatch,
    vconfig: ValidationConfig,
    tmp_path: Path,
) -> None:
    insert_batch([event_row(1), event_row(3, channel="carrier_pigeon")])
    con.execute("CHECKPOINT")
    copy = tmp_path / "copy.duckdb"
    shutil.copy(db_path, copy)
    inline_docs, background_docs = tmp_path / "inline", tmp_path / "background"
    inline = validate_batches(con, config=vconfig, docs_dir=inline_docs)
    assert inline.docs_index == inline_docs / "index.html" and inline.docs_note is None

    from dwatch.store import connect

    other = connect(copy)
    try:
        started = time.monotonic()
        background = validate_batches(
            other, config=vconfig, docs_dir=background_docs, docs_in_background=True
        )
    finally:
        other.close()
    assert background.docs_note and "being built by process" in background.docs_note
    assert background.docs_index == background_docs / "index.html"
    assert f"Data Docs: {background.docs_url} (being built" in background.summary()
    while list((background_docs / PENDING).glob("*.json")):
        assert time.monotonic() - started < 600, (background_docs / PENDING / "job.log").read_text()
        time.sleep(0.5)
    assert background.docs_index.is_file()
    inline_pages, background_pages = _pages(inline_docs), _pages(background_docs)
    assert len(inline_pages) >= 3

    # The same pages, each saying the same (validation run ids and times aside).
    def strip(text: str, report_id: str) -> str:
        return text.replace(report_id, "RUN")

    assert sorted(p.split("/")[0] for p in inline_pages) == sorted(
        p.split("/")[0] for p in background_pages
    )
    inline_text = "".join(strip(t, inline.validation_run_id) for t in inline_pages.values())
    background_text = "".join(
        strip(t, background.validation_run_id) for t in background_pages.values()
    )
    for phrase in ("channel is one of the accepted channel values", "1 unexpected values found"):
        assert phrase in inline_text and phrase in background_text


def test_the_newest_pending_job_is_built_and_covers_the_older_ones(
    con: duckdb.DuckDBPyConnection,
    insert_batch: InsertBatch,
    vconfig: ValidationConfig,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import dwatch.validate.docs_job as job_module

    docs = tmp_path / "docs"
    monkeypatch.setattr(job_module, "start_job", lambda _docs: 0)  # nobody builds them yet
    insert_batch([event_row(1)])
    first = validate_batches(con, config=vconfig, docs_dir=docs, docs_in_background=True)
    insert_batch([event_row(2, channel="carrier_pigeon")])
    second = validate_batches(con, config=vconfig, docs_dir=docs, docs_in_background=True)
    assert len(list((docs / PENDING).glob("*.json"))) == 2
    assert build_pending(docs) == docs / "index.html"
    assert list((docs / PENDING).glob("*.json")) == []
    text = "".join(_pages(docs).values())
    assert second.validation_run_id in text and first.validation_run_id not in text
    assert build_pending(docs) is None  # nothing pending


def test_docs_mode_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DWATCH_DATA_DOCS", raising=False)
    assert docs_mode(default="background") == "background"
    monkeypatch.setenv("DWATCH_DATA_DOCS", "inline")
    assert docs_mode(default="background") == "inline"
    monkeypatch.setenv("DWATCH_DATA_DOCS", "later")
    with pytest.raises(Exception, match="unknown Data Docs mode"):
        docs_mode()


@pytest.mark.parametrize(
    ("argument", "message"),
    [
        ("    value_set: IRS\n", "value_set must be list"),
        ("    value_set: [IRS]\n    sample: 3\n", "unknown argument 'sample'"),
    ],
)
def test_a_source_suite_argument_is_checked_without_great_expectations(
    tmp_path: Path, argument: str, message: str
) -> None:
    from dwatch.errors import ConfigError
    from dwatch.schema import load_schema

    path = tmp_path / "state-exchange-log.expectations.yaml"
    path.write_text(
        "source_system: state-exchange-log\nexpectations:\n"
        "  - type: expect_column_values_to_be_in_set\n    column: disclosing_agency\n" + argument
    )
    with pytest.raises(ConfigError, match=message):
        load_source_suites(tmp_path, load_schema().events)
