"""Feature frames for the ML detectors, aggregated in DuckDB and handed over as Arrow.

Each function runs one SQL query over ``disclosure_events`` for a time window and returns
a polars DataFrame (zero-copy from Arrow). The models never see the store; the alert
adapter never loops over rows in Python.

Local time: hours and weekdays are read in the acting agency's own time zone. The zone of
an agency comes, in order, from the policy registry (a ``timezone``/``time_zone`` column on
a ``registry_*`` table keyed by agency code, when the registry carries one), from the
source mapping of the log that recorded the event (``schemas/sources/*.yaml``), from the
ML configuration's ``time_zones`` (operator-supplied, data), and else UTC. Because zones
can be unknown, the transfer model also learns each agency's own hour profile in UTC.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import duckdb
import polars as pl

from detectors.ml import days, partitions, spellings
from dwatch.errors import StoreError

_ZONE_TABLE = "_ml_agency_zone"
# 7-day sums at the edges of a window read this many days before and after it.
WINDOW_LOOKBACK_DAYS = 6
_SOURCE_ZONE_TABLE = "_ml_source_zone"


@dataclass(frozen=True)
class FeatureQuery:
    """A feature frame's SQL and parameters, built but not run (see :func:`planned`)."""

    sql: str
    params: dict[str, Any]


# Set inside planned(): feature functions record their query here instead of running it.
_PLAN: ContextVar[list[FeatureQuery] | None] = ContextVar("_PLAN", default=None)


@contextmanager
def planned() -> Iterator[list[FeatureQuery]]:
    """Within the block, feature functions build their query and return an empty frame
    instead of running it; the list receives the queries. Scoring reads a detector's
    ``scoring_frame`` this way and streams the very same query with :func:`batches`."""
    queries: list[FeatureQuery] = []
    token = _PLAN.set(queries)
    try:
        yield queries
    finally:
        _PLAN.reset(token)


def _query_error(exc: duckdb.Error) -> StoreError:
    if isinstance(exc, duckdb.OutOfMemoryException):
        fix = (
            "the query outgrew DuckDB's share of DWATCH_MEMORY: raise DWATCH_MEMORY, or"
            " train on a shorter window (--from/--to; training_days in the ML config)"
        )
    else:
        fix = "run `dwatch ingest` first, and check the store was migrated (dwatch.store.connect)"
    return StoreError(f"ML feature query failed: {exc}", where="disclosure_events", fix=fix)


def _frame(con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any]) -> pl.DataFrame:
    plan = _PLAN.get()
    if plan is not None:
        plan.append(FeatureQuery(sql, params))
        return pl.DataFrame()
    try:
        table = con.sql(sql, params=params).to_arrow_table()
    except duckdb.Error as exc:
        raise _query_error(exc) from exc
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame


def run_query(con: duckdb.DuckDBPyConnection, query: FeatureQuery) -> pl.DataFrame:
    """The query's rows as one frame."""
    return _frame(con, query.sql, query.params)


def batches(
    con: duckdb.DuckDBPyConnection, query: FeatureQuery, rows: int
) -> Iterator[pl.DataFrame]:
    """The query's rows in frames of at most ``rows`` rows, streamed from DuckDB (the whole
    result is never held in Python); at least one frame, empty when there are no rows.
    Run no other query on ``con`` until the iterator is exhausted."""
    try:
        reader = con.sql(query.sql, params=query.params).to_arrow_reader(rows)
    except duckdb.Error as exc:
        raise _query_error(exc) from exc
    sent = False
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            break
        except duckdb.Error as exc:
            raise _query_error(exc) from exc
        frame = pl.from_arrow(batch)
        assert isinstance(frame, pl.DataFrame)
        if frame.height:
            sent = True
            yield frame
    if not sent:
        empty = pl.from_arrow(reader.schema.empty_table())
        assert isinstance(empty, pl.DataFrame)
        yield empty


