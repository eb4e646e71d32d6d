"""dwatch evaluate: metric helpers on hand-made frames, and one small end-to-end run."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from click.testing import CliRunner

from dwatch.cli import main
from dwatch.evaluate import (
    _average_precision,
    _combined_event_scores,
    _event_ap,
    _row_touches,
    evaluate,
)

LABELS = pl.DataFrame(
    {
        "scenario": ["spike", "spike", "insider"],
        "instance_id": ["spike-1", "spike-1", "insider-1"],
        "source_system": ["ledger", "ledger", "log"],
        "event_id": ["e1", "e2", "e9"],
    }
)


def test_rows_touch_a_scenario_through_any_of_their_events() -> None:
    rows = pl.DataFrame(
        {
            "row_id": [0, 1, 2],
            "event_keys": [["ledger\x1fe1", "ledger\x1fe5"], ["log\x1fe9"], ["log\x1fe1"]],
        }
    )
    touch = _row_touches(rows, LABELS).sort("row_id")
    assert touch.rows() == [(0, "spike", "spike-1"), (1, "insider", "insider-1")]


def test_average_precision_leaves_other_scenarios_out_of_the_negatives() -> None:
    ml = pl.DataFrame(
        {"row_id": [0, 1, 2, 3], "detector_id": ["d"] * 4, "score": [0.9, 0.95, 0.2, 0.1]}
    ).with_columns(pl.col("row_id").cast(pl.UInt32))
    touch = pl.DataFrame(
        {
            "row_id": [0, 1],
            "scenario": ["spike", "insider"],
            "instance_id": ["spike-1", "insider-1"],
        }
    ).with_columns(pl.col("row_id").cast(pl.UInt32))
    # Row 1 (another scenario) outranks row 0 but is not a false positive for "spike".
    assert _average_precision(ml, touch, "d", "spike") == 1.0
    assert _average_precision(ml, touch, "d", "missing") != _average_precision(
        ml, touch, "d", "missing"
    )


def test_a_rule_alert_ranks_its_finding_events_not_its_chain() -> None:
    """A finding on one transfer names its agreement's other transfers as chain: they are
    context, not flagged, so they do not tie with the scenario's events at the top."""
    rules = pl.DataFrame(
        {
            "detector_id": ["rule_a"],
            "event_keys": [["l\x1fbad", "l\x1fok1", "l\x1fok2"]],
            "finding_keys": [["l\x1fbad"]],
        }
    )
    ml = pl.DataFrame(
        {
            "detector_id": ["d", "d", "d"],
            "score": [0.1, 0.5, 0.9],
            "alerted": [False, False, False],
            "event_keys": [["l\x1fok1"], ["l\x1fok2"], ["l\x1fother"]],
        }
    )
    scores = dict(_combined_event_scores(ml, rules).iter_rows())
    assert scores["l\x1fbad"] == 3.0 and scores["l\x1fok1"] < 1.0 and scores["l\x1fok2"] < 1.0
    assert _event_ap(_combined_event_scores(ml, rules), {"l\x1fbad"}, set()) == 1.0


def test_event_level_ap_ranks_rule_hits_first() -> None:
    scores = pl.DataFrame({"key": ["a", "b", "c", "d"], "s": [3.0, 0.5, 0.9, 0.1]})
    assert _event_ap(scores, {"a"}, set()) == 1.0
    assert _event_ap(scores, {"b"}, set()) < 0.5
    assert _event_ap(scores, {"b"}, {"a", "c"}) == 1.0


def test_evaluate_end_to_end_on_a_small_generated_set(tmp_path: Path) -> None:
    result = evaluate(events=30_000, seed=3, budget=10, work_dir=tmp_path)
    scenarios = result.scenarios
    assert scenarios.height >= 10
    assert "insider_browsing" in scenarios["scenario"].to_list()
    for row in scenarios.iter_rows(named=True):
        assert row["rules_ml_recall"] >= max(row["rules_recall"], row["ml_recall"])
        assert 0.0 <= row["rules_ml_recall"] <= 1.0
    detectors = {r["detector"]: r for r in result.detectors.iter_rows(named=True)}
    assert {"rules (all)", "rules + ML", "ml.transfer_surprise"} <= set(detectors)
    assert result.params["legit_bulk_events"] > 0
    combined = detectors["rules + ML"]["bulk_fp_rate"]
    assert combined >= max(
        d["bulk_fp_rate"] for d in detectors.values() if d["detector"] != "rules + ML"
    )
    text = result.render()
    assert "Per scenario" in text and "PR-AUC" in text and "bulk" in text
    # findings on lawful rows: rule alerts touching no scenario (the rules' false alerts),
    # and the store validated as dwatch run would, its gaps told apart
    rules = detectors["rules (all)"]
    lawful_rate = 10_000 * sum(result.lawful["rules_false_by_detector"].values())
    assert lawful_rate / max(result.params["events_loaded"], 1) <= rules["false_per_10k"] + 1e-9
    assert result.lawful["summary"].startswith("on lawful rows: silence gaps")
    for gap in result.lawful["coverage"]:
        assert 0 <= gap["on_lawful_rows"] <= gap["gaps"]
    assert result.lawful["summary"] in text


def test_false_by_detector_counts_alerts_touching_no_scenario() -> None:
    from dwatch.evaluate_lawful import false_by_detector

    assert false_by_detector(["a", "b", "a", "a"], [1, 2]) == {"a": 2}
    assert false_by_detector(["a", "b"], []) == {"a": 1, "b": 1}


def test_dwatch_evaluate_rejects_bad_options_cleanly() -> None:
    result = CliRunner().invoke(main, ["evaluate", "--events", "ten"])
    assert result.exit_code == 2 and "--events" in result.output


def test_false_examples_are_the_top_ml_alerts_touching_no_scenario() -> None:
    from dwatch.evaluate_lawful import entity_of, false_examples

    frame = pl.DataFrame(
        {
            "row_id": [0, 1, 2],
            "detector_id": ["d", "d", "d"],
            "score": [9.0, 7.0, 8.0],
            "threshold": [5.0, 5.0, 5.0],
            "event_keys": [["log\x1fe9"], ["log\x1fe1"], ["log\x1fe2"]],
            "actor_id": ["u1", "u2", "u3"],
        }
    )
    alerted = frame.with_columns(entity_of(frame))
    touch = _row_touches(alerted, LABELS)  # row 0 is the insider's: not an example
    examples = false_examples(alerted, touch, per_detector=1)
    assert examples == {
        "d": [{"score": 8.0, "threshold": 5.0, "entity": "actor_id=u3", "events": ["log:e2"]}]
    }
