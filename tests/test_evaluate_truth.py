"""`dwatch evaluate --truth`: the scorer counts right on a tiny hand-made labelled set."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from dwatch.cli import main
from dwatch.errors import InputError
from dwatch.evaluate_truth import ScoredAlert, average_precision, load_truth, score_truth
from dwatch.pseudonym import pseudonymise, resolve_key

EVENTS = [
    # source, id, type, label, instance, kind, chain
    ("logA", "1", "access", "lawful", "", "lawful", ""),
    ("logA", "2", "access", "lawful", "", "lawful", ""),
    ("logB", "1", "request", "violation", "X", "bulk", "R1"),
    ("logB", "2", "disclosure", "violation", "X", "bulk", "R1"),
    ("logB", "3", "receipt", "violation", "X", "bulk", "R1"),
    ("logA", "3", "access", "anomaly", "Y", "spike", ""),
    ("logA", "4", "access", "anomaly", "Z", "spike", ""),
    ("logA", "5", "disclosure", "violation", "W", "gap", ""),
]
INSTANCES = [
    {"instance_id": "X", "kind": "bulk", "family": "rule", "expected": ["rule_a", "rule_b"],
     "acceptable": ["rule_c"], "note": ""},
    {"instance_id": "Y", "kind": "spike", "family": "behaviour", "expected": ["ml.m"], "acceptable": [], "note": ""},
    {"instance_id": "Z", "kind": "spike", "family": "behaviour", "expected": ["ml.m"], "acceptable": [], "note": ""},
    {"instance_id": "W", "kind": "gap", "family": "rule", "expected": ["rule_w"], "acceptable": [], "note": ""},
]  # fmt: skip
TRUTH_TINS = ["900-70-0001", "900-70-0002", "900-70-0003"]

# detector, kind, source, event ids, evidence, score, subjects, status
ALERTS = [
    ("rule_a", "rule", "logB", ["1", "2", "3"], {}, None, 2, "open"),  # right, whole chain
    ("rule_b", "rule", "logB", ["2"], {}, None, None, "open"),  # right; the rest in alert_events
    ("rule_c", "rule", None, ["1"], {}, None, None, "open"),  # id in both logs: acceptable on X
    ("rule_d", "rule", "logA", [], {"events": [{"source_system": "logB", "event_id": "2"}]}, None, None,
     "open"),  # named only in evidence: context of X
    ("rule_e", "rule", "logA", ["2"], {}, None, None, "open"),  # false
    ("rule_f", "rule", "logA", ["999"], {}, None, None, "open"),  # unresolved
    ("ml.m", "model", "logA", ["3"], {}, 9.0, None, "open"),
    ("ml.m", "model", "logA", ["1"], {}, 8.0, None, "open"),  # false, ranked second
    ("ml.m", "model", "logA", ["4"], {}, 5.0, None, "open"),
    ("rule_w", "rule", "logA", ["5"], {}, None, None, "retracted"),  # retracted: W stays missed
    ("disclosure_without_valid_address", "rule", "logB", ["2"], {}, None, 4, "open"),
]  # fmt: skip


def _write_labels(root: Path, label: str = "lawful") -> Path:
    labels = root / "labels"
    labels.mkdir(parents=True)
    with (labels / "events.csv").open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(
            ["source_system", "event_id", "event_type", "label", "instance_id", "kind", "chain_id"]
        )
        rows = [list(e) for e in EVENTS]
        rows[0][3] = label
        out.writerows(rows)
    (labels / "instances.json").write_text(json.dumps(INSTANCES))
    with (labels / "subjects.csv").open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["truth_set", "taxpayer", "instance_id", "request_id"])
        out.writerows([["disclosed_without_usable_address", t, "X", "R1"] for t in TRUTH_TINS])
    return root


def _write_alerts(con: duckdb.DuckDBPyConnection, key: bytes) -> None:
    for n, (det, kind, source, ids, evidence, score, subjects, status) in enumerate(ALERTS):
        con.execute(
            "INSERT INTO alerts (alert_id, detector_id, detector_kind, detector_version, severity, score,"
            " entity_type, entity_id, source_system, event_ids, subjects_affected, evidence, explanation,"
            " status) VALUES (?, ?, ?, '1', 'high', ?, 'event', 'e', ?, ?, ?, ?, 'x', ?)",
            [f"al_{n}", det, kind, score, source, ids, subjects, json.dumps(evidence), status],
        )
    # rule_b's alert names the rest of its chain with each event's log
    con.execute(
        "CREATE TABLE IF NOT EXISTS alert_events (alert_id VARCHAR NOT NULL, source_system VARCHAR NOT NULL,"
        " event_id VARCHAR NOT NULL, event_type VARCHAR, request_id VARCHAR, role VARCHAR NOT NULL)"
    )
    con.executemany(
        "INSERT INTO alert_events VALUES ('al_1', 'logB', ?, ?, 'R1', 'chain')",
        [["1", "request"], ["3", "receipt"]],
    )
    # alert_subjects is migration 0012's table
    stored = [pseudonymise(TRUTH_TINS[0], key), pseudonymise(TRUTH_TINS[1], key), "tp_not_in_truth"]
    con.executemany(
        "INSERT INTO alert_subjects (alert_id, taxpayer_ref, reason) VALUES ('al_10', ?, 'test')",
        [[s] for s in stored],
    )


def test_scorer_counts_a_hand_made_set(tmp_path: Path, con: duckdb.DuckDBPyConnection) -> None:
    key = resolve_key()
    _write_alerts(con, key)
    report = score_truth(con, load_truth(_write_labels(tmp_path / "set")), key=key)
    by = {d.detector_id: d for d in report.detectors}

    assert report.lawful_events == 2 and report.labelled_events == 8
    assert (by["rule_a"].right, by["rule_a"].recall, by["rule_a"].event_recall) == (1, 1.0, 1.0)
    assert (by["rule_b"].right, by["rule_b"].event_recall) == (1, 1.0)  # through alert_events
    assert by["rule_c"].right == 1  # the bare id "1" reaches logB's request too
    assert (by["rule_d"].context, by["rule_d"].right) == (1, 0)
    assert (by["rule_e"].false, by["rule_f"].unresolved) == (1, 1)
    assert (by["ml.m"].alerts, by["ml.m"].right, by["ml.m"].false) == (3, 2, 1)
    assert by["ml.m"].precision == pytest.approx(2 / 3) and by["ml.m"].recall == 1.0
    assert (by["rule_w"].expected_instances, by["rule_w"].found_instances) == (1, 0)
    assert [i["instance_id"] for i in report.instances if not i["found"]] == ["W"]

    assert report.false_alerts == 3  # rule_e, rule_f (unresolved), ml.m on a lawful event
    assert report.false_per_10k == pytest.approx(15_000.0)
    assert report.lawful_touched == 2

    (pr,) = [p for p in report.pr_auc if p["kind"] == "spike"]
    assert pr["pr_auc"] == pytest.approx((1 + 2 / 3) / 2)

    (subjects,) = report.subjects
    assert (subjects["truth"], subjects["reported_sum"]) == (3, 4)
    assert (subjects["distinct"], subjects["missing"], subjects["extra"]) == (3, 1, 1)

    # rule_a and (through alert_events) rule_b name R1's request, disclosure and receipt
    assert (report.chains["judged"], report.chains["whole"]) == (3, 2)
    assert report.chains["partial_by_detector"] == {"rule_c": 1}


def test_average_precision_counts_unreached_instances_as_missing_recall() -> None:
    assert average_precision([], {"A"}) == 0.0


def _scored(alert_id: str, score: float, instances: set[str]) -> ScoredAlert:
    verdict = "right" if instances else "false"
    return ScoredAlert(alert_id, "ml.m", "model", score, None, None, set(), verdict, instances)


def test_average_precision_ranks_against_lawful_alerts_only() -> None:
    """Another injected instance's alert ranked first is left out, not a false positive;
    an alert on lawful events only still is one."""
    ranked = [
        _scored("other", 9.0, {"insider"}),
        _scored("spike", 8.0, {"Y"}),
        _scored("lawful", 7.0, set()),
        _scored("both", 6.0, {"Z", "insider"}),
    ]
    assert average_precision(ranked, {"Y", "Z"}) == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision(ranked[1:], {"Y", "Z"}) == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision(ranked, {"insider"}) == pytest.approx(1.0)


def test_cli_scores_the_store(
    tmp_path: Path, db_path: Path, con: duckdb.DuckDBPyConnection
) -> None:
    _write_alerts(con, resolve_key())
    con.close()
    labels = _write_labels(tmp_path / "set")
    out = tmp_path / "score.json"
    result = CliRunner().invoke(
        main, ["--db", str(db_path), "evaluate", "--truth", str(labels), "--json", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "injected instances found 3/4" in result.output
    assert "rule_w" in result.output.split("missed")[1]
    assert json.loads(out.read_text())["false_alerts"] == 3


def test_a_bad_label_names_file_row_and_fix(tmp_path: Path) -> None:
    with pytest.raises(InputError) as err:
        load_truth(_write_labels(tmp_path / "set", label="maybe"))
    assert "events.csv:2: label" in str(err.value) and "lawful, violation, anomaly" in str(
        err.value
    )


def test_a_labelled_id_carrying_a_tin_shape_matches_the_stored_pseudonym(
    tmp_path: Path, con: duckdb.DuckDBPyConnection
) -> None:
    """Ingest stores an id with nine SSA-issuable digits as the keyed pseudonym of the whole
    id (dwatch.masking); the labels name it raw, and must still reach the alert."""
    from dwatch.masking import pseudonymise_id

    key = resolve_key()
    raw = "RX-587877937f"
    stored = pseudonymise_id(raw, key)
    assert stored and stored != raw
    root = tmp_path / "set"
    labels = root / "labels"
    labels.mkdir(parents=True)
    with (labels / "events.csv").open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["source_system", "event_id", "label", "instance_id", "kind"])
        out.writerow(["logA", raw, "violation", "V", "gap"])
        out.writerow(["logA", "plain-1", "lawful", "", "lawful"])
    (labels / "instances.json").write_text(
        json.dumps(
            [
                {
                    "instance_id": "V",
                    "kind": "gap",
                    "family": "rule",
                    "expected": ["rule_v"],
                    "acceptable": [],
                    "note": "",
                }
            ]
        )
    )
    con.execute(
        "INSERT INTO alerts (alert_id, detector_id, detector_kind, detector_version, severity,"
        " entity_type, entity_id, source_system, event_ids, evidence, explanation, status)"
        " VALUES ('al_v', 'rule_v', 'rule', '1', 'high', 'event', 'e', 'logA', ?, '{}', 'x', 'open')",
        [[stored]],
    )
    [right] = [d for d in score_truth(con, load_truth(root, key=key), key=key).detectors]
    assert (right.detector_id, right.right, right.false) == ("rule_v", 1, 0)
    [unmatched] = score_truth(con, load_truth(root), key=key).detectors
    assert unmatched.right == 0  # without the key the raw label cannot meet the stored id


def test_pr_auc_leaves_out_alerts_on_other_injected_cases(
    tmp_path: Path, con: duckdb.DuckDBPyConnection
) -> None:
    """An ml.m alert on the bulk case X ranks first; it is neither a spike hit nor a false
    alarm, so the spike's PR-AUC is what it is without it (as dwatch.evaluate does)."""
    key = resolve_key()
    _write_alerts(con, key)
    con.execute(
        "INSERT INTO alerts (alert_id, detector_id, detector_kind, detector_version, severity, score,"
        " entity_type, entity_id, source_system, event_ids, evidence, explanation, status)"
        " VALUES ('al_x', 'ml.m', 'model', '1', 'high', 99.0, 'event', 'e', 'logB', ['2'], '{}',"
        " 'x', 'open')"
    )
    report = score_truth(con, load_truth(_write_labels(tmp_path / "set")), key=key)
    (pr,) = [p for p in report.pr_auc if p["kind"] == "spike"]
    assert pr["pr_auc"] == pytest.approx((1 + 2 / 3) / 2)
    assert (pr["alerts"], pr["other_cases_left_out"]) == (4, 1)
    by = {d.detector_id: d for d in report.detectors}
    assert by["ml.m"].context == 1  # still counted where it belongs
    assert report.detector_false_per_10k(by["ml.m"]) == pytest.approx(5_000.0)  # 1 of 2 lawful


