"""Which partitions new data touches (:func:`touch`), for :mod:`detectors.scoped`.

Per rule with a ``scope``: the partitions of its findings over the delta, of delta rows
that are already events of its open alerts, of an open alert whose request chain grew, or
(``touched_by: rows``) of every delta row its ``touches`` selects. Rows go to
``dw_touched`` (part_by, rule_id, part, reason); every reason is reported.
"""

from __future__ import annotations

import duckdb

from detectors.engine import _PARAM_RE, Rule, _run_query, registry_parameters
from detectors.evidence import CHAIN_EVENT_TYPES, logs_of
from dwatch.errors import RuleError
from dwatch.policy import Registry

NEW_ROWS = "ingest_run_id IN (SELECT ingest_run_id FROM dw_new_batches)"


def bound(
    sql: str, rule: Rule, registry: Registry, *, what: str = "scope.touches"
) -> dict[str, object]:
    """The rule's and the registry's parameters ``sql`` names (as its query binds them)."""
    available = {**registry_parameters(registry), **rule.parameters}
    wanted = set(_PARAM_RE.findall(sql)) - {"by", "rule"}
    missing = wanted - set(available)
    if missing:
        raise RuleError(
            f"{what} uses undefined parameter(s): {', '.join(sorted(missing))}",
            where=f"{rule.path}: {what.split('.')[0]}",
            fix="use the rule's parameters or $reg_<name>",
        )
    return {w: available[w] for w in wanted}


# A partition value computed from a store row ``e`` (dw_agencies resolves recipients).
_PARTITION_VALUE = {
    "recipient_code": "coalesce(ag.code, upper(trim(e.recipient_agency)))",
    "actor_id": "e.actor_id",
    "request_id": "e.request_id",
    "source_system": "e.source_system",
}


def _grown_chains(con: duckdb.DuckDBPyConnection) -> None:
    """``dw_grown_all``: the finding events of every open alert whose request chain the delta
    grew (a new request, disclosure or receipt under a request the alert names), by rule:
    read from the alert tables once for all rules."""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE dw_grown_all AS SELECT DISTINCT a.detector_id,"
        " ae.source_system, ae.event_id FROM alert_events ae JOIN alerts a USING (alert_id)"
        " WHERE a.status = 'open' AND ae.role = 'finding'"
        " AND a.alert_id IN (SELECT c.alert_id FROM alert_events c WHERE c.request_id IN"
        " (SELECT d.request_id FROM dw_delta_events d WHERE list_contains($types, d.event_type)))",
        {"types": list(CHAIN_EVENT_TYPES)},
    )


def _touch_chains(con: duckdb.DuckDBPyConnection, rule: Rule, by: str) -> None:
    """An open alert names the rest of its findings' request chains (detectors.evidence):
    a new request, disclosure or receipt under one of those requests re-opens the alert's
    partition, whatever the new row itself is judged."""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE dw_grown AS SELECT source_system, event_id"
        " FROM dw_grown_all WHERE detector_id = $rule",
        {"rule": rule.id},
    )
    if _empty(con, "dw_grown"):
        return  # no open alert's chain grew: the store is not read
    logs, params = logs_of(con, "SELECT source_system FROM dw_grown")
    con.execute(
        "INSERT INTO dw_touched SELECT DISTINCT $by, $rule,"
        f" CAST({_PARTITION_VALUE[by]} AS VARCHAR), 'an alert''s request chain grew'"
        f" FROM dw_grown g JOIN (SELECT * FROM disclosure_events e WHERE {logs}) e"
        " ON e.source_system = g.source_system AND e.event_id = g.event_id"
        " LEFT JOIN dw_agencies ag ON ag.agency = e.recipient_agency",
        {"by": by, "rule": rule.id, **params},
    )


def _empty(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    row = con.execute(f"SELECT count(*) FROM {table}").fetchone()
    return not row or row[0] == 0


def touch(con: duckdb.DuckDBPyConnection, registry: Registry, scoped: list[Rule]) -> None:
    """``dw_touched`` (part_by, rule_id, part, reason): the partitions the delta touches."""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE dw_touched"
        " (part_by VARCHAR, rule_id VARCHAR, part VARCHAR, reason VARCHAR)"
    )
    if any(rule.links_chain for rule in scoped):
        _grown_chains(con)
    # the ids of open alerts' finding events the delta holds, by rule: read once for all
    con.execute(
        "CREATE OR REPLACE TEMP TABLE dw_reread AS SELECT DISTINCT a.detector_id, ae.event_id"
        " FROM alert_events ae JOIN alerts a USING (alert_id) WHERE a.status = 'open'"
        " AND ae.role = 'finding' AND ae.event_id IN (SELECT event_id FROM dw_events)"
    )
    for rule in scoped:
        assert rule.scope is not None
        by, keys = rule.scope.by, {"by": rule.scope.by, "rule": rule.id}
        if rule.links_chain:
            _touch_chains(con, rule, by)
        if rule.scope.touched_by == "rows":
            touches = rule.scope.touches or "true"
            sql = (
                "INSERT INTO dw_touched SELECT DISTINCT $by, $rule,"
                f" CAST(e.{by} AS VARCHAR), 'new rows' FROM dw_events e WHERE ({touches})"
            )
            con.execute(sql, {**keys, **bound(sql, rule, registry)})
            if by == "request_id":
                con.execute(
                    "INSERT INTO dw_touched SELECT DISTINCT $by, $rule, request_id,"
                    " 'new request items' FROM dw_delta_items",
                    keys,
                )
            if by == "source_system":
                # a row a new batch quarantined still holds its place in the log's order
                con.execute(
                    "INSERT INTO dw_touched SELECT DISTINCT $by, $rule, j ->> 'source_system',"
                    " 'new quarantined rows' FROM (SELECT coalesce(canonical_row, CASE WHEN"
                    " json_valid(raw_row) THEN raw_row::JSON END) AS j FROM quarantine"
                    f" WHERE {NEW_ROWS}) WHERE json_type(j) = 'OBJECT'"
                    " AND j ->> 'source_system' IS NOT NULL",
                    keys,
                )
            continue
        if by not in _run_query(con, rule, registry):
            raise RuleError(
                f"scope.by {by!r}: the query does not return that column",
                where=f"{rule.path}: scope",
                fix=f"return {by} from the query, or remove scope to judge all history",
            )
        con.execute(
            "INSERT INTO dw_touched SELECT DISTINCT $by, $rule, CAST(f.{by} AS VARCHAR),"
            " 'new or changed finding' FROM _rule_rows f".replace("{by}", by),
            keys,
        )
        con.execute("DROP TABLE _rule_rows")
        # a re-read row already behind an open alert: its verdict may have changed
        con.execute(
            "INSERT INTO dw_touched SELECT DISTINCT $by, $rule, CAST(e.{by} AS VARCHAR),"
            " 'an alert''s event re-read' FROM dw_events e WHERE EXISTS (SELECT 1"
            " FROM dw_reread r WHERE r.detector_id = $rule AND r.event_id = e.event_id)".replace(
                "{by}", by
            ),
            keys,
        )
