"""``ml.first_seen_combination`` ranks a new combination by what covered its first contact.

A lawful first contact answers the recipient's own earlier request, or follows an agreement
for the pair and authority that took effect shortly before; an injected new recipient has
neither and must rank above both (issue 14: on the generator, lawful case-by-case
recipients first seen in the scored half tied with the injected one).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import polars as pl
import pytest

from detectors.ml import features
from detectors.ml.base import ModelContext
from detectors.ml.detectors import DETECTORS
from detectors.ml.registry import load_config
from dwatch.store import connect

DET = "ml.first_seen_combination"
START = datetime(2025, 1, 1, tzinfo=UTC)
SPLIT = datetime(2025, 4, 1, tzinfo=UTC)
END = datetime(2025, 7, 1, tzinfo=UTC)
SFT = "secure_file_transfer"


def _event(n: int, at: datetime, recipient: str, authority: str, **extra: Any) -> dict[str, Any]:
    return {
        "event_id": f"E{n:04d}",
        "source_system": "ledger",
        "sequence_no": n,
        "occurred_at": at,
        "event_type": "disclosure",
        "disclosing_agency": "SENDER",
        "recipient_agency": recipient,
        "actor_id": "clerk",
        "request_id": None,
        "legal_authority": authority,
        "authority_id": authority,
        "purpose": "tax_administration",
        "record_count": 10,
        "taxpayer_ref": f"T{n}",
        "channel": SFT,
        "data_elements": ["name"],
        **extra,
    }


def _events() -> list[dict[str, Any]]:
    rows = []
    # A known flow on every training day and on into the scored window.
    for d in range((END - START).days):
        rows.append(_event(len(rows), START + timedelta(days=d, hours=14), "KNOWN", "AUTH-BULK"))
    at = SPLIT + timedelta(days=30, hours=15)

    def add(**kw: Any) -> None:
        rows.append(_event(len(rows), **kw))

    # Answers its own request, logged two weeks before.
    add(at=at - timedelta(days=14), recipient="ASKER", authority="AUTH-CASE",
        event_type="request", request_id="Q-1")  # fmt: skip
    add(at=at, recipient="ASKER", authority="AUTH-CASE", request_id="Q-1")
    # Another agency's request with the same number does not stand for this one.
    add(at=at - timedelta(days=10), recipient="OTHER", authority="AUTH-CASE",
        event_type="request", request_id="Q-9")  # fmt: skip
    add(at=at, recipient="BORROWER", authority="AUTH-CASE", request_id="Q-9")
    # An agreement for the pair and authority took effect three weeks before.
    add(at=at, recipient="NEWPARTNER", authority="AUTH-BULK")
    # An agreement in force for years: it is not why a first contact happens now.
    add(at=at, recipient="OLDPARTNER", authority="AUTH-BULK")
    # No request, no agreement: the injected kind.
    add(at=at, recipient="STRANGER", authority="AUTH-BULK", request_id="STRANGER-1")
    return rows


def _agreement(agreement_id: str, party: str, effective: datetime) -> dict[str, Any]:
    return {
        "agreement_id": agreement_id,
        "kind": "data_sharing_agreement",
        "parties": ["SENDER", party],
        "authorities": ["AUTH-BULK"],
        "effective_from": effective,
        "effective_to": effective + timedelta(days=5 * 365),
        "suspended_by_orders": [],
    }


@pytest.fixture
def store(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    con = connect(tmp_path / "fc.duckdb")
    events = pl.DataFrame(_events(), infer_schema_length=None)
    con.register("_ev", events.to_arrow())
    con.execute("INSERT INTO disclosure_events BY NAME SELECT * FROM _ev")
    at = SPLIT + timedelta(days=30)
    agreements = pl.DataFrame(
        [
            _agreement("AG-NEW", "NEWPARTNER", at - timedelta(days=21)),
            _agreement("AG-OLD", "OLDPARTNER", at - timedelta(days=3 * 365)),
        ]
    )
    con.register("_ag", agreements.to_arrow())
    con.execute("INSERT INTO registry_agreements BY NAME SELECT * FROM _ag")
    yield con
    con.close()


def _scored(con: duckdb.DuckDBPyConnection) -> tuple[dict[str, float], float, Any, Any]:
    config = load_config()
    features.prepare_zones(con, config.time_zones)
    det = DETECTORS[DET](config.detectors[DET])
    model = det.fit(det.training_frame(con, START, SPLIT))
    frame = det.scoring_frame(con, SPLIT, END)
    scores = det.anomaly_scores(model, frame)
    threshold = -float(model[-1].offset_)
    by = dict(zip(frame["recipient_agency"].to_list(), scores.tolist(), strict=True))
    return by, threshold, (det, model), (frame, scores)


def test_covered_first_contacts_rank_below_an_uncovered_one_and_still_alert(
    store: duckdb.DuckDBPyConnection,
) -> None:
    by, threshold, _, _ = _scored(store)
    margin = 0.05  # the tie-breaker alone moves scores by under 0.01
    stranger = by["STRANGER"]
    assert stranger >= by["ASKER"] + margin
    assert stranger >= by["NEWPARTNER"] + margin
    # Cover has to be the recipient's own request, and an agreement that is new.
    assert abs(stranger - by["BORROWER"]) < 0.01
    assert abs(stranger - by["OLDPARTNER"]) < 0.01
    # Novelty is not forgotten: every new combination still alerts; the known flow does not.
    for name in ("STRANGER", "ASKER", "NEWPARTNER", "BORROWER", "OLDPARTNER"):
        assert by[name] >= threshold, name
    assert by["KNOWN"] < threshold


def test_a_suspended_agreement_is_no_cover(store: duckdb.DuckDBPyConnection) -> None:
    at = SPLIT + timedelta(days=30)
    store.execute(
        "INSERT INTO registry_agreement_status VALUES ('AG-NEW', 'suspended', ?, NULL, 'test')",
        [at - timedelta(days=7)],
    )
    by, _, _, _ = _scored(store)
    assert abs(by["STRANGER"] - by["NEWPARTNER"]) < 0.01


def test_the_explanation_says_what_made_the_contact_surprising(
    store: duckdb.DuckDBPyConnection,
) -> None:
    _, threshold, (det, model), (frame, scores) = _scored(store)
    flagged = scores >= threshold
    rows = frame.filter(pl.Series(flagged))
    ctx = ModelContext("v", threshold, None, START, SPLIT, {})
    texts, evidence = det.explain(rows, np.asarray(scores[flagged]), model, ctx)
    said = dict(zip(rows["recipient_agency"].to_list(), texts, strict=True))
    stranger = said["STRANGER"]
    assert "Uncovered first contact" in stranger
    assert "no agreement effective for this pair under AUTH-BULK" in stranger
    assert "no transfer answered a request from STRANGER" in stranger
    assert "Covered first contact" in said["ASKER"]
    assert "answered a request ASKER logged before them" in said["ASKER"]
    assert "agreement AG-NEW for AUTH-BULK took effect 2025-04-10" in said["NEWPARTNER"]
    ev = dict(zip(rows["recipient_agency"].to_list(), evidence, strict=True))
    assert ev["NEWPARTNER"]["cover_agreement"] == "AG-NEW"
    assert ev["NEWPARTNER"]["cover_effective_from"] == "2025-04-10"
    assert ev["STRANGER"]["answered_requests"] == 0