def narrowed(query: FeatureQuery, columns: Sequence[str]) -> FeatureQuery:
    """The query with only ``columns``: DuckDB then never builds the others (the text,
    local times and lists only explanations read)."""
    listed = ", ".join(f'"{c}"' for c in columns)
    return FeatureQuery(f"SELECT {listed} FROM ({query.sql}) AS framed", query.params)


def locate(query: FeatureQuery, column: str, rows: Sequence[int]) -> FeatureQuery:
    """The query's rows whose ``column`` (a row locator such as ``event_row``) is one of
    ``rows``. A query taking ``$located`` (the store rows to read, None: all) is given
    them too, so it reads and builds only those rows (the transfer frame when scoring)."""
    params = {**query.params, "_located": list(rows)}
    if "located" in query.params:
        params["located"] = list(rows)
    return FeatureQuery(
        f'SELECT * FROM ({query.sql}) AS framed WHERE "{column}" IN'
        " (SELECT unnest($_located::BIGINT[]))",
        params,
    )


_RESOLUTION = "registry_recipient_resolution"


def _registry_zones(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
    """(agency code, zone) pairs from any registry table that carries a zone per agency."""
    rows = con.execute(
        """
        SELECT table_name, list(column_name) FROM information_schema.columns
        WHERE table_name LIKE 'registry_%' GROUP BY table_name
        """
    ).fetchall()
    zones: list[tuple[str, str]] = []
    for table, columns in rows:
        zone_col = next((c for c in ("timezone", "time_zone", "tz") if c in columns), None)
        # "agency" first: the recipient resolution view maps each code as the logs write it
        # ("US ICE") to the registry recipient's zone, so aliases find their agency's zone.
        code_col = next(
            (c for c in ("agency", "code", "agency_code", "recipient_code") if c in columns), None
        )
        if table == _RESOLUTION:
            # Every spelling the events hold, resolved: from the kept spellings when they
            # stand for the events (the view reads every event twice).
            kept = spellings.resolved_zones(con)
            if kept is not None:
                zones += kept
                continue
        if zone_col and code_col:
            zones += con.execute(
                f'SELECT upper("{code_col}"), "{zone_col}" FROM "{table}"'
                f' WHERE "{zone_col}" IS NOT NULL AND "{code_col}" IS NOT NULL'
            ).fetchall()
    return zones


def _mapping_zones() -> list[tuple[str, str]]:
    """(source_system, zone) from the source mappings that name a zone."""
    try:
        from dwatch.mapping import available_mappings
    except ImportError:  # the mapping module is optional for the ML detectors
        return []
    out = []
    for name, mapping in available_mappings().items():
        if mapping.timezone:
            out.append((mapping.source_system or name, mapping.timezone))
    return out


def prepare_zones(con: duckdb.DuckDBPyConnection, configured: dict[str, str] | None = None) -> None:
    """Create the temporary zone lookups the feature queries join against."""
    agency = {code.upper(): tz for code, tz in (configured or {}).items()}
    # The registry is the authority on agencies: it wins over the operator's config.
    agency.update(dict(_registry_zones(con)))
    con.execute(f"CREATE OR REPLACE TEMP TABLE {_ZONE_TABLE} (agency VARCHAR, tz VARCHAR)")
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {_SOURCE_ZONE_TABLE} (source_system VARCHAR, tz VARCHAR)"
    )
    if agency:
        con.executemany(f"INSERT INTO {_ZONE_TABLE} VALUES (?, ?)", list(agency.items()))
    sources = _mapping_zones()
    if sources:
        con.executemany(f"INSERT INTO {_SOURCE_ZONE_TABLE} VALUES (?, ?)", sources)


# In a query that reads $located (see locate()): only the events of those store rows.
_LOCATED = "AND ($located::BIGINT[] IS NULL OR e.rowid IN (SELECT unnest($located::BIGINT[])))"


