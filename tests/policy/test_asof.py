"""As-of semantics: Python answers and the engine's SQL views agree, day by day."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import duckdb

from detectors.engine import RuleCase, load_case, prepare
from dwatch.policy import load_registry, with_entries
from dwatch.policy.asof import (
    agreement_state_at,
    authority_in_force_at,
    order_binds_at,
    order_status_at,
)

BASE = load_registry()
ORDER = "dmass-25-cv-12822-pi"


def _history_registry():  # type: ignore[no-untyped-def]
    order = BASE.court_orders_by_id[ORDER].model_dump(by_alias=True)
    order["status_history"] = [
        {"status": "in_force", "from": "2026-02-05"},
        {"status": "stayed", "from": "2026-03-01"},
        {"status": "modified", "from": "2026-04-01"},
        {"status": "vacated", "from": "2026-05-15"},
    ]
    return with_entries(BASE, {"court_orders": [order]}, label="history")


def _at(day: str, hour: int = 12) -> datetime:
    return datetime.fromisoformat(day).replace(hour=hour, tzinfo=UTC)


def test_order_status_periods_in_python() -> None:
    registry = _history_registry()
    assert order_status_at(registry, ORDER, _at("2026-02-04")) is None
    assert order_binds_at(registry, ORDER, _at("2026-02-05", 0))  # from 00:00 UTC that day
    assert not order_binds_at(registry, ORDER, _at("2026-02-04", 23))
    assert not order_binds_at(registry, ORDER, _at("2026-03-10"))  # stayed
    assert order_binds_at(registry, ORDER, _at("2026-04-10"))  # modified still binds
    assert not order_binds_at(registry, ORDER, _at("2026-06-01"))  # vacated


def test_python_and_sql_agree_on_every_day(con: duckdb.DuckDBPyConnection) -> None:
    registry = _history_registry()
    start = datetime(2026, 1, 20, 15, tzinfo=UTC)
    days = [start + timedelta(days=d) for d in range(140)]
    events = [
        {"event_id": f"A{n}", "event_type": "access", "occurred_at": t.isoformat(),
         "recipient_agency": "DHS-ICE", "source_system": "ice-log", "sequence_no": n}
        for n, t in enumerate(days, start=1)
    ]  # fmt: skip
    load_case(con, RuleCase(name="days", alerts=0, events=events))
    prepare(con, registry)
    hit = {
        row[0]
        for row in con.execute(
            "SELECT event_id FROM dw_order_hits WHERE order_id = ?", [ORDER]
        ).fetchall()
    }
    for n, t in enumerate(days, start=1):
        assert (f"A{n}" in hit) == order_binds_at(registry, ORDER, t), t


def test_authority_and_agreement_validity() -> None:
    registry = with_entries(
        BASE,
        {
            "authorities": [
                {"id": "26 USC 6103(m)(9)", "title": "t", "effective_from": "2020-01-01",
                 "effective_to": "2025-01-01", "sources": [{"cite": "test"}]}
            ],
            "agreements": [
                {"id": "cma-1", "title": "t", "parties": ["IRS", "SSA"], "authorities": ["26 USC 6103(l)(1)"],
                 "effective_from": "2024-01-01", "effective_to": "2026-01-01", "sources": [{"cite": "t"}],
                 "status_history": [{"status": "in_force", "from": "2024-01-01"},
                                    {"status": "suspended", "from": "2025-03-01"},
                                    {"status": "in_force", "from": "2025-04-01"}]}
            ],
        },
    )  # fmt: skip
    assert authority_in_force_at(registry, "26 USC 6103(m)(9)", _at("2024-12-31", 23))
    assert not authority_in_force_at(registry, "26 USC 6103(m)(9)", _at("2025-01-01", 0))
    assert agreement_state_at(registry, "cma-1", _at("2023-12-31")) == "not_yet_in_effect"
    assert agreement_state_at(registry, "cma-1", _at("2025-03-15")) == "suspended"
    assert agreement_state_at(registry, "cma-1", _at("2025-04-15")) == "in_force"
    assert agreement_state_at(registry, "cma-1", _at("2026-01-01", 0)) == "expired"
    mou = "irs-dhs-ice-mou-2025-04-07"
    assert agreement_state_at(BASE, mou, _at("2025-06-02")) == "in_force"
    assert agreement_state_at(BASE, mou, _at("2025-12-02")) == "suspended_by:ddc-25-cv-00457-pi"
