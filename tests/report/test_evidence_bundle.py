"""Evidence bundles: a case's evidence in one folder, checkable by anyone with the tool."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from report_seed import BULK_REQUEST

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