def _events_where(acting_agency: str, by: str | None = None, located: bool = False) -> str:
    """The events of the chosen types in [from, to) (``e``: disclosure_events)."""
    return f"""
        WHERE e.event_type IN (SELECT unnest($event_types::VARCHAR[]))
          AND ($from::TIMESTAMPTZ IS NULL OR e.occurred_at >= $from::TIMESTAMPTZ)
          AND ($to::TIMESTAMPTZ IS NULL OR e.occurred_at < $to::TIMESTAMPTZ)
          {days.read_filter("e.occurred_at", by, acting_agency)}
          {partitions.read_filter(by, acting_agency)}
          {_LOCATED if located else ""}"""


def _events_cte(acting_agency: str, by: str | None = None, located: bool = False) -> str:
    """Events of the chosen types in [from, to), with the acting agency's local clock."""
    return f"""
    ev AS (
        SELECT e.*, e.rowid AS event_row,
               {acting_agency} AS acting_agency,
               coalesce(az.tz, sz.tz, 'UTC') AS zone,
               timezone(coalesce(az.tz, sz.tz, 'UTC'), e.occurred_at) AS local_ts
        FROM disclosure_events e
        LEFT JOIN {_ZONE_TABLE} az ON az.agency = {acting_agency}
        LEFT JOIN {_SOURCE_ZONE_TABLE} sz ON sz.source_system = e.source_system
        {_events_where(acting_agency, by, located)}
    )"""


def _params(
    event_types: list[str],
    window_from: datetime | None,
    window_to: datetime | None,
    **scoped: Any,
) -> dict[str, Any]:
    """The query's parameters; inside days.on_days() those of the days read (``scoped``:
    margin_days, keep, by, see :func:`days.params`)."""
    base = {"event_types": event_types, "from": window_from, "to": window_to}
    return days.params(base, **scoped)


_AUTHORITY = (
    "coalesce(authority_id, CASE WHEN legal_authority IS NULL OR trim(legal_authority) = ''"
    " THEN '(none)' ELSE '(unrecognised)' END)"
)


def transfer_frame(
    con: duckdb.DuckDBPyConnection,
    *,
    event_types: list[str],
    window_from: datetime | None = None,
    window_to: datetime | None = None,
    ordered: bool = True,
) -> pl.DataFrame:
    """One row per transfer event: volume, clock, channel, elements, and their combinations.

    Categorical model inputs come twice: as text (for explanations) and as ``*_code``, a
    64-bit DuckDB ``hash()`` of the text, so the models compare integers rather than
    strings (DuckDB's hash is stable within a DuckDB version; models record the version
    and are refused by another). ``ordered=False`` skips the sort (scoring order does not
    matter; training order does, for the training-data hash). ``event_row`` is the event's
    row in the store (``rowid``): scoring reads the feature codes of every row, then the
    text of only the rows over the floor by it (:func:`locate`).
    """
    order = "ORDER BY occurred_at, source_system, event_id" if ordered else ""
    # Scoring: the element lists' code is made once per distinct list and looked up by
    # the list's own hash (sorting each row's list cost a third of the scoring query);
    # the code is the same, hash(elements), as training's (tests/ml/test_scoring_cost.py).
    lookup = f"""
    element_codes AS (
        SELECT hash(e.data_elements) AS elements_key,
               hash(array_to_string(list_sort(any_value(e.data_elements)), ',')) AS code
        FROM disclosure_events e
        {_events_where("e.disclosing_agency", located=True)}
        GROUP BY ALL
    ),"""
    elements_code = "(SELECT code FROM element_codes c WHERE c.elements_key = base.elements_key)"
    sql = f"""
    WITH {_events_cte("e.disclosing_agency", located=not ordered)},{lookup if not ordered else ""}
    base AS (
        SELECT event_row, event_id, source_system, disclosing_agency, recipient_agency, actor_id,
               request_id,
               occurred_at, zone, local_ts, record_count, authority_id, acting_agency,
               {_AUTHORITY} AS authority,
               coalesce(channel, '(none)') AS channel,
               coalesce(purpose, '(none)') AS purpose,
               coalesce(channel, '(none)') || CASE WHEN encrypted THEN ', encrypted'
                   WHEN NOT encrypted THEN ', unencrypted' ELSE '' END AS channel_enc,
               array_to_string(list_sort(data_elements), ',') AS elements,
               {"hash(data_elements) AS elements_key," if not ordered else ""}
               -- The recipient and the order of magnitude of the transfer: channel and data
               -- elements are judged against the same recipient's transfers of that size.
               recipient_agency || ' ~1e'
                   || CAST(floor(log10(greatest(record_count, 1))) AS INTEGER) AS recipient_size
        FROM ev
    )
    SELECT *,
           ln(1 + record_count) AS log_records,
           hour(local_ts) + minute(local_ts) / 60.0 AS local_hour,
           CAST(isodow(local_ts) AS UBIGINT) AS local_weekday,
           CAST(hour(local_ts) AS UBIGINT) AS local_hour_of_day,
           CAST(hour(occurred_at) AS UBIGINT) AS utc_hour,
           CAST(floor(log10(greatest(record_count, 1))) AS UBIGINT) AS size_class,
           recipient_agency AS recipient,
           acting_agency AS sender,
           hash(recipient_agency) AS recipient_code,
           hash(recipient_size) AS recipient_size_code,
           hash(authority) AS authority_code,
           hash(purpose) AS purpose_code,
           hash(channel_enc) AS channel_enc_code,
           {elements_code if not ordered else "hash(elements)"} AS elements_code,
           hash(acting_agency) AS sender_code,
           hash(acting_agency || ' ~1e'
                || CAST(floor(log10(greatest(record_count, 1))) AS INTEGER)) AS sender_size_code,
           hash(authority || ' for ' || purpose) AS authority_purpose_code
    FROM base
    {order}
    """
    params = _params(event_types, window_from, window_to)
    return _frame(con, sql, params if ordered else {**params, "located": None})


