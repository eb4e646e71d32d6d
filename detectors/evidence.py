"""What a rule's findings rest on: their events keyed by source, whole chains, and subjects.

The stage after a rule's query (``detectors.engine.run_rule``) and before its findings
become alerts. From each finding's events it derives:

* the evidence keys ``(source_system, event_id)`` - event ids repeat across logs, so a
  rule returns ``event_keys`` (a list of ``{source_system, event_id}``) wherever its
  events may come from several logs; otherwise ``event_ids`` are read in the finding's
  ``source_system``;
* the rest of their chain: the requests, disclosures and receipts linked to them by
  request id and recipient (a finding on a request names the disclosures and receipts it
  enabled; one on a disclosure names its request and receipt);
* the taxpayers whose rights the finding says were violated, as the rule's ``subjects``
  declares (see :class:`SubjectsSpec`), each with the reason and the event or request item
  it came from. A subject counts only where data about them was disclosed or used.

Rows go to ``<candidates>_events`` and ``<candidates>_subjects`` (the columns of
``alert_events`` and ``alert_subjects``); the finding's ``subjects_affected`` becomes the
distinct count of its subjects, and ``evidence_sources`` / ``chain`` join its evidence.
"""

from __future__ import annotations

from typing import Any, Literal

import duckdb
from pydantic import BaseModel, ConfigDict, Field

# Canonical event-type vocabulary (schemas/canonical.yaml), not law: the links of a chain.
CHAIN_EVENT_TYPES = ("request", "disclosure", "receipt")
FINDINGS = "_findings"  # the rule's rows, with _alert_id
CHAIN_ROWS = "dw_chain_rows"  # the events that can link a chain, read once per judgement


class SubjectsSpec(BaseModel):
    """How a rule finds the taxpayers its findings affect (data, in the rule's YAML).

    ``from``:
      ``events``    taxpayers named by the finding's events that carried data about them (the
                    event's taxpayer or the request items it carried; a request carries
                    none, the disclosures it enabled do);
      ``disclosed`` taxpayers whose data the finding's disclosures carried, and for a finding
                    on a request, the disclosures that request enabled (a request alone
                    discloses nothing);
      ``query``     the query's ``subjects`` column: a list of structs with ``taxpayer_ref``
                    and optionally ``reason``, ``request_id``, ``event_id``, ``item_no``,
                    ``source_system``.
    ``disclosed_only`` keeps (for ``query``) only taxpayers the chain actually disclosed.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    source: Literal["events", "disclosed", "query"] = Field(alias="from")
    reason: str = Field(min_length=1, description="Why each listed taxpayer counts.")
    disclosed_only: bool = False


_CHAIN_TYPE = "STRUCT(requests BIGINT, disclosures BIGINT, receipts BIGINT)"
_EVENT_COLUMNS = "alert_id, source_system, event_id, event_type, request_id, role"
_SUBJECT_COLUMNS = "alert_id, taxpayer_ref, reason, request_id, event_id, item_no, source_system"


def create_tables(con: duckdb.DuckDBPyConnection, candidates: str) -> None:
    """The per-run tables the engine fills beside its candidate alerts."""
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {candidates}_events AS SELECT * FROM alert_events WHERE false"
    )
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {candidates}_subjects AS SELECT * FROM alert_subjects WHERE false"
    )


def _keys_sql(types: dict[str, str]) -> str:
    if "event_keys" in types:
        return (
            "SELECT _alert_id AS alert_id, k.source_system, CAST(k.event_id AS VARCHAR) AS event_id"
            f" FROM (SELECT _alert_id, unnest(event_keys) AS k FROM {FINDINGS})"
        )
    source = "source_system" if "source_system" in types else "NULL::VARCHAR"
    return (
        f"SELECT _alert_id AS alert_id, {source} AS source_system,"
        f" CAST(unnest(event_ids) AS VARCHAR) AS event_id FROM {FINDINGS}"
    )


def logs_of(
    con: duckdb.DuckDBPyConnection, keys: str, alias: str = "e"
) -> tuple[str, dict[str, str]]:
    """A filter on ``alias.source_system`` to the logs the rows of ``keys`` (SQL with a
    ``source_system`` column) name, with its parameters; ``true`` when a key names none.

    Constants, so DuckDB compares them with each row group's range and skips the row groups
    of other logs (a store holds each batch's rows together, one log per batch); a join on
    the key alone reads the key column of every event in the store."""
    logs = [r[0] for r in con.execute(f"SELECT DISTINCT source_system FROM ({keys})").fetchall()]
    if not logs or None in logs:
        return "true", {}
    params = {f"log{n}": log for n, log in enumerate(sorted(logs))}
    return f"{alias}.source_system IN ({', '.join('$' + p for p in params)})", params


def _finding_events(con: duckdb.DuckDBPyConnection, types: dict[str, str]) -> None:
    keys = _keys_sql(types)
    logs, params = logs_of(con, keys)
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _fe AS
        WITH keys AS ({keys})
        SELECT DISTINCT k.alert_id, e.source_system, e.event_id, e.event_type, e.request_id,
               e.taxpayer_ref, coalesce(ag.code, upper(trim(e.recipient_agency))) AS recipient_code
        FROM keys k
        JOIN (SELECT * FROM disclosure_events e WHERE {logs}) e
          ON e.event_id = k.event_id AND (k.source_system IS NULL OR e.source_system = k.source_system)
        LEFT JOIN dw_agencies ag ON ag.agency = e.recipient_agency
        """,
        params,
    )


