"""The independent probe writes what its labels say, and covers every rule."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from benchmarks.probe.__main__ import main as write_probe
from dwatch.evaluate_truth import load_truth

RULES = Path(__file__).resolve().parents[1] / "detectors" / "rules"


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("probe")
    write_probe([str(out), "--events", "3000", "--seed", "5"])
    return out


def test_every_rule_has_an_injected_case(probe: Path) -> None:
    rules = {p.stem for p in RULES.glob("*.yaml") if not p.name.startswith("_")}
    instances = json.loads((probe / "labels" / "instances.json").read_text())
    expected = {d for i in instances for d in i["expected"]}
    assert rules - expected == set(), (
        "add a probe case for each new rule (benchmarks/probe/injected.py)"
    )


def test_labels_load_and_every_instance_has_events(probe: Path) -> None:
    truth = load_truth(probe)
    assert set(truth.instances) == set(truth.by_instance)
    assert truth.lawful > 0.8 * len(truth.events)  # lawful traffic dominates


def test_every_labelled_event_is_in_a_log_once(probe: Path) -> None:
    truth = load_truth(probe)
    seen: dict[str, int] = {}
    for path in (probe / "logs").rglob("*"):
        if path.is_dir() or "request-items" in path.parts:
            continue
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".jsonl":
            ids = [
                json.loads(line).get("eventId") or json.loads(line).get("event_id")
                for line in text.splitlines()
            ]
        else:
            rows = list(csv.reader(text.splitlines()))
            ids = [r[0] for r in rows[1:]]
        for event_id in ids:
            seen[event_id] = seen.get(event_id, 0) + 1
    duplicated = {i for i, n in seen.items() if n > 1}
    labelled = {key[1] for key in truth.events}
    assert labelled <= set(seen)
    # only the one row the probe writes twice on purpose (ids of different logs may coincide)
    dup_instances = {truth.events[k].kind for k in truth.events if k[1] in duplicated}
    assert dup_instances <= {"duplicate_event_id", "lawful"}
    assert any(
        truth.events[k].kind == "duplicate_event_id" for k in truth.events if k[1] in duplicated
    )


def test_per_taxpayer_truth_names_disclosed_subjects(probe: Path) -> None:
    truth = load_truth(probe)
    sets = {s["truth_set"] for s in truth.subjects}
    assert {"disclosed_without_usable_address", "disclosed_under_enjoined_flow"} <= sets


def test_no_log_runs_past_the_export_date() -> None:
    """The logs are exported at END: a disposal or use due later has not happened yet. (A
    log running months past the others made every other source "silent until now".) The
    last day's local evening may reach a few hours past END in UTC, no more; and no log
    stops weeks before the others."""
    from datetime import datetime, timedelta

    from benchmarks.probe.__main__ import build
    from benchmarks.probe.world import END

    w = build(20_000, 3)
    last: dict[str, datetime] = {}
    for e in w.events:
        last[e["source_system"]] = max(
            last.get(e["source_system"], e["occurred_at"]), e["occurred_at"]
        )
    assert max(last.values()) <= END + timedelta(days=1), last
    # and every log runs up to the export: requests keep coming (answered after it, they
    # are pending), so no office falls quiet in the last weeks ("silent until now")
    assert min(last.values()) >= END - timedelta(days=7), last