# Phase of the month and week: a day is compared with the same part of the month and the
# same kind of day (working day or weekend) in its pair's history.
_PHASE = (
    "CASE WHEN dayofmonth(day) <= 10 THEN 'days 1-10'"
    " WHEN dayofmonth(day) <= 20 THEN 'days 11-20' ELSE 'days 21-end' END"
    " || CASE WHEN isodow(day) >= 6 THEN '/weekend' ELSE '/working day' END"
)


def pair_day_frame(
    con: duckdb.DuckDBPyConnection,
    *,
    event_types: list[str],
    window_from: datetime | None = None,
    window_to: datetime | None = None,
) -> pl.DataFrame:
    """Records per (recipient, authority) per local day of the discloser, with its phase."""
    sql = f"""
    WITH {_events_cte("e.disclosing_agency")},
    days AS (
        SELECT disclosing_agency, recipient_agency, {_AUTHORITY} AS authority,
               CAST(local_ts AS DATE) AS day,
               any_value(source_system) AS source_system,
               any_value(zone) AS zone,
               CAST(sum(record_count) AS BIGINT) AS records, count(*) AS transfers,
               count(DISTINCT taxpayer_ref) AS subjects,
               min(occurred_at) AS first_at, max(occurred_at) AS last_at,
               list(event_id ORDER BY occurred_at, event_id) AS event_ids,
               list_distinct(list(authority_id) FILTER (WHERE authority_id IS NOT NULL)) AS citations
        FROM ev GROUP BY ALL
    ),
    -- The sending agency's whole traffic that day sets the pace a pair is judged at.
    framed AS (
    SELECT *, recipient_agency || '|' || authority AS pair, {_PHASE} AS phase,
           hash(disclosing_agency) AS sender_code,
           hash(disclosing_agency || '|' || recipient_agency || '|' || authority) AS pair_code,
           CAST(day - DATE '1970-01-01' AS UBIGINT) AS day_number,
           CAST(transfers AS UBIGINT) AS transfers_n,
           CAST(records AS UBIGINT) AS records_n,
           CAST(sum(transfers) OVER (PARTITION BY disclosing_agency, day) AS UBIGINT)
               AS sender_transfers,
           CAST(sum(records) OVER (PARTITION BY disclosing_agency, day) AS UBIGINT)
               AS sender_records
    FROM days
    )
    SELECT * FROM framed WHERE {days.kept("first_at", "last_at")}
    -- A total order (a pair-day is one per sender): training reads it again from a table.
    ORDER BY day, recipient_agency, authority, disclosing_agency
    """
    # Inside days.on_days() a day before and after is read: the local days touching the kept
    # UTC days are then whole.
    params = _params(event_types, window_from, window_to, margin_days=1, keep=True)
    return _frame(con, sql, params)