def forget_chains(con: duckdb.DuckDBPyConnection) -> None:
    """Drop the chain links read for an earlier judgement (the events may have changed):
    a table read from the events, or a view over the kept links (:mod:`detectors.chain_state`)."""
    row = con.execute(
        "SELECT (SELECT count(*) FROM duckdb_tables() WHERE temporary AND table_name = $n),"
        " (SELECT count(*) FROM duckdb_views() WHERE temporary AND view_name = $n)",
        {"n": CHAIN_ROWS},
    ).fetchone()
    if row and row[0]:
        con.execute(f"DROP TABLE temp.{CHAIN_ROWS}")
    if row and row[1]:
        con.execute(f"DROP VIEW temp.{CHAIN_ROWS}")


# Every event that can link a chain (a request, disclosure or receipt with a request id: a
# small share of a store of accesses), narrow and with its recipient as a registry code;
# ``{where}`` (SQL on ``disclosure_events e``) narrows the events read.
CHAIN_ROWS_SELECT = (
    "SELECT e.request_id, coalesce(ag.code, upper(trim(e.recipient_agency))) AS recipient_code,"
    " e.source_system, e.event_id, e.event_type, e.taxpayer_ref"
    " FROM disclosure_events e LEFT JOIN dw_agencies ag ON ag.agency = e.recipient_agency"
    " WHERE e.request_id IS NOT NULL AND list_contains($chain_types, e.event_type)"
    " AND ({where})"
)


def _index_chains(con: duckdb.DuckDBPyConnection) -> None:
    """``dw_chain_rows``: every event that can link a chain (:data:`CHAIN_ROWS_SELECT`).
    Read from all events once per judgement, unless a view over the kept links is in place
    already (:mod:`detectors.chain_state`); each rule's findings then join it instead of
    every event."""
    con.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS {CHAIN_ROWS} AS {CHAIN_ROWS_SELECT.format(where='true')}",
        {"chain_types": list(CHAIN_EVENT_TYPES)},
    )