def _event(con: duckdb.DuckDBPyConnection, source: str, event_id: str, at: str) -> None:
    con.execute(
        "INSERT INTO disclosure_events (event_id, source_system, occurred_at, event_type,"
        " disclosing_agency, recipient_agency, actor_id, data_elements, record_count)"
        " VALUES (?, ?, ?::TIMESTAMPTZ, 'access', 'IRS', 'X', 'a', ['name'], 1)",
        [event_id, source, at],
    )


def _failed_check(
    con: duckdb.DuckDBPyConnection, source: str, check: str, lo: str, hi: str
) -> None:
    con.execute(
        "INSERT INTO validation_results (validation_run_id, ingest_run_id, source_system, suite,"
        " expectation, scope, success, window_start, window_end)"
        " VALUES ('v1', 'b-' || ?, ?, 's', ?, 'batch', false, ?::TIMESTAMPTZ, ?::TIMESTAMPTZ)",
        [source + check, source, check, lo, hi],
    )


def test_coverage_gaps_on_lawful_rows_are_told_apart_from_injected_ones(
    tmp_path: Path, con: duckdb.DuckDBPyConnection
) -> None:
    """A silence between two lawful rows is on lawful rows (the target counts it); a
    sequence gap whose window holds an injected event is explained by it."""
    _event(con, "logA", "1", "2026-01-01 10:00+00")
    _event(con, "logA", "2", "2026-01-20 10:00+00")
    _event(con, "logA", "5", "2026-02-01 10:00+00")  # W, a violation
    _failed_check(
        con,
        "logA",
        "expect_source_not_silent(occurred_at)",
        "2026-01-01 10:00+00",
        "2026-01-20 10:00+00",
    )
    _failed_check(con, "logA", "sequence_gap", "2026-01-31 00:00+00", "2026-02-02 00:00+00")
    report = score_truth(con, load_truth(_write_labels(tmp_path / "set")))
    by = {g["expectation"].split("(")[0]: g for g in report.coverage}
    assert (
        by["expect_source_not_silent"]["gaps"],
        by["expect_source_not_silent"]["on_lawful_rows"],
    ) == (1, 1)
    assert (by["sequence_gap"]["gaps"], by["sequence_gap"]["on_lawful_rows"]) == (1, 0)
    assert report.on_lawful.startswith("on lawful rows: silence gaps 1 (logA x1)")
    assert "silence gaps 1 (logA x1)" in report.render()
