"""Agency time zones come from the policy registry, for codes written any way."""

from __future__ import annotations

from pathlib import Path

from detectors.engine import RuleCase, load_case
from detectors.ml.features import prepare_zones
from dwatch.policy import load_registry, sync_registry
from dwatch.store import connect


def test_registry_zones_reach_agencies_written_with_an_alias(tmp_path: Path) -> None:
    con = connect(tmp_path / "zones.duckdb")
    try:
        case = RuleCase(
            name="zones",
            alerts=0,
            events=[{"event_id": "E1", "recipient_agency": "US ICE"}, {"event_id": "E2"}],
        )
        load_case(con, case)
        sync_registry(con, load_registry())
        # the operator's configuration is only a fallback: the registry wins
        prepare_zones(con, {"CA-FTB": "UTC", "ZZ-UNLISTED": "America/Chicago"})
        zones = dict(con.execute("SELECT agency, tz FROM _ml_agency_zone").fetchall())
    finally:
        con.close()
    assert zones["US ICE"] == "America/New_York"
    assert zones["CA-FTB"] == "America/Los_Angeles"
    assert zones["ZZ-UNLISTED"] == "America/Chicago"