def _chain(con: duckdb.DuckDBPyConnection, linked: bool) -> None:
    """The rest of each finding's chain: events sharing a request id and recipient."""
    if linked:
        _index_chains(con)
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _chain AS
        WITH links AS (
            SELECT alert_id, request_id, recipient_code, bool_or(event_type = 'request') AS from_request
            FROM _fe WHERE request_id IS NOT NULL AND {"true" if linked else "false"}
            GROUP BY ALL
        )
        SELECT l.alert_id, e.source_system, e.event_id, e.event_type, e.request_id, e.taxpayer_ref,
               l.from_request
        FROM links l
        JOIN {CHAIN_ROWS if linked else "(SELECT * FROM _fe WHERE false)"} e
          ON e.request_id = l.request_id AND e.recipient_code = l.recipient_code
        WHERE NOT EXISTS (SELECT 1 FROM _fe f WHERE f.alert_id = l.alert_id
                          AND f.source_system = e.source_system AND f.event_id = e.event_id)
        """
    )


# Taxpayers a set of carrier events names: their own taxpayer_ref, and the request items
# each carried (an item names its request; another log's entry with the same id is not
# its carrier).
_NAMED_BY = """
SELECT c.alert_id, c.taxpayer_ref, c.request_id, c.event_id, NULL::BIGINT AS item_no, c.source_system
FROM carriers c WHERE c.taxpayer_ref IS NOT NULL
UNION ALL
SELECT c.alert_id, i.taxpayer_ref, i.request_id, c.event_id, i.item_no, c.source_system
FROM carriers c
JOIN request_items i
  ON i.event_id = c.event_id AND (i.source_system IS NULL OR i.source_system = c.source_system)
 AND (c.request_id IS NULL OR i.request_id = c.request_id)
WHERE i.taxpayer_ref IS NOT NULL
"""

_DISCLOSED_CARRIERS = """
SELECT alert_id, source_system, event_id, request_id, taxpayer_ref FROM _fe
WHERE list_contains((SELECT disclosure_event_types FROM dw_params), event_type)
UNION ALL
SELECT alert_id, source_system, event_id, request_id, taxpayer_ref FROM _chain
WHERE from_request AND list_contains((SELECT disclosure_event_types FROM dw_params), event_type)
"""


# Events that carried data about their subjects: every finding event but a request (a
# request asks; it discloses nothing), and the disclosures a finding's requests enabled.
_DATA_CARRIERS = """
SELECT alert_id, source_system, event_id, request_id, taxpayer_ref FROM _fe
WHERE event_type <> 'request'
UNION ALL
SELECT alert_id, source_system, event_id, request_id, taxpayer_ref FROM _chain
WHERE from_request AND list_contains((SELECT disclosure_event_types FROM dw_params), event_type)
"""


def _query_subjects_sql(con: duckdb.DuckDBPyConnection) -> str:
    fields = {
        row[0]
        for row in con.execute(
            f"DESCRIBE SELECT unnest(subjects, recursive := true) FROM {FINDINGS}"
        ).fetchall()
    }
    if "taxpayer_ref" not in fields:
        raise ValueError("its subjects column has no taxpayer_ref field")

    def field(name: str, cast: str) -> str:
        return f"CAST(s.{name} AS {cast})" if name in fields else f"NULL::{cast}"

    return (
        f"SELECT _alert_id AS alert_id, CAST(s.taxpayer_ref AS VARCHAR) AS taxpayer_ref,"
        f" coalesce({field('reason', 'VARCHAR')}, $reason) AS reason,"
        f" {field('request_id', 'VARCHAR')} AS request_id, {field('event_id', 'VARCHAR')} AS event_id,"
        f" {field('item_no', 'BIGINT')} AS item_no, {field('source_system', 'VARCHAR')} AS source_system"
        f" FROM (SELECT _alert_id, unnest(subjects) AS s FROM {FINDINGS})"
        " WHERE s.taxpayer_ref IS NOT NULL"
    )


def _subjects(con: duckdb.DuckDBPyConnection, spec: SubjectsSpec, target: str) -> None:
    params: dict[str, Any] = {"reason": spec.reason}
    if spec.source == "query":
        rows = _query_subjects_sql(con)
        if spec.disclosed_only:
            rows = (
                f"WITH carriers AS ({_DISCLOSED_CARRIERS}), disclosed AS ({_NAMED_BY})"
                f" SELECT q.* FROM ({rows}) q WHERE EXISTS (SELECT 1 FROM disclosed d"
                " WHERE d.alert_id = q.alert_id AND d.taxpayer_ref = q.taxpayer_ref)"
            )
    else:
        carriers = _DISCLOSED_CARRIERS if spec.source == "disclosed" else _DATA_CARRIERS
        rows = (
            f"WITH carriers AS ({carriers}), named AS ({_NAMED_BY})"
            " SELECT alert_id, taxpayer_ref, $reason AS reason, request_id, event_id, item_no,"
            " source_system FROM named"
        )
    con.execute(
        f"INSERT INTO {target} ({_SUBJECT_COLUMNS}) SELECT DISTINCT {_SUBJECT_COLUMNS} FROM ({rows})",
        params,
    )


# Each finding's logs and its chain's size: its distinct (log, event id) pairs of each type,
# counted as rows once the (alert, log, event id, type) rows are distinct (a distinct count
# of pairs per type cost 3-5x as much: 0.5-0.8 CPU-s for a chain of 620k rows).
SOURCES_AND_CHAIN = """
SELECT alert_id, list_sort(list(DISTINCT source_system)) AS sources,
       {'requests': count(*) FILTER (WHERE event_type = 'request'),
        'disclosures': count(*) FILTER (WHERE event_type = 'disclosure'),
        'receipts': count(*) FILTER (WHERE event_type = 'receipt')} AS chain
