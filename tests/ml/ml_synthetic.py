"""A small labelled synthetic store for the ML detector tests.

Legitimate traffic (built with numpy, no Python row loops): ten state agencies receive
small daily disclosures in business hours and one large month-end bulk; their users read
a few records a day each. In the last 30 days (the scoring window) four misuses are
injected, one per detector, and returned as labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import duckdb
import numpy as np
import polars as pl

START = datetime(2026, 1, 1, tzinfo=UTC)
DAYS = 120
SPLIT = START + timedelta(days=90)
END = START + timedelta(days=DAYS)
STATES = [f"ST{i:02d}-REV" for i in range(10)]
ZONE_OFFSET_H = 5  # the synthetic agencies keep hours 5 h behind UTC (their local clock)


@dataclass(frozen=True)
class Injected:
    insider: tuple[str, str, str]  # recipient, actor, local day
    off_hours_event: str
    spike: tuple[str, str, str]  # recipient, authority, day
    novel_recipient: str
    month_end_days: list[str]
    # (log, recipient, first day): a receipt log that stops recording one state's
    # disclosures, which the disclosure log goes on recording.
    silent_log: tuple[str, str, str] = ("", "", "")


def _business_ts(rng: np.random.Generator, days: np.ndarray) -> np.ndarray:
    hours = rng.integers(9, 17, days.size) + ZONE_OFFSET_H
    minutes = rng.integers(0, 60, days.size)
    base = np.datetime64(START.replace(tzinfo=None), "m")
    return (base + (days * 24 * 60 + hours * 60 + minutes).astype("timedelta64[m]")).astype(
        "datetime64[us]"
    )


def build_events(seed: int = 0) -> tuple[pl.DataFrame, Injected]:
    rng = np.random.default_rng(seed)
    day_idx = np.arange(DAYS)
    dates = np.datetime64(START.date()) + day_idx
    weekday = (dates.astype("datetime64[D]").view("int64") - 4) % 7  # 0 = Monday
    business = day_idx[weekday < 5]

    frames = []
    # Daily small disclosures to each state, business days, api or sftp.
    n = business.size * len(STATES) * 3
    d = np.repeat(business, len(STATES) * 3)
    st = np.tile(np.repeat(np.arange(len(STATES)), 3), business.size)
    frames.append(
        pl.DataFrame(
            {
                "day": d,
                "ts": _business_ts(rng, d),
                "event_type": "disclosure",
                "recipient_agency": np.array(STATES)[st],
                "actor_id": [f"irs.{i % 7}" for i in range(n)],
                "actor_role": "disclosure_specialist",
                "record_count": rng.integers(20, 200, n),
                "channel": rng.choice(["api", "sftp"], n),
                "data_elements": "name,address,tin,income",
            }
        )
    )
    # A little legitimate noise: late or weekend work, the odd paper or email disclosure.
    nn = 80
    nd = rng.integers(0, DAYS, nn)
    base = np.datetime64(START.replace(tzinfo=None), "m")
    noise_ts = base + (nd * 24 * 60 + rng.integers(0, 24 * 60, nn)).astype("timedelta64[m]")
    frames.append(
        pl.DataFrame(
            {
                "day": nd,
                "ts": noise_ts.astype("datetime64[us]"),
                "event_type": "disclosure",
                "recipient_agency": np.array(STATES)[rng.integers(0, len(STATES), nn)],
                "actor_id": "irs.9",
                "actor_role": "disclosure_specialist",
                "record_count": rng.integers(1, 50, nn),
                "channel": rng.choice(["api", "sftp", "email", "paper"], nn),
                "data_elements": "name,address,tin",
            }
        )
    )
    # Month-end bulk to every state: large, normal for that pair.
    month_ends = [
        i
        for i in business
        if (dates[i] + 5).astype("datetime64[M]") != dates[i].astype("datetime64[M]")
    ]
    bulk_days = []
    for m in sorted({str(dates[i].astype("datetime64[M]")) for i in month_ends}):
        bulk_days.append(max(i for i in month_ends if str(dates[i].astype("datetime64[M]")) == m))
    bd = np.repeat(np.array(bulk_days), len(STATES))
    nb = bd.size
    frames.append(
        pl.DataFrame(
            {
                "day": bd,
                "ts": _business_ts(rng, bd),
                "event_type": "disclosure",
                "recipient_agency": np.tile(np.array(STATES), len(bulk_days)),
                "actor_id": "irs.bulk",
                "actor_role": "data_services_analyst",
                "record_count": rng.integers(150_000, 250_000, nb),
                "channel": "secure_file_transfer",
                "data_elements": "name,address,tin,income,wages",
            }
        )
    )
    # Recipient users reading a few records each business day.
    users = [
        (s, f"{s.lower()}.u{u:02d}", "analyst" if u % 3 else "auditor")
        for s in STATES
        for u in range(20)
    ]
    per_day = 3
    na = business.size * len(users) * per_day
    ad = np.repeat(business, len(users) * per_day)
    ui = np.tile(np.repeat(np.arange(len(users)), per_day), business.size)
    frames.append(
        pl.DataFrame(
            {
                "day": ad,
                "ts": _business_ts(rng, ad),
                "event_type": "access",
                "recipient_agency": np.array([u[0] for u in users])[ui],
                "actor_id": np.array([u[1] for u in users])[ui],
                "actor_role": np.array([u[2] for u in users])[ui],
                "record_count": rng.integers(1, 4, na),
                "channel": "portal",
                "data_elements": "name,tin,income",
            }
        )
    )
    # --- injected misuse, all after SPLIT ---
    late = business[business >= 95]
    insider_day = int(late[3])
    insider_user = users[4]
    ni = 600
    frames.append(
        pl.DataFrame(
            {
                "day": np.full(ni, insider_day),
                "ts": _business_ts(rng, np.full(ni, insider_day)),
                "event_type": "access",
                "recipient_agency": insider_user[0],
                "actor_id": insider_user[1],
                "actor_role": insider_user[2],
                "record_count": rng.integers(20, 40, ni),
                "channel": "portal",
                "data_elements": "name,tin,income",
            }
        )
    )
    off_day = int(day_idx[(day_idx > 100) & (weekday == 6)][0])  # a Sunday
    off_ts = np.datetime64(START.replace(tzinfo=None), "m") + np.timedelta64(
        off_day * 24 * 60 + (3 + ZONE_OFFSET_H) * 60 + 7, "m"
    )
    off_ts = off_ts.astype("datetime64[us]")
    frames.append(
        pl.DataFrame(
            {
                "day": [off_day],
                "ts": np.array([off_ts]),
                "event_type": "disclosure",
                "recipient_agency": STATES[2],
                "actor_id": "irs.3",
                "actor_role": "disclosure_specialist",
                "record_count": [40_000],
                "channel": "removable_media",
                "data_elements": "name,address,tin,income,bank_account",
            }
        )
    )
    # A burst of individual disclosures (many times the pair's usual count) mid-month.
    spike_day = int(late[7])
    nspike = 60
    frames.append(
        pl.DataFrame(
            {
                "day": np.full(nspike, spike_day),
                "ts": _business_ts(rng, np.full(nspike, spike_day)),
                "event_type": "disclosure",
                "recipient_agency": STATES[5],
                "actor_id": "irs.1",
                "actor_role": "disclosure_specialist",
                "record_count": rng.integers(20, 200, nspike),
                "channel": "api",
                "data_elements": "name,address,tin,income",
            }
        )
    )
    novel_day = int(late[10])
    frames.append(
        pl.DataFrame(
            {
                "day": [novel_day],
                "ts": _business_ts(rng, np.array([novel_day])),
                "event_type": "disclosure",
                "recipient_agency": "NEW-AGENCY",
                "actor_id": "irs.2",
                "actor_role": "disclosure_specialist",
                "record_count": [150],
                "channel": "email",
                "data_elements": "name,address",
            }
        )
    )

    events = pl.concat(frames, how="vertical_relaxed")
    events = (
        events.with_row_index("seq", offset=1)
        .with_columns(
            pl.format("EV{}", pl.col("seq")).alias("event_id"),
            pl.lit("synthetic-ledger").alias("source_system"),
            pl.col("seq").cast(pl.Int64).alias("sequence_no"),
            pl.col("ts").dt.replace_time_zone("UTC").alias("occurred_at"),
            pl.lit("IRS").alias("disclosing_agency"),
            pl.when(pl.col("recipient_agency") == "NEW-AGENCY")
            .then(pl.lit("26 USC 6103(i)(2)"))
            .otherwise(pl.lit("26 USC 6103(d)"))
            .alias("authority_id"),
            pl.when(pl.col("recipient_agency") == "NEW-AGENCY")
            .then(pl.lit("civil_immigration_enforcement"))
            .otherwise(pl.lit("state_tax_administration"))
            .alias("purpose"),
            pl.col("data_elements").str.split(","),
            pl.when(pl.col("event_type") == "access")
            .then(pl.format("tp_{}", (pl.col("seq") * 7919) % 50_000))
            .otherwise(None)
            .alias("taxpayer_ref"),
        )
        .with_columns(pl.col("authority_id").alias("legal_authority"))
    )
    events, silent = _with_receipts(events, late)
    off_event = events.filter(pl.col("channel") == "removable_media")["event_id"][0]
    local = lambda i: str(np.datetime64(START.date()) + i)  # noqa: E731
    injected = Injected(
        insider=(insider_user[0], insider_user[1], local(insider_day)),
        off_hours_event=off_event,
        spike=(STATES[5], "26 USC 6103(d)", local(spike_day)),
        novel_recipient="NEW-AGENCY",
        month_end_days=[local(i) for i in bulk_days],
        silent_log=(RECEIPT_LOG, STATES[3], local(silent)),
    )
    return events.drop("day", "ts", "seq"), injected


RECEIPT_LOG = "state-receipts"


def _with_receipts(events: pl.DataFrame, late: np.ndarray) -> tuple[pl.DataFrame, int]:
    """Four states log a receipt 40 minutes after each small daily disclosure in a log of
    their own; one of them stops doing so for 6 business days after SPLIT (the injected
    silence) while the disclosure log goes on recording its disclosures."""
    silent = int(late[12])
    small = events.filter(
        pl.col("recipient_agency").is_in(STATES[:4])
        & pl.col("actor_id").str.contains(r"^irs\.[0-6]$")
        & (pl.col("event_type") == "disclosure")
    )
    stopped = (pl.col("recipient_agency") == STATES[3]) & pl.col("day").is_between(
        silent, int(late[18]), closed="left"
    )
    receipts = small.filter(~stopped).with_columns(
        pl.lit("receipt").alias("event_type"),
        pl.lit(RECEIPT_LOG).alias("source_system"),
        (pl.col("occurred_at") + pl.duration(minutes=40)).alias("occurred_at"),
        pl.format("RC{}", pl.col("seq")).alias("event_id"),
        pl.col("seq").cast(pl.Int64).alias("sequence_no"),
        pl.lit("intake").alias("actor_id"),
        pl.lit("recipient_service").alias("actor_role"),
    )
    return pl.concat([events, receipts], how="vertical_relaxed"), silent


def load_events(con: duckdb.DuckDBPyConnection, events: pl.DataFrame) -> None:
    con.register("_synthetic_events", events.to_arrow())
    con.execute("INSERT INTO disclosure_events BY NAME SELECT * FROM _synthetic_events")
    con.unregister("_synthetic_events")