# A user-day's features read only events of its own (recipient) agency: the user's, and
# the agency's workload. Scoring an increment reads and keeps only the agencies it touched.
ACTOR_DAY_PARTITION = "recipient_agency"


def actor_day_frame(
    con: duckdb.DuckDBPyConnection,
    *,
    event_types: list[str],
    window_from: datetime | None = None,
    window_to: datetime | None = None,
) -> pl.DataFrame:
    """A recipient user's records and distinct subjects per local day, with agency and role,
    their trailing 7-day sums, and the whole agency's counts on the same days (its
    workload, which sets the pace the user is judged at)."""
    sql = f"""
    WITH {_events_cte("e.recipient_agency", ACTOR_DAY_PARTITION)},
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
    ),
    -- Slow, steady browsing hides in daily counts: also the user's 7 days ending on the
    -- day and the 7 days starting on it (what the logs hold of them so far).
    weekly AS (
        SELECT *,
               CAST(sum(records) OVER w7 AS BIGINT) AS records_7d,
               CAST(sum(subjects) OVER w7 AS BIGINT) AS subjects_7d,
               CAST(sum(records) OVER n7 AS BIGINT) AS records_next_7d,
               CAST(sum(subjects) OVER n7 AS BIGINT) AS subjects_next_7d
        FROM days
        WINDOW w7 AS (PARTITION BY recipient_agency, actor_id ORDER BY day
                      RANGE BETWEEN INTERVAL 6 DAYS PRECEDING AND CURRENT ROW),
               n7 AS (PARTITION BY recipient_agency, actor_id ORDER BY day
                      RANGE BETWEEN CURRENT ROW AND INTERVAL 6 DAYS FOLLOWING)
    ),
    agency_days AS (
        SELECT recipient_agency, day, sum(records) AS a_records, sum(subjects) AS a_subjects
        FROM days GROUP BY ALL
    ),
    agency AS (
        SELECT *,
               sum(a_records) OVER a7 AS a_records_7d, sum(a_subjects) OVER a7 AS a_subjects_7d,
               sum(a_records) OVER n7 AS a_records_next_7d,
               sum(a_subjects) OVER n7 AS a_subjects_next_7d
        FROM agency_days
        WINDOW a7 AS (PARTITION BY recipient_agency ORDER BY day
                      RANGE BETWEEN INTERVAL 6 DAYS PRECEDING AND CURRENT ROW),
               n7 AS (PARTITION BY recipient_agency ORDER BY day
                      RANGE BETWEEN CURRENT ROW AND INTERVAL 6 DAYS FOLLOWING)
    )
    SELECT w.*,
           hash(w.recipient_agency) AS agency_code,
           hash(w.recipient_agency || '|' || w.role) AS peer_group_code,
           hash(w.recipient_agency || '|' || w.actor_id) AS actor_code,
           CAST(w.day - DATE '1970-01-01' AS UBIGINT) AS day_number,
           CAST(w.subjects AS UBIGINT) AS subjects_n,
           CAST(w.subjects_7d AS UBIGINT) AS subjects_7d_n,
           CAST(w.subjects_next_7d AS UBIGINT) AS subjects_next_7d_n,
           CAST(a.a_subjects AS UBIGINT) AS agency_subjects,
           CAST(a.a_subjects_7d AS UBIGINT) AS agency_subjects_7d,
           CAST(a.a_subjects_next_7d AS UBIGINT) AS agency_subjects_next_7d,
           CAST(w.records AS UBIGINT) AS records_n,
           CAST(w.records_7d AS UBIGINT) AS records_7d_n,
           CAST(w.records_next_7d AS UBIGINT) AS records_next_7d_n,
           CAST(a.a_records AS UBIGINT) AS agency_records,
           CAST(a.a_records_7d AS UBIGINT) AS agency_records_7d,
           CAST(a.a_records_next_7d AS UBIGINT) AS agency_records_next_7d
    FROM weekly w JOIN agency a USING (recipient_agency, day)
    -- The query read WINDOW_LOOKBACK_DAYS around the window for the 7-day sums.
    WHERE ($keep_from::TIMESTAMPTZ IS NULL OR w.last_at >= $keep_from::TIMESTAMPTZ)
      AND ($keep_to::TIMESTAMPTZ IS NULL OR w.first_at < $keep_to::TIMESTAMPTZ)
      AND {days.kept("w.first_at", "w.last_at", ACTOR_DAY_PARTITION, "w.recipient_agency")}
    ORDER BY w.day, w.recipient_agency, w.actor_id
    """
    if days.active():
        # The kept days' rows, whole: their 7-day sums, and a day more for local days.
        params = _params(
            event_types,
            None,
            None,
            margin_days=WINDOW_LOOKBACK_DAYS + 1,
            keep=True,
            by=ACTOR_DAY_PARTITION,
        )
        params |= partitions.params(ACTOR_DAY_PARTITION)
        return _frame(con, sql, {**params, "keep_from": None, "keep_to": None})
    params = _params(
        event_types,
        window_from - timedelta(days=WINDOW_LOOKBACK_DAYS) if window_from else None,
        window_to + timedelta(days=WINDOW_LOOKBACK_DAYS) if window_to else None,
    ) | partitions.params(ACTOR_DAY_PARTITION)
    return _frame(con, sql, {**params, "keep_from": window_from, "keep_to": window_to})


