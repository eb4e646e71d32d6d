"""A partitioned detector's feature query run a group of partitions at a time (when the
window's events outgrow DuckDB's share) gives the rows, the model and the alerts of the
query run whole: the 100M training ran out of memory on the whole query's distinct
counts, which DuckDB cannot spill."""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path

import duckdb
import polars as pl
import pytest
import skops.io as sio
from ml_synthetic import END, SPLIT, START, Injected

from detectors.ml import features, partitions, run
from detectors.ml.detectors import ActorPeers
from detectors.ml.registry import ModelRecord, latest_models, load_config

Store = tuple[duckdb.DuckDBPyConnection, Injected, Path]
DETECTOR = ActorPeers.detector_id


def _types() -> list[str]:
    return list(ActorPeers(load_config().detectors[DETECTOR]).event_types)


def _counts(con: duckdb.DuckDBPyConnection) -> dict[str | None, int]:
    rows = con.execute(
        "SELECT recipient_agency, count(*) FROM disclosure_events"
        " WHERE event_type IN (SELECT unnest($t::VARCHAR[])) GROUP BY 1",
        {"t": _types()},
    ).fetchall()
    return dict(rows)


def test_groups_hold_every_partition_once_in_order_and_within_the_cap(ml_store: Store) -> None:
    con = ml_store[0]
    counts = _counts(con)
    assert len(counts) >= 3
    total = sum(counts.values())
    assert partitions.groups(con, "recipient_agency", _types(), None, None, total) is None
    cap = max(counts.values())
    found = partitions.groups(con, "recipient_agency", _types(), None, None, cap)
    assert found is not None and len(found) >= 2
    flat = [v for g in found for v in g]
    assert flat == sorted(counts, key=lambda v: (v is not None, v))
    assert all(sum(counts[v] for v in g) <= cap for g in found)
    # A partition larger than the cap forms a group alone.
    tiny = partitions.groups(con, "recipient_agency", _types(), None, None, 1)
    assert tiny is not None and [len(g) for g in tiny] == [1] * len(counts)


def test_the_query_reads_only_the_groups_partitions(ml_store: Store) -> None:
    con = ml_store[0]
    config = load_config()
    features.prepare_zones(con, config.time_zones)
    det = ActorPeers(config.detectors[DETECTOR])
    whole = det.scoring_frame(con, START, END)
    parts = []
    for value in sorted(_counts(con), key=lambda v: (v is not None, v)):
        with partitions.only("recipient_agency", [value]):
            part = det.scoring_frame(con, START, END)
        assert set(part["recipient_agency"].to_list()) <= {value}
        parts.append(part)
    keys = list(det.key_columns)
    got = pl.concat(parts).sort(keys)
    assert got.height == whole.height > 0
    assert got.drop("event_ids").equals(whole.sort(keys).drop("event_ids"))


def _train_and_score(
    con: duckdb.DuckDBPyConnection, models: Path
) -> tuple[ModelRecord, pl.DataFrame]:
    config = load_config()
    only = {d: dataclasses.replace(s, enabled=d == DETECTOR) for d, s in config.detectors.items()}
    config = dataclasses.replace(config, detectors=only)
    results = run.train_models(
        con, window_from=START, window_to=SPLIT, models_dir=models, config=config
    )
    assert [r.status for r in results] == ["trained"]
    record = latest_models(con)[DETECTOR]
    run.score_models(
        con,
        run_id="r",
        models_dir=models,
        window_from=START,
        window_to=END,
        config=config,
    )
    alerts = con.sql(
        "SELECT alert_id, score, entity_id, window_start, event_count, evidence, explanation"
        " FROM alerts ORDER BY alert_id"
    ).pl()
    return record, alerts


def test_training_and_scoring_by_groups_equal_the_whole_query(
    ml_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    con, _, models = ml_store
    whole_record, whole_alerts = _train_and_score(con, models / "whole")
    con.execute("DELETE FROM alert_events; DELETE FROM alert_subjects; DELETE FROM alerts")
    cap = max(_counts(con).values())
    calls: list[int] = []
    real = partitions.groups

    def spy(*args: object, **kwargs: object) -> list[tuple[str | None, ...]] | None:
        found = real(*args, **{**kwargs, "cap": cap})  # type: ignore[arg-type]
        calls.append(len(found or []))
        return found

    monkeypatch.setattr(partitions, "groups", spy)
    grouped_record, grouped_alerts = _train_and_score(con, models / "grouped")
    assert calls and all(n >= 2 for n in calls)
    a, b = whole_record, grouped_record
    assert (a.threshold, a.training_rows, a.training_data_sha256) == (
        b.threshold,
        b.training_rows,
        b.training_data_sha256,
    )
    assert a.metadata == b.metadata
    fitted = [sio.load(r.path, trusted=sio.get_untrusted_types(file=r.path))[-1] for r in (a, b)]
    learned = [{k: v for k, v in vars(m).items() if k.endswith("_")} for m in fitted]
    assert learned[0] and pickle.dumps(learned[0]) == pickle.dumps(learned[1])
    assert whole_alerts.height > 0
    # The model's version (its time of training) is the one thing the two runs differ in.
    unversioned = [
        a.with_columns(pl.col("evidence").str.replace(r'"model_version": "[^"]*"', ""))
        for a in (whole_alerts, grouped_alerts)
    ]
    assert unversioned[1].equals(unversioned[0])


def test_a_feature_query_out_of_memory_says_to_raise_the_budget() -> None:
    oom = features._query_error(duckdb.OutOfMemoryException("could not allocate block"))
    assert oom.fix and "DWATCH_MEMORY" in oom.fix and "ingest" not in oom.fix
    other = features._query_error(duckdb.CatalogException("no table disclosure_events"))
    assert other.fix and "dwatch ingest" in other.fix
