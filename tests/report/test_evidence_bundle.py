"""Evidence bundles: a case's evidence in one folder, checkable by anyone with the tool."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from report_seed import BULK_REQUEST

import dwatch
from dwatch.cli import main
from dwatch.errors import InputError
from dwatch.evidence import MANIFEST, RULES_DIR, export_bundle, verify_bundle
from dwatch.report.cases import build_cases

TIN_SHAPE = re.compile(r"(?<![0-9])[0-9]{3}-[0-9]{2}-[0-9]{4}(?![0-9])")


def _bulk_case(con) -> str:
    build_cases(con)
    return con.execute(
        "SELECT case_id FROM cases WHERE request_id = ? ORDER BY alert_count DESC LIMIT 1",
        [BULK_REQUEST],
    ).fetchone()[0]


def test_bundle_holds_the_case_and_verifies(con, seeded, tmp_path):
    case_id = _bulk_case(con)
    bundle = export_bundle(con, case_id, tmp_path / "b")
    names = {p.name for p in (tmp_path / "b").rglob("*") if p.is_file()}
    assert {MANIFEST, "case.json", "alerts.json", "events.csv", "registry.json"} <= names
    assert {"triage.csv", "request_items.csv", "ingest_runs.json"} <= names
    alerts = json.loads((tmp_path / "b" / "alerts.json").read_text())
    expected = con.execute(
        "SELECT count(*) FROM case_alerts WHERE case_id = ?", [case_id]
    ).fetchone()[0]
    assert len(alerts) == expected > 0
    rule_ids = {a["detector_id"] for a in alerts if a["detector_kind"] == "rule"}
    rules = {r["rule_id"]: r for r in json.loads((tmp_path / "b" / "rules.json").read_text())}
    assert set(rules) == rule_ids
    for rule_id, entry in rules.items():
        on_disk = (RULES_DIR / f"{rule_id}.yaml").is_file()
        assert (f"{rule_id}.yaml" in names) == on_disk
        assert (entry["note"] is None) == on_disk
    events = (tmp_path / "b" / "events.csv").read_text()
    assert events.count("\n") > 1  # header and the evidence events
    cited = json.loads((tmp_path / "b" / "registry.json").read_text())["cited"]
    assert set(cited) == {c for a in alerts for c in (a["citations"] or [])}
    assert verify_bundle(tmp_path / "b", bundle.manifest_sha256) == []
    for path in (tmp_path / "b").rglob("*"):
        if path.is_file():
            assert not TIN_SHAPE.search(path.read_text(encoding="utf-8")), path.name


@pytest.mark.parametrize("victim", ["events.csv", "alerts.json", "case.json", "triage.csv"])
def test_any_changed_byte_is_named(con, seeded, tmp_path, victim):
    export_bundle(con, _bulk_case(con), tmp_path / "b")
    path = tmp_path / "b" / victim
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    problems = verify_bundle(tmp_path / "b")
    assert problems == [f"{victim}: changed since export (SHA-256 differs from the manifest)"]


def test_removed_added_and_manifest_changes_are_named(con, seeded, tmp_path):
    bundle = export_bundle(con, _bulk_case(con), tmp_path / "b")
    (tmp_path / "b" / "triage.csv").unlink()
    (tmp_path / "b" / "extra.txt").write_text("slipped in")
    problems = verify_bundle(tmp_path / "b")
    assert "triage.csv: listed in the manifest but missing" in problems
    assert "extra.txt: not in the manifest (added after export)" in problems
    manifest = tmp_path / "b" / MANIFEST
    manifest.write_text(manifest.read_text().replace('"bytes"', '"bytes" '))
    assert any(
        p.startswith(f"{MANIFEST}: its SHA-256")
        for p in verify_bundle(tmp_path / "b", bundle.manifest_sha256)
    )


def test_export_refuses_a_non_empty_folder_and_an_unknown_case(con, seeded, tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "old.txt").write_text("x")
    with pytest.raises(InputError, match="not empty"):
        export_bundle(con, _bulk_case(con), tmp_path / "b")
    with pytest.raises(InputError, match="no case"):
        export_bundle(con, "cs_nope", tmp_path / "c")


def test_cli_export_then_verify(con, seeded, db_path, tmp_path: Path):
    case_id = _bulk_case(con)
    con.close()
    out = tmp_path / "bundle"
    runner = CliRunner()
    exported = runner.invoke(
        main, ["--db", str(db_path), "alerts", "export", case_id, "--bundle", str(out)]
    )
    assert exported.exit_code == 0, exported.output
    digest = exported.output.split("manifest sha256: ")[1].strip()
    ok = runner.invoke(main, ["verify", str(out), "--expect", digest])
    assert ok.exit_code == 0 and "every file matches" in ok.output
    (out / "events.csv").write_text("event_id\nforged\n")
    bad = runner.invoke(main, ["verify", str(out)])
    assert bad.exit_code == 1 and "events.csv: changed since export" in bad.output


def _case_with_a_shipped_rule(con) -> str:
    """The bulk case, one of its rule alerts judged by a rule this installation ships (so
    the bundle carries rules/*.yaml and *.sql)."""
    case_id = _bulk_case(con)
    con.execute(
        "UPDATE alerts SET detector_id = 'bulk_case_by_case_request' WHERE alert_id = ("
        " SELECT min(a.alert_id) FROM alerts a JOIN case_alerts c USING (alert_id)"
        " WHERE c.case_id = ? AND a.detector_kind = 'rule')",
        [case_id],
    )
    return case_id


def test_every_byte_of_every_file_is_covered_and_named(con, seeded, tmp_path):
    """First, middle and last byte of every file (rules, manifest included), one at a time."""
    bundle = export_bundle(con, _case_with_a_shipped_rule(con), tmp_path / "b")
    files = sorted(p for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert any(p.parent.name == "rules" for p in files) and (tmp_path / "b" / MANIFEST) in files
    for path in files:
        name = path.relative_to(tmp_path / "b").as_posix()
        original = path.read_bytes()
        for at in sorted({0, len(original) // 2, len(original) - 1}):
            changed = bytearray(original)
            changed[at] ^= 0x01
            path.write_bytes(bytes(changed))
            problems = verify_bundle(tmp_path / "b")
            assert problems, f"{name} byte {at} changed and the bundle still verifies"
            assert all(p.startswith(f"{name}: ") for p in problems), (name, at, problems)
            path.write_bytes(original)
    assert verify_bundle(tmp_path / "b", bundle.manifest_sha256) == []


def _fresh_tool(tmp_path: Path) -> Path:
    """The tool's code alone in a new folder, as a fresh clone holds it: no store, no
    data, no rules or policies beside it."""
    fresh = tmp_path / "fresh-clone"
    shutil.copytree(
        Path(dwatch.__file__).parent, fresh / "dwatch", ignore=shutil.ignore_patterns("__pycache__")
    )
    return fresh


def test_a_bundle_verifies_in_another_process_with_no_store(con, seeded, db_path, tmp_path):
    case_id = _case_with_a_shipped_rule(con)
    con.close()
    made = tmp_path / "exported"
    exported = CliRunner().invoke(
        main, ["--db", str(db_path), "alerts", "export", case_id, "--bundle", str(made)]
    )
    assert exported.exit_code == 0, exported.output
    digest = exported.output.split("manifest sha256: ")[1].strip()
    # handed over: a copy on the other side, the exporting store gone
    counsel = tmp_path / "counsel"
    shutil.copytree(made, counsel / "bundle")
    for path in tmp_path.glob("store.duckdb*"):
        path.unlink()
    fresh = _fresh_tool(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DWATCH_")}
    env["HOME"] = str(counsel)
    code = (
        "import sys; sys.path.insert(0, sys.argv.pop(1)); import dwatch;"
        " print('tool', dwatch.__file__, flush=True);"
        " from dwatch.cli import main; main(sys.argv[1:], prog_name='dwatch')"
    )

    def verify(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", code, str(fresh), "verify", *args],
            cwd=counsel, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip

    ok = verify("bundle", "--expect", digest)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert f"tool {fresh / 'dwatch'}" in ok.stdout and "every file matches" in ok.stdout
    rule_sql = sorted((counsel / "bundle" / "rules").glob("*.sql"))[0]
    data = bytearray(rule_sql.read_bytes())
    data[len(data) // 2] ^= 0x01
    rule_sql.write_bytes(bytes(data))
    bad = verify("bundle", "--expect", digest)
    assert bad.returncode == 1
    assert f"rules/{rule_sql.name}: changed since export" in bad.stderr
    assert not list(counsel.rglob("*.duckdb")) and not list(fresh.rglob("*.duckdb"))