# What a combination's row (or combination-day's) holds besides its key: who and where,
# how much, when, which events and under which citations. The first-seen detector's frames
# (here and detectors/ml/first_contact.py) select it over the events ``ev``.
COMBINATION_AGGREGATES = """any_value(disclosing_agency) AS disclosing_agency,
           any_value(source_system) AS source_system,
           CAST(sum(record_count) AS BIGINT) AS records, count(*) AS transfers,
           count(DISTINCT taxpayer_ref) AS subjects,
           min(occurred_at) AS first_at, max(occurred_at) AS last_at,
           list(event_id ORDER BY occurred_at, event_id) AS event_ids,
           list_distinct(list(authority_id) FILTER (WHERE authority_id IS NOT NULL))
               AS citations"""


def combination_frame(
    con: duckdb.DuckDBPyConnection,
    *,
    event_types: list[str],
    window_from: datetime | None = None,
    window_to: datetime | None = None,
    per_day: bool = False,
) -> pl.DataFrame:
    """(recipient, authority, purpose, channel) combinations: per day (training) or per window."""
    day = ", CAST(occurred_at AS DATE) AS day" if per_day else ""
    sql = f"""
    WITH {_events_cte("e.disclosing_agency")}
    SELECT recipient_agency, {_AUTHORITY} AS authority,
           coalesce(purpose, '(none)') AS purpose, coalesce(channel, '(none)') AS channel{day},
           {COMBINATION_AGGREGATES}
    FROM ev GROUP BY ALL
    -- A total order (one row per combination{" and day" if per_day else ""}): training reads it
    -- again from a table, sorted by these keys.
    ORDER BY first_at, recipient_agency, authority, purpose, channel{", day" if per_day else ""}
    """
    return _frame(con, sql, _params(event_types, window_from, window_to))