FROM (SELECT DISTINCT alert_id, source_system, event_id, event_type
      FROM (SELECT alert_id, source_system, event_id, event_type FROM _fe
            UNION ALL SELECT alert_id, source_system, event_id, event_type FROM _chain))
GROUP BY alert_id
"""


def _set_column(
    con: duckdb.DuckDBPyConnection, types: dict[str, str], name: str, sql_type: str
) -> None:
    if name in types:
        con.execute(f"ALTER TABLE {FINDINGS} DROP COLUMN {name}")
    con.execute(f"ALTER TABLE {FINDINGS} ADD COLUMN {name} {sql_type}")


def record(
    con: duckdb.DuckDBPyConnection,
    types: dict[str, str],
    *,
    candidates: str,
    subjects: SubjectsSpec | None,
    chain: bool,
) -> int:
    """Derive the findings' evidence keys, chains and subjects (see the module doc); the
    number of findings. Nothing found: nothing derived (no alert row is made from them)."""
    row = con.execute(f"SELECT count(*) FROM {FINDINGS}").fetchone()
    found = int(row[0]) if row else 0
    if not found:
        return 0
    _finding_events(con, types)
    _chain(con, chain)
    con.execute(
        f"INSERT INTO {candidates}_events ({_EVENT_COLUMNS})"
        " SELECT DISTINCT alert_id, source_system, event_id, event_type, request_id, 'finding' FROM _fe"
        " UNION ALL"
        " SELECT DISTINCT alert_id, source_system, event_id, event_type, request_id, 'chain' FROM _chain"
    )
    if subjects is not None:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE _subjects AS SELECT * FROM {candidates}_subjects WHERE false"
        )
        _subjects(con, subjects, "_subjects")
        con.execute(f"INSERT INTO {candidates}_subjects SELECT * FROM _subjects")
        # the number of taxpayers the finding lists (0 when it names none)
        _set_column(con, types, "subjects_affected", "BIGINT DEFAULT 0")
        con.execute(
            f"UPDATE {FINDINGS} f SET subjects_affected = c.n FROM ("
            " SELECT alert_id, count(DISTINCT taxpayer_ref) AS n FROM _subjects GROUP BY alert_id"
            ") c WHERE f._alert_id = c.alert_id"
        )
        con.execute("DROP TABLE _subjects")
    _set_column(con, types, "evidence_sources", "VARCHAR[]")
    _set_column(con, types, "chain", _CHAIN_TYPE)
    con.execute(
        f"UPDATE {FINDINGS} f SET evidence_sources = s.sources, chain = s.chain"
        f" FROM ({SOURCES_AND_CHAIN}) s WHERE f._alert_id = s.alert_id"
    )
    con.execute("DROP TABLE _fe")
    con.execute("DROP TABLE _chain")
    return found


SOURCES_NOTE_SQL = (
    "CASE WHEN len(f.evidence_sources) > 1 THEN ' The evidence spans ' || len(f.evidence_sources)"
    " || ' logs: ' || array_to_string(f.evidence_sources, ', ') || '.' ELSE '' END"
)
