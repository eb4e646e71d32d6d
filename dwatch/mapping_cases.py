"""A mapping's own test cases: sample exports and what loading each must give.

Like a detection rule carrying its true and false cases, a source mapping in
``schemas/sources/<name>.yaml`` may carry sample files written from the real system's
format in ``schemas/sources/samples/<name>/`` and a ``cases.yaml`` there::

    cases:
      - file: 111122223333_CloudTrail_us-east-1_20250807T1410Z_a1.json
        says: a delivered log file with downloads, an upload and a denied read
        read: 5                     # rows read (= loaded + quarantined)
        loaded: 4
        quarantined: {not_in_vocabulary: 1}
        warnings: ["no legal_authority"]        # substrings some warning must contain
        events:                     # loaded events, found by event_id, fields compared
          - {event_id: ev-1, event_type: disclosure, recipient_agency: DHS-ICE}

``dwatch mapping test MAPPING`` runs them; tests/mapping/test_source_samples.py runs every
mapping's. Each file is loaded into a throw-away store with only this mapping available and
no --source, so the mapping must also select itself for its files.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from dwatch import yamlfile
from dwatch.errors import ConfigError
from dwatch.mapping import KIND_TABLE, load_mapping

if TYPE_CHECKING:
    from dwatch.ingest import IngestResult

CASES_FILE = "cases.yaml"


@dataclass
class CaseOutcome:
    """One case: the sample file, what happened, and every way it differed from the case."""

    file: str
    says: str
    summary: str
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems


def samples_dir(mapping_path: Path) -> Path:
    return mapping_path.parent / "samples" / mapping_path.stem


def load_cases(mapping_path: Path) -> list[dict[str, Any]]:
    """The mapping's cases ([] when it has no samples folder)."""
    path = samples_dir(mapping_path) / CASES_FILE
    if not path.is_file():
        return []
    raw = yamlfile.safe_load(path.read_text(encoding="utf-8")) or {}
    cases = raw.get("cases") if isinstance(raw, dict) else None
    if not isinstance(cases, list) or not all(isinstance(c, dict) and "file" in c for c in cases):
        raise ConfigError(
            "cases must be a list of mappings, each with a file",
            where=f"{path}: cases",
            fix="write cases: [{file: sample.csv, read: 3, loaded: 3}]",
        )
    return cases


def _stored(con: duckdb.DuckDBPyConnection, kind: str) -> dict[str, dict[str, Any]]:
    """Loaded rows by event_id (request items by request/item), values as text."""
    table = KIND_TABLE[kind]
    key = "event_id" if kind == "events" else "request_id || '/' || item_no"
    rows = con.execute(
        f"SELECT {key} AS _key, CAST(to_json(t) AS VARCHAR) FROM"
        f" (SELECT * EXCLUDE (ingest_run_id, extra) FROM {table}) t"
    ).fetchall()
    return {str(k): json.loads(v) for k, v in rows}


def _compare(
    case: dict[str, Any], result: IngestResult, stored: dict[str, dict[str, Any]]
) -> list[str]:
    problems = []
    for label, want, got in (
        ("rows read", case.get("read"), result.rows_read),
        ("rows loaded", case.get("loaded"), result.rows_loaded),
        ("quarantined by reason", case.get("quarantined", {}), result.quarantined_by_reason),
    ):
        if want is not None and want != got:
            problems.append(f"{label}: expected {want}, got {got}")
    for text in case.get("warnings", []):
        if not any(text in w for w in result.warnings):
            problems.append(f"no warning says {text!r}")
    for event in case.get("events", []):
        key = str(event.get("event_id", f"{event.get('request_id')}/{event.get('item_no')}"))
        row = stored.get(key)
        if row is None:
            problems.append(f"{key}: not loaded")
            continue
        for name, want in event.items():
            if name in row and row[name] != want and str(row[name]) != str(want):
                problems.append(f"{key}: {name} expected {want!r}, got {row[name]!r}")
            elif name not in row:
                problems.append(f"{key}: {name} is no stored field")
    return problems


def run_cases(mapping_path: Path) -> list[CaseOutcome]:
    """Load each case's sample with only this mapping available; compare with the case."""
    from dwatch.ingest import ingest_paths, summarise
    from dwatch.mapping_tools import _sources_with
    from dwatch.store import connect

    mapping = load_mapping(mapping_path)
    outcomes = []
    for case in load_cases(mapping_path):
        sample = samples_dir(mapping_path) / str(case["file"])
        folder = Path(tempfile.mkdtemp(prefix="dwatch-mapping-case-"))
        key = os.environ.get("DWATCH_PSEUDONYM_KEY") or secrets.token_hex(32)
        try:
            con = connect(folder / "case.duckdb")
            con.execute("SET TimeZone = 'UTC'")
            with _sources_with(mapping_path):
                results = ingest_paths(con, [sample], key=key.encode())
            [result] = results
            problems = [] if result.status == "loaded" else [f"not loaded: {result.message}"]
            if result.source_system != mapping.name:
                problems.append(f"the file selected {result.source_system!r}, not this mapping")
            if result.status == "loaded":
                problems += _compare(case, result, _stored(con, result.kind or "events"))
            says = str(case.get("says", ""))
            outcomes.append(CaseOutcome(str(case["file"]), says, summarise(results), problems))
            con.close()
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    return outcomes


def render(mapping_path: Path, outcomes: list[CaseOutcome]) -> str:
    if not outcomes:
        return (
            f"{mapping_path}: no cases (add samples and {CASES_FILE} in"
            f" {samples_dir(mapping_path)}, or give a FILE to try)"
        )
    lines = []
    for outcome in outcomes:
        lines.append(f"{'ok  ' if outcome.passed else 'FAIL'} {outcome.file}: {outcome.says}")
        lines += [f"       {p}" for p in outcome.problems]
        if not outcome.passed:
            lines += ["       " + s for s in outcome.summary.splitlines()]
    passed = sum(o.passed for o in outcomes)
    lines.append(f"{passed} of {len(outcomes)} case(s) passed")
    return "\n".join(lines)
