"""Every shipped source mapping's own cases pass (schemas/sources/samples/<name>/cases.yaml),
and the case runner, not_logged and event_id_from can fail."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from dwatch.cli import main
from dwatch.errors import ConfigError
from dwatch.ingest import ingest_paths
from dwatch.mapping import load_mapping
from dwatch.mapping_cases import load_cases, run_cases, samples_dir
from dwatch.schema import SOURCES_DIR

MAPPINGS = sorted(
    p for p in SOURCES_DIR.glob("*.yaml") if not p.name.endswith(".expectations.yaml")
)
WITH_CASES = [p for p in MAPPINGS if load_cases(p)]
# Issue 15 item 5: systems users already run ship with samples of their real formats.
REAL_SYSTEMS = {
    "aws-cloudtrail-s3",
    "moveit-transfer-audit",
    "openssh-sftp",
    "openssh-sftp-journal",
}


def test_the_real_system_mappings_carry_cases() -> None:
    assert {p.stem for p in WITH_CASES} >= REAL_SYSTEMS


@pytest.mark.parametrize("mapping", WITH_CASES, ids=lambda p: p.stem)
def test_every_case_of_every_mapping_passes(mapping: Path) -> None:
    outcomes = run_cases(mapping)
    assert outcomes
    failed = [f"{o.file}: {o.problems}" for o in outcomes if not o.passed]
    assert not failed, failed


@pytest.mark.parametrize("mapping", WITH_CASES, ids=lambda p: p.stem)
def test_every_sample_file_is_a_case(mapping: Path) -> None:
    named = {str(c["file"]) for c in load_cases(mapping)}
    present = {p.name for p in samples_dir(mapping).iterdir() if p.name != "cases.yaml"}
    assert present == named


def _copy_with_cases(tmp_path: Path, name: str, cases: str) -> Path:
    folder = tmp_path / "sources"
    shutil.copytree(SOURCES_DIR / "samples" / name, folder / "samples" / name)
    shutil.copyfile(SOURCES_DIR / f"{name}.yaml", folder / f"{name}.yaml")
    (folder / "samples" / name / "cases.yaml").write_text(cases)
    return folder / f"{name}.yaml"


def test_a_case_stating_what_did_not_happen_fails(tmp_path: Path) -> None:
    mapping = _copy_with_cases(
        tmp_path,
        "moveit-transfer-audit",
        "cases:\n  - file: moveit-audit-2025.csv\n    read: 9\n    loaded: 7\n"
        "    quarantined: {not_in_vocabulary: 2}\n    warnings: [nothing like this]\n"
        "    events: [{event_id: h5f4ac53e900ae38754a8809f, recipient_agency: SSA},"
        " {event_id: nope}]\n",
    )
    [outcome] = run_cases(mapping)
    assert not outcome.passed
    text = "\n".join(outcome.problems)
    for part in ("rows loaded: expected 7, got 6", "quarantined by reason", "nothing like this",
                 "recipient_agency expected 'SSA', got 'DHS-ICE'", "nope: not loaded"):  # fmt: skip
        assert part in text
    result = CliRunner().invoke(main, ["mapping", "test", str(mapping)])
    assert result.exit_code == 1
    assert "0 of 1 case(s) passed" in result.output


def test_mapping_test_without_a_file_runs_the_cases() -> None:
    result = CliRunner().invoke(
        main, ["mapping", "test", str(SOURCES_DIR / "moveit-transfer-audit.yaml")]
    )
    assert result.exit_code == 0, result.output
    assert "1 of 1 case(s) passed" in result.output


def test_a_mapping_without_cases_says_so_and_fails(tmp_path: Path) -> None:
    mapping = tmp_path / "bare.yaml"
    mapping.write_text("kind: events\ncolumns: {event_id: id}\n")
    result = CliRunner().invoke(main, ["mapping", "test", str(mapping)])
    assert result.exit_code == 1
    assert "no cases" in result.output


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("not_logged: [legal_authority, nonsense]", "'nonsense' is not a canonical field"),
        ("not_logged: [actor_id]", "'actor_id' is required"),
        ("not_logged: [purpose]\nconstants: {purpose: x}", "'purpose' is filled"),
        ("event_id_from: [When, Subject SSN]", "taxpayer identifier column(s) ['Subject SSN']"),
        ("event_id_from: [When, Who]\nidentifiers: [Who]", "['Who']"),
        ("event_id_from: [When]\ncolumns: {event_id: Id}", "both mapped to a column and derived"),
    ],
)
def test_not_logged_and_event_id_from_are_checked(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("kind: events\n" + text + "\n")
    with pytest.raises(ConfigError) as caught:
        load_mapping(path)
    assert says in caught.value.what


def test_a_folder_of_real_exports_loads_each_file_with_its_own_mapping(
    con: duckdb.DuckDBPyConnection,
) -> None:
    # .json deliveries and .log sessions are read from a folder because a mapping names them.
    results = ingest_paths(con, [SOURCES_DIR / "samples"])
    chosen = {Path(r.source_file).name: r.source_system for r in results}
    expected = {str(c["file"]): p.stem for p in WITH_CASES for c in load_cases(p)}
    assert chosen == expected
    for r in results:
        assert r.rows_read == r.rows_loaded + r.rows_quarantined, r.source_file
    read = sum(r.rows_read for r in results)
    stored = con.execute("SELECT count(*) FROM disclosure_events").fetchone()[0]
    held = con.execute("SELECT count(*) FROM quarantine").fetchone()[0]
    assert read == stored + held


def test_a_folder_of_gzipped_cloudtrail_deliveries_is_read(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    sample = next((SOURCES_DIR / "samples" / "aws-cloudtrail-s3").glob("*T1415Z*.json"))
    folder = tmp_path / "AWSLogs"
    folder.mkdir()
    (folder / (sample.name + ".gz")).write_bytes(gzip.compress(sample.read_bytes()))
    (folder / "notes.json").write_text("{}\n")  # named by no mapping: left out of the scan
    [result] = ingest_paths(con, [folder])
    assert (result.source_system, result.rows_read, result.rows_loaded) == (
        "aws-cloudtrail-s3", 5, 4,
    )  # fmt: skip


def test_the_samples_pass_their_sources_expectation_suites(con: duckdb.DuckDBPyConnection) -> None:
    from dwatch.validate import validate_batches

    ingest_paths(con, [SOURCES_DIR / "samples"])
    report = validate_batches(con, build_docs=False)
    batches = [b for b in report.all_batches if b.ingest_run_id]
    assert batches and not any(b.error for b in batches)
    assert sum(len(b.failed) for b in batches) == 0, report.summary()
    moved = con.execute("SELECT count(*) FROM quarantine WHERE stage = 'validate'").fetchone()
    assert moved == (0,)
    # Logs with no sequence numbers are reported as not checkable for gaps (issue 15 item 2).
    unchecked = {s for (s,) in con.execute(
        "SELECT DISTINCT source_system FROM coverage_gaps WHERE expectation = 'sequence_not_checkable'"
    ).fetchall()}  # fmt: skip
    assert unchecked == REAL_SYSTEMS
