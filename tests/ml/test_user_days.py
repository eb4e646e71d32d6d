"""``ml.actor_peers``' user-days (detectors/ml/user_days.py) are exactly the plain query's:
distinct taxpayers and the most frequent role settled from the one grouping's sums, or
counted again for the days those cannot settle (a taxpayer read twice that day, several
roles, null roles and taxpayers), in agencies on either side of UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import numpy as np
import polars as pl
import pytest

from detectors.ml import features, user_days
from detectors.ml.days import on_days
from dwatch.store import connect

ZONES = {"AG-EAST": "America/New_York", "AG-TOKYO": "Asia/Tokyo", "AG-LA": "America/Los_Angeles"}
AGENCIES = [*ZONES, "AG-UTC"]
ROLES = ["analyst", "auditor", "supervisor", None]
START = datetime(2026, 3, 1, tzinfo=UTC)
KEY = ["recipient_agency", "actor_id", "day"]


def _plain(events_cte: str, again_from: str, again_where: str) -> str:
    """The user-days written plainly (the reference the one-pass query must equal)."""
    return f"""
    {events_cte},
    days AS (
        SELECT recipient_agency, actor_id, CAST(local_ts AS DATE) AS day,
               coalesce(mode(actor_role), '(none)') AS role,
               any_value(source_system) AS source_system,
               any_value(disclosing_agency) AS disclosing_agency,
               any_value(zone) AS zone,
               CAST(sum(record_count) AS BIGINT) AS records,
               count(DISTINCT taxpayer_ref) AS subjects,
               count(*) AS events,
               min(occurred_at) AS first_at, max(occurred_at) AS last_at,
               list(event_id ORDER BY occurred_at, event_id) AS event_ids
        FROM ev GROUP BY recipient_agency, actor_id, CAST(local_ts AS DATE)
    )"""


def _local_day(agency: str, at: datetime) -> object:
    return at.astimezone(ZoneInfo(ZONES.get(agency, "UTC"))).date()


def _events(seed: int, n: int = 1500) -> pl.DataFrame:
    """Access events of a few users over two weeks, each user reading from a small pool of
    taxpayers (so some read one twice a day) under mostly one role; a day's most frequent
    role is made unique (the plain query's mode picks any of a tie)."""
    rng = np.random.default_rng(seed)
    agency = rng.choice(AGENCIES, n)
    user = rng.integers(0, 4, n)
    at = [START + timedelta(minutes=int(m)) for m in rng.integers(0, 14 * 24 * 60, n)]
    usual = np.array(ROLES)[user % len(ROLES)]
    role = np.where(
        rng.random(n) < 0.8, usual, np.array(ROLES, dtype=object)[rng.integers(0, 4, n)]
    )
    pool = rng.integers(0, 40, n)
    taxpayer = [None if p == 0 else f"tp_{seed}_{a}_{p}" for a, p in zip(agency, pool, strict=True)]
    rows = {
        "event_id": [f"e{seed}-{i}" for i in range(n)],
        "source_system": rng.choice(["log-a", "log-b"], n).tolist(),
        "occurred_at": at,
        "event_type": np.where(rng.random(n) < 0.9, "access", "disclosure").tolist(),
        "disclosing_agency": ["IRS"] * n,
        "recipient_agency": agency.tolist(),
        "actor_id": [f"{a.lower()}.u{u}" for a, u in zip(agency, user, strict=True)],
        "actor_role": role.tolist(),
        "record_count": rng.integers(1, 5, n).tolist(),
        "taxpayer_ref": taxpayer,
        "data_elements": [["name"]] * n,
    }
    events = pl.DataFrame(rows, schema_overrides={"occurred_at": pl.Datetime("us", "UTC")})
    return _untied(events)


def _untied(events: pl.DataFrame) -> pl.DataFrame:
    """One more access event of a tied day's first role, so every day's mode is unique."""
    days = [
        _local_day(a, t)
        for a, t in zip(events["recipient_agency"], events["occurred_at"], strict=True)
    ]
    access = events.with_columns(pl.Series("local_day", days)).filter(
        (pl.col("event_type") == "access") & pl.col("actor_role").is_not_null()
    )
    counts = access.group_by(["actor_id", "local_day", "actor_role"]).agg(
        pl.len().alias("n"), pl.first("event_id").alias("like")
    )
    top = counts.group_by(["actor_id", "local_day"]).agg(pl.col("n").max().alias("top"))
    tied = (
        counts.join(top, on=["actor_id", "local_day"])
        .filter(pl.col("n") == pl.col("top"))
        .sort(["actor_id", "local_day", "actor_role"])
        .group_by(["actor_id", "local_day"], maintain_order=True)
        .agg(pl.len().alias("ways"), pl.first("like"))
        .filter(pl.col("ways") > 1)
    )
    extra = events.join(tied.select(pl.col("like").alias("event_id")), on="event_id")
    extra = extra.with_columns(pl.col("event_id") + "-untie")
    return pl.concat([events, extra])


@pytest.fixture(params=[1, 2, 3])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> duckdb.DuckDBPyConnection:
    con = connect(tmp_path / "user_days.duckdb")
    events = _events(request.param)
    con.register("_events", events.to_arrow())
    con.execute("INSERT INTO disclosure_events BY NAME SELECT * FROM _events")
    con.unregister("_events")
    features.prepare_zones(con, ZONES)
    return con


def _both(
    con: duckdb.DuckDBPyConnection, monkeypatch: pytest.MonkeyPatch
) -> tuple[pl.DataFrame, pl.DataFrame]:
    fast = features.actor_day_frame(con, event_types=["access"])
    with monkeypatch.context() as patched:
        patched.setattr(user_days, "user_days_ctes", _plain)
        plain = features.actor_day_frame(con, event_types=["access"])
    return fast.sort(KEY), plain.sort(KEY)


def test_user_days_equal_the_plain_query(
    store: duckdb.DuckDBPyConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast, plain = _both(store, monkeypatch)
    assert fast.columns == plain.columns
    assert fast.equals(plain)
    # The data reaches both ways of settling a day: days with a taxpayer read twice or
    # several roles (counted again), null taxpayers and roles, and plain days.
    assert (fast["subjects"] < fast["events"]).any()
    assert (fast["subjects"] == fast["events"]).any()
    assert (fast["role"] == "(none)").any()
    mixed = store.sql(
        "SELECT count(*) FROM (SELECT actor_id, CAST(occurred_at AS DATE) FROM disclosure_events"
        " WHERE event_type = 'access' GROUP BY ALL HAVING count(DISTINCT actor_role) > 1)"
    ).fetchall()[0][0]
    assert mixed > 0


def test_user_days_of_some_days_equal_the_plain_query(
    store: duckdb.DuckDBPyConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An increment's days (days.on_days, by agency) read the same user-days."""
    first = START.date()
    keys = [("AG-TOKYO", first + timedelta(days=3)), ("AG-EAST", first + timedelta(days=9))]
    with on_days([d for _, d in keys], by=features.ACTOR_DAY_PARTITION, keys=keys):
        fast, plain = _both(store, monkeypatch)
    assert fast.height > 0
    assert fast.equals(plain)


def test_a_day_counted_again_keeps_its_other_sums(
    store: duckdb.DuckDBPyConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reading one taxpayer twice changes the count of taxpayers, not of events or records."""
    fast, _ = _both(store, monkeypatch)
    day = fast.filter(pl.col("subjects") < pl.col("events")).row(0, named=True)
    direct = store.sql(
        "SELECT count(*), sum(record_count), count(DISTINCT taxpayer_ref) FROM disclosure_events"
        " WHERE event_type = 'access' AND list_contains($ids, event_id)",
        params={"ids": day["event_ids"]},
    ).fetchall()[0]
    assert direct == (day["events"], day["records"], day["subjects"])
