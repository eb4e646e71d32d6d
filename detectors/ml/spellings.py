"""The agency spellings the events hold, kept per ingest batch (migration 0054).

The time-zone lookup (:func:`detectors.ml.features.prepare_zones`) resolves each agency
as the logs write it to a registry recipient's zone. ``registry_recipient_resolution``
does that for every spelling the events hold, which costs two scans of every event in
every run that scores. An agency's resolution depends only on its spelling and the
registry, so the same zones come from resolving the spellings kept here: each batch's
are read once (by a row-id bound, :func:`dwatch.accounting.bounds.first_rowids`), later
runs read only batches not listed yet. The registry itself is read afresh every time.

Spellings of rows removed since (validation's quarantine) stay listed: the zone lookup is
joined on the events' own agency, so a spelling no event holds changes no feature. The
kept list stands for the events only when the ingest ledger accounts for every event;
otherwise (rows written outside ingest, a ledger out of step) :func:`spellings_sql`
returns None and the caller reads the view.
"""

from __future__ import annotations

import logging

import duckdb

from dwatch.accounting.bounds import first_rowids

log = logging.getLogger(__name__)

TABLE = "ml_agency_spellings"

_LOADED = "SELECT run_id FROM ingest_runs WHERE kind = 'events' AND status = 'loaded'"

# registry_recipient_resolution's spelling -> recipient code (migration 0014), over the
# spellings ``{seen}`` (one column, agency), with the recipient's zone: only the direct
# resolution gives a zone (a code placed by its pattern has no registry recipient).
ZONES_SQL = """
WITH seen AS ({seen}),
keyed AS (
    SELECT agency,
           upper(trim(agency)) AS exact_key,
           regexp_replace(replace(upper(agency), '&', ' AND '), '[^A-Z0-9]+', '', 'g') AS folded_key
    FROM seen
),
names AS (
    SELECT code, code AS spelling, 1 AS rank FROM registry_recipients
    UNION ALL SELECT code, alias, 1 FROM registry_recipient_aliases
    UNION ALL SELECT code, name, 2 FROM registry_recipients WHERE name IS NOT NULL
),
folded_names AS (
    SELECT regexp_replace(replace(upper(spelling), '&', ' AND '), '[^A-Z0-9]+', '', 'g') AS folded_key,
           min(rank) AS rank, min(code) AS code, count(DISTINCT code) AS codes
    FROM names GROUP BY 1
),
direct AS (
    SELECT k.agency, coalesce(r.code, ra.code, CASE WHEN f.codes = 1 THEN f.code END) AS code
    FROM keyed k
    LEFT JOIN registry_recipients r ON r.code = k.exact_key
    LEFT JOIN registry_recipient_aliases ra ON ra.alias = k.exact_key
    LEFT JOIN folded_names f ON f.folded_key = k.folded_key AND k.folded_key <> ''
    QUALIFY row_number() OVER (PARTITION BY k.agency ORDER BY r.code, ra.code, f.rank) = 1
)
SELECT upper(d.agency), r.time_zone
FROM direct d JOIN registry_recipients r ON r.code = d.code
WHERE r.time_zone IS NOT NULL AND d.agency IS NOT NULL
"""


def _scalar(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    rows = con.execute(sql).fetchall()
    return int(rows[0][0]) if rows and rows[0][0] is not None else 0


def _writable(con: duckdb.DuckDBPyConnection) -> bool:
    rows = con.execute("SELECT current_setting('access_mode')").fetchall()
    return not rows or str(rows[0][0]).lower() != "read_only"


def spellings_sql(con: duckdb.DuckDBPyConnection) -> str | None:
    """SQL of every agency spelling the events hold (one column, agency; a superset, see
    the module), bringing the kept list up to date; None when it cannot stand for the
    events (read the view instead)."""
    try:
        held = _scalar(con, "SELECT count(*) FROM disclosure_events")
        counted = _scalar(
            con,
            "SELECT coalesce(sum(rows_loaded), 0) FROM ingest_runs"
            " WHERE kind = 'events' AND status = 'loaded'",
        )
        if held != counted:
            return None
        pending = [
            str(r[0])
            for r in con.execute(
                f"{_LOADED} AND run_id NOT IN (SELECT ingest_run_id FROM {TABLE}) ORDER BY 1"
            ).fetchall()
        ]
    except duckdb.CatalogException:  # a store from before migration 0054
        return None
    if pending:
        low = first_rowids(con, pending).events
        rows = (
            f"SELECT ingest_run_id, recipient_agency AS agency FROM disclosure_events"
            f" WHERE rowid >= {int(low)} AND ingest_run_id IN (SELECT unnest($ids::VARCHAR[]))"
            f" UNION SELECT ingest_run_id, disclosing_agency FROM disclosure_events"
            f" WHERE rowid >= {int(low)} AND ingest_run_id IN (SELECT unnest($ids::VARCHAR[]))"
            " UNION SELECT unnest($ids::VARCHAR[]), NULL::VARCHAR"
        )
        if not _writable(con):  # a read-only store: the pending batches read, not kept
            return (
                f"SELECT DISTINCT agency FROM {TABLE}"
                f" UNION SELECT agency FROM ({_inline(rows, pending)})"
            )
        con.execute(f"INSERT INTO {TABLE} (ingest_run_id, agency) {rows}", {"ids": pending})
    return f"SELECT DISTINCT agency FROM {TABLE}"


def _inline(sql: str, ids: list[str]) -> str:
    listed = ", ".join("'" + i.replace("'", "''") + "'" for i in ids)
    return sql.replace("$ids::VARCHAR[]", f"[{listed}]::VARCHAR[]")


def resolved_zones(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str]] | None:
    """(upper-cased agency spelling, zone) for every spelling the events hold that the
    registry resolves to a recipient with a zone, as ``registry_recipient_resolution``
    gives them; None when the kept spellings cannot stand for the events."""
    seen = spellings_sql(con)
    if seen is None:
        return None
    return [(str(a), str(z)) for a, z in con.execute(ZONES_SQL.format(seen=seen)).fetchall()]
