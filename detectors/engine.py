"""The one rule engine: rules as data, compiled to DuckDB SQL, judged by the registry.

A rule is ``detectors/rules/<rule_id>.yaml`` (and optionally ``<rule_id>.sql`` holding its
query). Its query is a SELECT over the engine's views (below), written in registry
concepts - ``auth_requires_court_order``, ``order restrains event_type`` - never naming an
agency, statute or date: those live in the registry. Values reach SQL only as bound
parameters (``$name``): rule parameters, registry parameters (``$reg_<name>``), and for
every list parameter named ``*_patterns`` a combined regular expression ``$<name>_regex``.

Views every rule can use (built by :func:`prepare`, set-wise, once per run):

``dw_events``
    every disclosure event with its recipient and discloser resolved to registry codes and
    categories, its citation classified (``citation_status``: ok/general/unknown/malformed/missing;
    of several authorities cited, ``authority_id`` is the one that permits all of it),
    the cited authority's attributes (``auth_*``) and whether it was in force at
    ``occurred_at`` (``auth_in_force``), the registry agreement it invokes (ids compared on
    letters and digits) and its purpose as a registry code (``purpose_code``).
``dw_element_lists``
    each distinct ``data_elements`` list with ``data_element_codes``, its elements as
    canonical codes through the registry's ``data_element_aliases`` ("SSN" = tin).
``dw_order_hits``
    (event, court order) pairs where an order binding at the event's ``occurred_at``
    restrains the event (disclosing agency, recipient, holder, event type, data, purpose)
    and no exception of the restraint applies.
``dw_items``
    request items with their carrying event and their address's verdict
    (``address_valid``, ``address_form``, ``address_reason``: :mod:`dwatch.address`, judged
    once per distinct address text into ``address_verdicts``).
``dw_sequence_breaks``, ``dw_log_sizes``, ``dw_log_behind``
    the rows where a log's order breaks (a sequence gap or reused number, or a time earlier
    than the previous entry's), with the neighbours' numbers and times; each log's entries;
    the entries timed before an entry earlier in their log's order (``latest_before``).

A query returns one row per finding with ``entity_id``, ``event_ids`` (or ``event_keys``:
``{source_system, event_id}`` pairs, for findings whose events span logs), ``window_start``,
``window_end``, the columns its ``dedup_key`` and ``explanation`` name, and optionally
``disclosing_agency``, ``recipient_agency``, ``request_id``, ``actor_id``,
``source_system``, ``event_count``, ``subjects_affected``, ``records_affected``,
``citations`` (registry ids found per row: the event's authority, orders, agreements;
``$rule_citations`` holds the rule's own; when absent or empty the rule's own are used),
``evidence`` and ``score``. :mod:`detectors.evidence` then keys each finding's events by
source, adds the rest of their request chain and lists the taxpayers the rule's
``subjects`` declares. The engine turns findings into the one alert record and merges them,
with their subjects and evidence keys, through :func:`detectors.alerts.merge_alerts`.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

import duckdb
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from detectors import chain_state, evidence, rule_state
from detectors.alerts import (
    ALERT_COLUMNS,
    ALERT_ID_SQL,
    SEVERITIES,
    MergeResult,
    mark_coverage,
    merge_alerts,
)
from detectors.authority_choice import CHOICE_COLUMNS, choose_authorities
from detectors.custody_state import prepare_custody
from detectors.evidence import SubjectsSpec
from dwatch import yamlfile
from dwatch.address import vocabulary_of
from dwatch.address_verdicts import refresh_address_verdicts
from dwatch.errors import RuleError
from dwatch.policy import Registry, classify_all, sync_registry

RULES_DIR = Path(__file__).resolve().parent / "rules"
EVIDENCE_EVENT_CAP = 1000  # event_ids kept per alert; event_count holds the full number

EntityType = Literal["recipient", "request", "actor", "source", "event", "agreement"]
_FIELD_RE = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
_PARAM_RE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
# Columns the engine reads but does not repeat as evidence (kept in alert_events/_subjects).
_NOT_EVIDENCE = ("_alert_id", "event_keys", "subjects")
_REQUIRED_OUTPUT = ("entity_id", "event_ids", "window_start", "window_end")
_OPTIONAL_OUTPUT = (
    "disclosing_agency",
    "recipient_agency",
    "request_id",
    "actor_id",
    "source_system",
    "event_count",
    "subjects_affected",
    "records_affected",
    "citations",
    "evidence",
    "score",
)


class RuleCase(BaseModel):
    """One should-fire or should-not-fire case: a tiny store and the alerts expected."""

    model_config = ConfigDict(extra="forbid")

    name: str
    alerts: int = Field(ge=0, description="Alerts this rule must raise on the case's data.")
    expect: dict[str, Any] = Field(
        default_factory=dict, description="Values every raised alert must carry."
    )
    events: list[dict[str, Any]] = Field(default_factory=list)
    request_items: list[dict[str, Any]] = Field(default_factory=list)
    quarantine: list[dict[str, Any]] = Field(default_factory=list)
    registry: dict[str, Any] = Field(
        default_factory=dict,
        description="Registry entries appended for this case (e.g. a recipient's review).",
    )

    @property
    def should_fire(self) -> bool:
        return self.alerts > 0


class RuleScope(BaseModel):
    """The part of the store a finding rests on, so a run can judge only what new data touches.

    ``by``: a column of ``dw_events`` (returned by the query too) that every event of one
    finding shares. ``touched_by``: ``findings`` - each row is judged by itself, so new rows
    change only the findings they qualify for (and an alert whose events are re-read);
    ``rows`` - a row's verdict rests on other rows of the same ``by`` (a log's order, a
    request's items), so a new row re-opens its whole ``by``; ``touches`` narrows that to
    the rows the query reads (a new access event changes no request's verdict).
    """

    model_config = ConfigDict(extra="forbid")

    by: Literal["recipient_code", "actor_id", "request_id", "source_system"]
    touched_by: Literal["findings", "rows"] = "findings"
    touches: str | None = Field(
        default=None,
        description="With touched_by: rows, the new rows (SQL over dw_events e, bound parameters)"
        " that can change a finding; others leave their partition as judged.",
    )


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    title: str
    severity: str
    version: str = "1"
    citations: list[str] = Field(min_length=1, description="Registry ids the rule enforces.")
    entity: EntityType
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=dict)
    query: str | None = None
    explanation: str = Field(min_length=1)
    dedup_key: list[str] = Field(min_length=1)
    cases: list[RuleCase] = Field(default_factory=list)
    subjects: SubjectsSpec | None = Field(
        default=None,
        description="How the taxpayers a finding affects are found (per-taxpayer rules).",
    )
    chain: bool | None = Field(
        default=None,
        description="Name each finding's whole request chain (default: unless the entity is a log source).",
    )
    scope: RuleScope | None = Field(
        default=None,
        description="Which part of the store new data can change (detectors.scoped); none: all of it.",
    )
    history: str | None = Field(
        default=None,
        min_length=1,
        description="Why every run judges this rule over all history (a rule without scope).",
    )
    reads: str | list[str] | None = Field(
        default=None,
        min_length=1,
        description="With history: every row its findings can rest on (SQL over"
        " disclosure_events e, bound parameters); judged over all history through it. A"
        " list: a row any item selects, each item scanned alone (detectors.scoped).",
    )
    path: Path | None = Field(default=None, exclude=True)

    @field_validator("severity")
    @classmethod
    def _severity(cls, value: str) -> str:
        if value not in SEVERITIES:
            raise ValueError(f"must be one of {', '.join(SEVERITIES)}")
        return value

    @field_validator("reads")
    @classmethod
    def _reads(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and not all(item.strip() for item in value):
            raise ValueError("every item is a predicate on disclosure_events e")
        return value

    @property
    def read_predicates(self) -> list[str]:
        """``reads`` as its predicates, any of which selects a row (none: no ``reads``)."""
        if self.reads is None:
            return []
        return [self.reads] if isinstance(self.reads, str) else list(self.reads)

    @property
    def template_fields(self) -> list[str]:
        return list(dict.fromkeys(_FIELD_RE.findall(self.explanation)))

    @property
    def links_chain(self) -> bool:
        return self.chain if self.chain is not None else self.entity != "source"


def load_rule(path: Path) -> Rule:
    """Load one rule file; errors name the file and key."""
    try:
        raw = yamlfile.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise RuleError(f"not valid YAML: {exc}", where=str(path), fix="fix the YAML") from exc
    if not isinstance(raw, dict):
        raise RuleError("a rule file is a mapping", where=str(path), fix="see detectors/rules/")
    companion = path.with_suffix(".sql")
    if companion.exists():
        if raw.get("query"):
            raise RuleError(
                "query given twice (inline and in the companion .sql file)",
                where=f"{path}: query",
                fix="keep one",
            )
        raw["query"] = companion.read_text(encoding="utf-8")
    try:
        rule = Rule.model_validate({**raw, "path": path})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise RuleError(
            f"invalid rule: {problems}", where=str(path), fix="correct the named keys"
        ) from exc
    if rule.id != path.stem:
        raise RuleError(
            f"rule id {rule.id!r} differs from its file name",
            where=f"{path}: id",
            fix=f"rename the file {rule.id}.yaml or set id: {path.stem}",
        )
    if not rule.query:
        raise RuleError("rule has no query", where=f"{path}: query", fix=f"add {path.stem}.sql")
    return rule


def load_rules(directory: Path = RULES_DIR) -> list[Rule]:
    """Every rule in ``directory``, discovered by scanning (no list to edit)."""
    rules = [load_rule(p) for p in sorted(directory.glob("*.yaml")) if not p.name.startswith("_")]
    seen: dict[str, Path | None] = {}
    for rule in rules:
        if rule.id in seen:
            raise RuleError(f"duplicate rule id {rule.id!r}", where=str(rule.path), fix="rename")
        seen[rule.id] = rule.path
    return rules


def check_rule_citations(rules: Iterable[Rule], registry: Registry) -> None:
    """Every rule must enforce something the registry holds."""
    for rule in rules:
        for citation in rule.citations:
            if not registry.citation_exists(citation):
                raise RuleError(
                    f"rule cites {citation!r}, which is not in the policy registry",
                    where=f"{rule.path}: citations",
                    fix="cite a registry authority, court order or agreement id",
                )


# --------------------------------------------------------------------------- views


def _refresh_citations(
    con: duckdb.DuckDBPyConnection,
    registry: Registry,
    *,
    events: str = "disclosure_events",
    refresh: str = "true",
) -> int:
    """Classify each DISTINCT legal_authority of ``events`` into ``dw_citations`` and
    refresh disclosure_events.authority_id on the rows matching ``refresh`` (SQL on ``e``).

    Aliases may have changed since ingest; only rows whose id changes are written. A run
    judging part of the store under an unchanged registry refreshes only new batches.
    """
    distinct = [
        r[0]
        for r in con.execute(
            f"SELECT DISTINCT legal_authority FROM {events} WHERE legal_authority IS NOT NULL"
        ).fetchall()
    ]
    readings = [(text, classify_all(text, registry)) for text in distinct]
    rows = [(text, r.status, r.authority_id, list(r.authority_ids)) for text, r in readings]
    con.execute(
        "CREATE OR REPLACE TEMP TABLE dw_citations (legal_authority VARCHAR,"
        " citation_status VARCHAR, authority_id VARCHAR, authority_ids VARCHAR[])"
    )
    if rows:
        con.executemany("INSERT INTO dw_citations VALUES (?, ?, ?, ?)", rows)
    changed_row = con.execute(
        "SELECT count(*) FROM disclosure_events e LEFT JOIN dw_citations c USING (legal_authority)"
        f" WHERE e.authority_id IS DISTINCT FROM c.authority_id AND ({refresh})"
    ).fetchone()
    changed = int(changed_row[0]) if changed_row else 0
    if changed:
        con.execute(
            "UPDATE disclosure_events e SET authority_id = c.authority_id FROM dw_citations c"
            " WHERE e.legal_authority = c.legal_authority"
            f" AND e.authority_id IS DISTINCT FROM c.authority_id AND ({refresh})"
        )
        con.execute(
            "UPDATE disclosure_events e SET authority_id = NULL"
            f" WHERE legal_authority IS NULL AND authority_id IS NOT NULL AND ({refresh})"
        )
    return changed


def _list_regex(patterns: list[str]) -> str:
    # RE2 has no lookahead; an empty class never matches.
    return "|".join(f"(?:{p})" for p in patterns) if patterns else "[^\\s\\S]"


# Agreement ids as logs write them ("IRS/ICE MOU", "irs-ice mou") folded to upper-case
# letters and digits; a folded id two agreements share is dropped rather than guessed.
_AGREEMENT_KEYS_TABLE = """
CREATE OR REPLACE TEMP TABLE dw_agreement_keys AS
SELECT regexp_replace(upper(alias), '[^A-Z0-9]+', '', 'g') AS agreement_key,
       min(agreement_id) AS agreement_id
FROM registry_agreement_aliases
GROUP BY 1
HAVING count(DISTINCT agreement_id) = 1 AND agreement_key <> ''
"""

# Each distinct data-element list folded once (a log has few), as canonical codes
# through the registry's aliases ("SSN" = tin). Joined only where elements are judged: a
# join on a list key inside dw_events would cost every rule.
_ELEMENT_LISTS_TABLE = """
CREATE OR REPLACE TEMP TABLE dw_element_lists AS
SELECT l.data_elements,
       list_transform(l.data_elements, lambda d: coalesce(
           p.element_aliases[trim(regexp_replace(lower(d), '[^a-z0-9]+', '_', 'g'), '_')],
           trim(regexp_replace(lower(d), '[^a-z0-9]+', '_', 'g'), '_'))) AS data_element_codes
FROM (SELECT DISTINCT data_elements FROM disclosure_events WHERE data_elements IS NOT NULL) l
CROSS JOIN dw_params p
"""

_EVENTS_VIEW = """
CREATE OR REPLACE TEMP VIEW dw_events AS
-- authority_id: the one cited authority the event is judged under (of several cited, the
-- first that permits all of it: detectors/authority_choice.py); cited_authorities: all
SELECT e.* REPLACE (coalesce(ch.authority_id, e.authority_id) AS authority_id),
       CASE WHEN len(c.authority_ids) > 0 THEN c.authority_ids
            WHEN e.authority_id IS NOT NULL THEN [e.authority_id]
            ELSE []::VARCHAR[] END AS cited_authorities,
       coalesce(ra.code, upper(trim(e.recipient_agency))) AS recipient_code,
       ra.category AS recipient_category,
       coalesce(ra.resolved_by, 'unknown') AS recipient_resolved_by,
       coalesce(ra.safeguards_status, 'unknown') AS recipient_safeguards_status,
       ra.safeguards_reviewed_on AS recipient_safeguards_reviewed_on,
       ra.safeguards_due_on AS recipient_safeguards_due_on,
       coalesce(da.code, upper(trim(e.disclosing_agency))) AS disclosing_code,
       da.category AS disclosing_category,
       CASE WHEN e.legal_authority IS NULL OR trim(e.legal_authority) = '' THEN 'missing'
            ELSE coalesce(c.citation_status, 'unknown') END AS citation_status,
       a.kind AS auth_kind,
       a.title AS auth_title,
       a.authority_id IS NOT NULL
         AND (a.effective_from IS NULL OR e.occurred_at >= a.effective_from)
         AND (a.effective_to IS NULL OR e.occurred_at < a.effective_to) AS auth_in_force,
       a.effective_from AS auth_effective_from,
       a.effective_to AS auth_effective_to,
       a.recipient_categories AS auth_recipient_categories,
       a.recipient_codes AS auth_recipient_codes,
       a.purposes AS auth_purposes,
       a.data_elements_allowed AS auth_data_elements_allowed,
       a.data_elements_forbidden AS auth_data_elements_forbidden,
       a.written_request AS auth_written_request,
       a.required_elements AS auth_required_elements,
       a.requires_court_order AS auth_requires_court_order,
       a.redisclosure_allowed AS auth_redisclosure_allowed,
       a.case_by_case AS auth_case_by_case,
       a.safeguards_required AS auth_safeguards_required,
       ga.agreement_id AS agreement_ref,
       -- the stated purpose as a registry code: other systems write "State Tax
       -- Administration" or "child-support enforcement" for state_tax_administration
       -- or "Non-Tax Criminal Investigation" (registry purpose codes and purpose_aliases,
       -- compared on letters and digits; a purpose already a registry code is kept as is)
       CASE WHEN e.purpose IS NULL OR list_contains((SELECT purpose_codes FROM dw_params), e.purpose)
            THEN nullif(e.purpose, '')
            ELSE coalesce(
                (SELECT purpose_keys FROM dw_params)[regexp_replace(lower(e.purpose), '[^a-z0-9]+', '', 'g')],
                nullif(trim(regexp_replace(lower(e.purpose), '[^a-z0-9]+', '_', 'g'), '_'), ''))
       END AS purpose_code,
       -- a case number (a court order on record) that is not blank or a placeholder ("N/A")
       CASE WHEN e.case_number IS NULL THEN false
            ELSE regexp_replace(lower(e.case_number), '[^a-z0-9]+', '', 'g') <> ''
                 AND NOT list_contains((SELECT missing_value_keys FROM dw_params),
                                       regexp_replace(lower(e.case_number), '[^a-z0-9]+', '', 'g'))
       END AS case_number_given,
       list_contains($reg_disclosure_event_types, e.event_type) AS is_disclosure,
       list_contains($reg_use_event_types, e.event_type) AS is_use
FROM disclosure_events e
LEFT JOIN dw_agencies ra ON ra.agency = e.recipient_agency
LEFT JOIN dw_agencies da ON da.agency = e.disclosing_agency
LEFT JOIN dw_citations c ON c.legal_authority = e.legal_authority
LEFT JOIN dw_authority_choice ch ON ch.source_system = e.source_system AND ch.event_id = e.event_id
LEFT JOIN registry_authorities a ON a.authority_id = coalesce(ch.authority_id, e.authority_id)
LEFT JOIN dw_agreement_keys ga ON ga.agreement_key = regexp_replace(upper(e.agreement_id), '[^A-Z0-9]+', '', 'g')
"""

_ORDER_HITS_VIEW = """
CREATE OR REPLACE TEMP VIEW dw_order_hits AS
WITH restraint_by_type AS (
    SELECT r.*, unnest(r.event_types) AS restrained_event_type FROM registry_order_restraints r
)
SELECT e.*,
       o.order_id, o.case_name AS order_case, o.court AS order_court, o.docket AS order_docket,
       o.issued AS order_issued, s.status AS order_status, s.valid_from AS order_status_since,
       r.restraint_no, r.description AS restraint_description,
       r.words AS restraint_words, r.reading AS restraint_reading,
       -- the enjoined party acting: the holder named by the restraint, else the discloser
       -- (a holder passing data on is the discloser; one reading it is the recipient)
       CASE WHEN list_contains(r.holder_agencies, e.disclosing_code)
                 OR list_contains(r.holder_categories, e.disclosing_category) THEN e.disclosing_code
            WHEN list_contains(r.holder_agencies, e.recipient_code)
                 OR list_contains(r.holder_categories, e.recipient_category) THEN e.recipient_code
            ELSE e.disclosing_code END AS restrained_code
FROM dw_events e
JOIN restraint_by_type r ON r.restrained_event_type = e.event_type
JOIN registry_court_orders o ON o.order_id = r.order_id
LEFT JOIN dw_element_lists dl ON dl.data_elements = e.data_elements
JOIN registry_order_status s
  ON s.order_id = r.order_id AND s.binding
 AND e.occurred_at >= s.valid_from AND (s.valid_to IS NULL OR e.occurred_at < s.valid_to)
WHERE (len(r.disclosing_agencies) + len(r.disclosing_categories) = 0
       OR list_contains(r.disclosing_agencies, e.disclosing_code)
       OR list_contains(r.disclosing_categories, e.disclosing_category))
  AND (len(r.recipient_agencies) + len(r.recipient_categories) = 0
       OR list_contains(r.recipient_agencies, e.recipient_code)
       OR list_contains(r.recipient_categories, e.recipient_category))
  AND (len(r.holder_agencies) + len(r.holder_categories) = 0
       OR list_contains(r.holder_agencies, e.recipient_code)
       OR list_contains(r.holder_agencies, e.disclosing_code)
       OR list_contains(r.holder_categories, e.recipient_category)
       OR list_contains(r.holder_categories, e.disclosing_category))
  AND (len(r.data_elements) = 0
       OR list_has_any(r.data_elements, coalesce(dl.data_element_codes, e.data_elements)))
  AND (len(r.purposes) = 0 OR list_contains(r.purposes, e.purpose_code))
  AND (r.effective_from IS NULL OR e.occurred_at >= r.effective_from)
  AND (r.effective_to IS NULL OR e.occurred_at < r.effective_to)
  AND NOT EXISTS (
      SELECT 1 FROM registry_order_exceptions x
      WHERE x.order_id = r.order_id AND x.restraint_no = r.restraint_no
        AND (len(x.authorities) = 0 OR list_contains(x.authorities, e.authority_id))
        AND (len(x.purposes) = 0 OR list_contains(x.purposes, e.purpose_code))
        AND (NOT x.requires_case_number OR e.case_number_given))
"""

# The rows where a log's order breaks: detectors.rule_state (one ordered pass over each log,
# kept as state between runs).

# Each item's address verdict is looked up, not computed: refresh_address_verdicts has
# judged every distinct address text once (dwatch/address.py). No text is no address.
_ITEMS_TABLE = """
CREATE OR REPLACE TEMP TABLE dw_items AS
SELECT i.*,
       e.event_type AS carrier_event_type,
       e.occurred_at AS carrier_occurred_at,
       e.source_system AS carrier_source_system,
       coalesce(v.usable, false) AS address_valid,
       coalesce(v.form, 'none') AS address_form,
       coalesce(v.reason, 'blank: no address given') AS address_reason,
       nullif(trim(i.supplied_name), '') IS NOT NULL AS has_name,
       nullif(trim(i.tax_periods), '') IS NOT NULL AS has_tax_periods,
       nullif(trim(i.statute), '') IS NOT NULL AS has_statute,
       nullif(trim(i.reason), '') IS NOT NULL AS has_reason
FROM request_items i
LEFT JOIN address_verdicts v ON v.address_key = md5_number(i.supplied_address)
LEFT JOIN disclosure_events e
  ON e.event_id = i.event_id AND (i.source_system IS NULL OR e.source_system = i.source_system)
 -- logs that number events alike (1, 2, 3...) are told apart by the item's request
 AND (e.request_id IS NULL OR e.request_id = i.request_id)
"""


def _value_key(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "", text.lower())


def _element_key(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def _element_aliases(by_element: dict[str, list[str]]) -> dict[str, str]:
    """Folded spelling -> canonical element, as the events view folds what logs wrote."""
    return {
        _element_key(spelling): element
        for element, spellings in by_element.items()
        for spelling in spellings
        if _element_key(spelling) != element
    }


def _purpose_keys(registry: Registry) -> dict[str, str]:
    """Every purpose the registry names (authorities, orders, aliases), keyed by its
    letters and digits, to its code: "Non-Tax Criminal Investigation" finds
    nontax_criminal_investigation. A key two codes share is left out rather than guessed."""
    codes: set[str] = {p for a in registry.authorities for p in a.purposes}
    for order in registry.court_orders:
        for restraint in order.restraints:
            codes.update(restraint.purposes)
            for exception in restraint.exceptions:
                codes.update(exception.purposes)
    spellings = [(code, code) for code in codes]
    for code, names in registry.parameters.purpose_aliases.items():
        spellings += [(code, code), *((name, code) for name in names)]
    keyed: dict[str, set[str]] = {}
    for spelling, code in spellings:
        keyed.setdefault(_value_key(spelling), set()).add(code)
    return {key: next(iter(found)) for key, found in keyed.items() if key and len(found) == 1}


def registry_parameters(registry: Registry) -> dict[str, Any]:
    """Registry parameters as bound SQL parameters ``reg_<name>`` (+ ``*_regex``)."""
    params: dict[str, Any] = {}
    for name, value in registry.parameters.model_dump(mode="python").items():
        params[f"reg_{name}"] = value
        if name.endswith("_patterns") and isinstance(value, list):
            params[f"reg_{name.removesuffix('_patterns')}_regex"] = _list_regex(value)
    return params


def _bind(sql: str, available: dict[str, Any], where: str) -> dict[str, Any]:
    wanted = dict.fromkeys(_PARAM_RE.findall(sql))
    missing = [w for w in wanted if w not in available]
    if missing:
        raise RuleError(
            f"query uses undefined parameter(s): {', '.join('$' + m for m in missing)}",
            where=where,
            fix="define them under parameters: (or use a registry parameter $reg_<name>)",
        )
    return {w: available[w] for w in wanted}


def _on_base(sql: str, events: str, items: str) -> str:
    """A view or table definition read over other event and item tables (a part of the
    store: :mod:`detectors.scoped`) instead of the whole store."""
    return (
        sql.replace("FROM disclosure_events", f"FROM {events}")
        .replace("JOIN disclosure_events", f"JOIN {events}")
        .replace("FROM request_items", f"FROM {items}")
    )


def located_events_sql(name: str, where: str) -> str:
    """A view ``name`` of ``dw_events``'s rows over the events of the store ``where``
    selects (SQL on ``disclosure_events``, its ``rowid`` included), each with its row id
    (``event_row``): custody keeps a use by it and reads the use back by it
    (:mod:`detectors.custody_state`). Codes and categories are the registry's as in
    ``dw_events``; the authority choice is this judgement's only for the events judged."""
    assert _EVENTS_VIEW.count("FROM disclosure_events e") == 1
    located = f"FROM (SELECT rowid AS event_row, * FROM disclosure_events WHERE {where}) e"
    return (
        _EVENTS_VIEW.replace("VIEW dw_events AS", f"VIEW {name} AS")
        .replace("FROM disclosure_events e", located)
        .replace("$reg_disclosure_event_types", "(SELECT disclosure_event_types FROM dw_params)")
        .replace("$reg_use_event_types", "(SELECT use_event_types FROM dw_params)")
    )


def prepare(
    con: duckdb.DuckDBPyConnection,
    registry: Registry,
    *,
    sync: bool = True,
    events: str = "disclosure_events",
    items: str = "request_items",
    refresh: str = "true",
    log_order: bool = True,
    custody: bool = True,
    materialise: bool = False,
) -> int:
    """Sync the registry and build the views rules read (caller owns the transaction).

    ``events`` and ``items`` name the rows judged (default the whole store; a view over
    a part of it when :mod:`detectors.scoped` judges only what new data touches).
    ``refresh`` (SQL on disclosure_events ``e``) limits the authority_id refresh to new rows when
    the registry is unchanged; ``log_order`` and ``custody`` build the tables only the rules
    reading them need; ``materialise`` resolves ``dw_events`` once into a table (for a part
    of the store many rules read) instead of in every rule's query.
    Returns the number of events whose authority_id the refresh changed.
    """
    if sync:
        sync_registry(con, registry)
    refreshed = _refresh_citations(con, registry, events=events, refresh=refresh)
    con.execute(  # unsynced: kept from the judgement's first prepare (it reads every event)
        f"CREATE {'OR REPLACE TEMP TABLE' if sync else 'TEMP TABLE IF NOT EXISTS'} dw_agencies"
        " AS SELECT * FROM registry_recipient_resolution"
    )
    con.execute(_AGREEMENT_KEYS_TABLE)
    reg = registry_parameters(registry)
    aliases = _element_aliases(reg["reg_data_element_aliases"])
    purposes = _purpose_keys(registry)
    # Views cannot hold parameters, so the event-type lists are inlined as typed literals
    # through a one-row table instead of formatting values into the view text.
    con.execute(
        "CREATE OR REPLACE TEMP TABLE dw_params AS SELECT"
        " $d::VARCHAR[] AS disclosure_event_types, $u::VARCHAR[] AS use_event_types,"
        " $m::VARCHAR[] AS missing_value_keys,"
        " MAP($ak::VARCHAR[], $av::VARCHAR[]) AS element_aliases,"
        " $pc::VARCHAR[] AS purpose_codes, MAP($pk::VARCHAR[], $pv::VARCHAR[]) AS purpose_keys",
        {
            "d": reg["reg_disclosure_event_types"],
            "u": reg["reg_use_event_types"],
            # folded as the view folds case numbers: letters and digits only
            "m": [_value_key(v) for v in reg["reg_missing_value_placeholders"]],
            "ak": list(aliases),
            "av": list(aliases.values()),
            "pc": sorted(set(purposes.values())),
            "pk": list(purposes),
            "pv": list(purposes.values()),
        },
    )
    con.execute(_on_base(_ELEMENT_LISTS_TABLE, events, items))
    events_sql = (
        _on_base(_EVENTS_VIEW, events, items)
        .replace("$reg_disclosure_event_types", "(SELECT disclosure_event_types FROM dw_params)")
        .replace("$reg_use_event_types", "(SELECT use_event_types FROM dw_params)")
    )
    con.execute(CHOICE_COLUMNS)
    con.execute(events_sql)
    choose_authorities(con, reg)
    if materialise:  # a bounded part of the store, read by many rules: resolved once
        con.execute("CREATE OR REPLACE TEMP TABLE dw_events_rows AS SELECT * FROM dw_events")
        con.execute("CREATE OR REPLACE TEMP VIEW dw_events AS SELECT * FROM dw_events_rows")
    con.execute(_ORDER_HITS_VIEW)
    refresh_address_verdicts(con, vocabulary_of(registry), items=items)
    con.execute(_on_base(_ITEMS_TABLE, events, items))
    if log_order:
        rule_state.prepare_log_order(
            con,
            lambda sql: _on_base(sql, events, items),
            whole=events == "disclosure_events",  # every log whole: sorted narrow
        )
    if custody:
        prepare_custody(con)
    return refreshed


# --------------------------------------------------------------------------- running


@dataclass
class RuleRun:
    rule_id: str
    findings: int
    seconds: float


@dataclass
class DetectResult:
    run_id: str
    registry_version: str
    rules: list[RuleRun] = field(default_factory=list)
    merge: MergeResult | None = None
    coverage_flagged: int = 0
    citations_refreshed: int = 0
    # what was read besides new data and why (detectors.scoped); empty: all history
    revisits: list[str] = field(default_factory=list)

    @property
    def findings(self) -> int:
        return sum(r.findings for r in self.rules)


def _render_value_sql(column: str, dtype: str) -> str:
    col = f"f.{column}"
    if dtype.endswith("[]"):
        return f"coalesce(array_to_string({col}, ', '), '')"
    if dtype.startswith("TIMESTAMP"):
        return f"coalesce(strftime({col}, '%Y-%m-%d %H:%M UTC'), 'unknown time')"
    if dtype == "DATE":
        return f"coalesce(strftime({col}, '%Y-%m-%d'), 'unknown date')"
    if dtype in {"DOUBLE", "FLOAT"}:
        return f"coalesce(format('{{:,.2f}}', {col}), '-')"
    if dtype in {"BIGINT", "INTEGER", "HUGEINT", "UBIGINT", "SMALLINT"}:
        return f"coalesce(format('{{:,d}}', {col}), '-')"
    return f"coalesce(CAST({col} AS VARCHAR), '-')"


def _evidence_sql(types: dict[str, str]) -> str:
    """Everything a finding carries beyond the alert columns, kept as evidence."""
    extra = [
        c
        for c in types
        if c not in _REQUIRED_OUTPUT and c not in _OPTIONAL_OUTPUT and c not in _NOT_EVIDENCE
    ]
    if not extra:
        return "NULL::JSON"
    return "to_json(struct_pack(" + ", ".join(f'"{c}" := f."{c}"' for c in extra) + "))"


def _explanation_sql(rule: Rule, types: dict[str, str], params: dict[str, Any]) -> str:
    pieces: list[str] = []
    pos = 0
    for n, m in enumerate(_FIELD_RE.finditer(rule.explanation)):
        literal = rule.explanation[pos : m.start()]
        if literal:
            params[f"_t{n}"] = literal
            pieces.append(f"$_t{n}")
        pieces.append(_render_value_sql(m.group(1), types[m.group(1)]))
        pos = m.end()
    tail = rule.explanation[pos:]
    if tail:
        params["_tail"] = tail
        pieces.append("$_tail")
    if "evidence_sources" in types:
        pieces.append(evidence.SOURCES_NOTE_SQL)
    return f"concat({', '.join(pieces)})"


# A finding's citations in one order whatever order its rows were read in (list_distinct
# and list(DISTINCT ...) keep none): the rule's own in the order its YAML gives them, then
# every other registry id its rows cite, sorted; none at all: the rule's own.
_CITATIONS_SQL = (
    "coalesce(nullif(list_transform(list_sort(list_transform(list_distinct(list_filter("
    "CAST(f.citations AS VARCHAR[]), lambda c: c IS NOT NULL)), lambda c: {'own':"
    " coalesce(list_position($_citations, c), len($_citations) + 1), 'id': c})),"
    " lambda k: k.id), []::VARCHAR[]), $_citations)"
)


def _column_types(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
    return {row[0]: str(row[1]) for row in con.execute(f"DESCRIBE {table}").fetchall()}


def _run_query(con: duckdb.DuckDBPyConnection, rule: Rule, registry: Registry) -> dict[str, str]:
    """The rule's query into ``_rule_rows``; its column types, checked against the rule."""
    where = f"{rule.path}: query"
    available = {
        **registry_parameters(registry),
        **rule.parameters,
        "rule_citations": rule.citations,
    }
    for name, value in rule.parameters.items():
        if name.endswith("_patterns") and isinstance(value, list):
            available[f"{name.removesuffix('_patterns')}_regex"] = _list_regex(value)
    query = rule.query or ""
    try:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE _rule_rows AS {query}", _bind(query, available, where)
        )
    except duckdb.Error as exc:
        raise RuleError(f"query failed: {exc}", where=where, fix="fix the rule's SQL") from exc
    types = _column_types(con, "_rule_rows")
    needed = [*_REQUIRED_OUTPUT, *rule.dedup_key, *rule.template_fields]
    if rule.subjects is not None and rule.subjects.source == "query":
        needed.append("subjects")
    # event_ids may come as event_keys; the engine counts a rule's declared subjects itself
    provided = {"event_ids"} if "event_keys" in types else set()
    if rule.subjects is not None:
        provided.add("subjects_affected")
    missing = [c for c in dict.fromkeys(needed) if c not in types and c not in provided]
    if missing:
        raise RuleError(
            f"query does not return column(s) {', '.join(missing)} named by the rule",
            where=f"{rule.path}: dedup_key/explanation/subjects",
            fix="return them from the query or correct the names",
        )
    return types


def _keyed_findings(
    con: duckdb.DuckDBPyConnection, rule: Rule, types: dict[str, str], *, table: str
) -> tuple[dict[str, str], int]:
    """``_findings``: the rows with their alert ids, evidence keys, chains and subjects;
    its column types and rows (none: nothing derived, the types are the query's)."""
    key_parts = ", ".join(["$_rule_id", *(f"CAST(f.{k} AS VARCHAR)" for k in rule.dedup_key)])
    derived_ids = (
        ", list_transform(f.event_keys, lambda k: CAST(k.event_id AS VARCHAR)) AS event_ids"
        if "event_keys" in types and "event_ids" not in types
        else ""
    )
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE _findings AS SELECT {ALERT_ID_SQL.format(parts=key_parts)}"
        f" AS _alert_id, f.*{derived_ids} FROM _rule_rows f",
        {"_rule_id": rule.id},
    )
    con.execute("DROP TABLE _rule_rows")
    try:
        found = evidence.record(
            con,
            _column_types(con, "_findings"),
            candidates=table,
            subjects=rule.subjects,
            chain=rule.links_chain,
        )
    except (duckdb.Error, ValueError) as exc:
        raise RuleError(
            f"its findings' evidence or subjects could not be derived: {exc}",
            where=f"{rule.path}: subjects",
            fix="return event_keys/event_ids as documented, and subjects as a list of structs",
        ) from exc
    return (_column_types(con, "_findings") if found else types), found


def keep_partitions(
    con: duckdb.DuckDBPyConnection, rule: Rule, types: dict[str, str], parts: str
) -> None:
    """Drop the query's findings outside the partitions in ``parts`` (column ``part``):
    rows read only for context would make partial findings there."""
    by = rule.scope.by if rule.scope else None
    if by is None or by not in types:
        raise RuleError(
            f"scope.by {by!r}: the query does not return that column",
            where=f"{rule.path}: scope",
            fix=f"return {by} from the query, or remove scope to judge all history",
        )
    con.execute(
        f"DELETE FROM _rule_rows f WHERE NOT EXISTS (SELECT 1 FROM {parts} p"
        f" WHERE p.part IS NOT DISTINCT FROM CAST(f.{by} AS VARCHAR))"
    )


def run_rule(
    con: duckdb.DuckDBPyConnection,
    rule: Rule,
    registry: Registry,
    *,
    table: str,
    parts: str | None = None,
) -> RuleRun:
    """Evaluate one rule set-wise into ``table`` (alert columns). Views must be prepared.

    ``parts`` (a table of ``part``): keep only findings in these partitions of the rule's
    ``scope.by`` (:mod:`detectors.scoped`)."""
    started = time.perf_counter()
    query_types = _run_query(con, rule, registry)
    if parts is not None:
        keep_partitions(con, rule, query_types, parts)
    types, found = _keyed_findings(con, rule, query_types, table=table)
    if not found:  # no alert row to make: the statements below would write none
        con.execute("DROP TABLE _findings")
        return RuleRun(rule.id, 0, time.perf_counter() - started)
    params: dict[str, Any] = {
        "_rule_id": rule.id,
        "_version": rule.version,
        "_severity": rule.severity,
        "_entity": rule.entity,
        "_citations": rule.citations,
        "_registry_version": registry.version,
        "_cap": EVIDENCE_EVENT_CAP,
    }

    def opt(col: str, default: str = "NULL") -> str:
        return f"f.{col}" if col in types else default

    explanation = _explanation_sql(rule, types, params)
    select = {
        "alert_id": "f._alert_id",
        "detector_id": "$_rule_id",
        "detector_kind": "'rule'",
        "detector_version": "$_version",
        "severity": "$_severity",
        "score": opt("score", "NULL::DOUBLE"),
        "entity_type": "$_entity",
        "entity_id": "CAST(f.entity_id AS VARCHAR)",
        "disclosing_agency": opt("disclosing_agency"),
        "recipient_agency": opt("recipient_agency"),
        "request_id": opt("request_id"),
        "actor_id": opt("actor_id"),
        "source_system": opt("source_system"),
        "window_start": "f.window_start",
        "window_end": "f.window_end",
        "event_ids": "list_sort(f.event_ids)[1:$_cap]",
        "event_count": opt("event_count", "len(f.event_ids)"),
        "subjects_affected": opt("subjects_affected", "NULL::BIGINT"),
        "records_affected": opt("records_affected", "NULL::BIGINT"),
        "evidence": "to_json(f.evidence)" if "evidence" in types else _evidence_sql(types),
        "citations": _CITATIONS_SQL if "citations" in types else "$_citations",
        "explanation": explanation,
        "coverage_incomplete": "false",
        "registry_version": "$_registry_version",
    }
    assert tuple(select) == ALERT_COLUMNS
    cols = ", ".join(f"{expr} AS {name}" for name, expr in select.items())
    sql = f"INSERT INTO {table} SELECT {cols} FROM _findings f"
    con.execute(sql, params)
    con.execute("DROP TABLE _findings")
    return RuleRun(rule.id, found, time.perf_counter() - started)


def _create_candidates(con: duckdb.DuckDBPyConnection, table: str) -> None:
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT * EXCLUDE (status, retracted_reason,"
        " first_run_id, last_run_id, first_detected_at, last_detected_at, retracted_at)"
        " FROM alerts WHERE false"
    )
    evidence.create_tables(con, table)


def evaluate_rules(
    con: duckdb.DuckDBPyConnection,
    registry: Registry,
    rules: list[Rule],
    *,
    table: str = "dw_candidates",
    sync: bool = True,
) -> list[RuleRun]:
    """Prepare the views and evaluate ``rules`` into the temp table ``table``."""
    runs, _ = _evaluate(con, registry, rules, table=table, sync=sync)
    return runs


def _evaluate(
    con: duckdb.DuckDBPyConnection,
    registry: Registry,
    rules: list[Rule],
    *,
    table: str,
    sync: bool,
) -> tuple[list[RuleRun], int]:
    check_rule_citations(rules, registry)
    refreshed = prepare(con, registry, sync=sync)
    evidence.forget_chains(con)
    if rule_state.available(con):  # the chain links, kept for runs judging new batches
        chain_state.rebuild(con)
    _create_candidates(con, table)
    return [run_rule(con, rule, registry, table=table) for rule in rules], refreshed


def _explain_retractions(con: duckdb.DuckDBPyConnection, run_id: str, version: str) -> None:
    """Say why: the registry changed, or the data did; best, a cited court order that
    stopped binding over the alert's window."""
    # A retracted alert keeps the registry version it was last judged under.
    con.execute(
        """
        UPDATE alerts SET retracted_reason = CASE
            WHEN registry_version IS DISTINCT FROM $version
            THEN 'no longer holds under registry version ' || $version
                 || ' (last judged under ' || coalesce(registry_version, 'an unknown version') || ')'
            ELSE 'no longer found in the data (registry version ' || $version || ' unchanged)'
        END
        WHERE status = 'retracted' AND last_run_id = $run_id
        """,
        {"version": version, "run_id": run_id},
    )
    con.execute(
        """
        UPDATE alerts a SET retracted_reason = r.reason FROM (
            SELECT a.alert_id,
                   string_agg('court order ' || o.order_id || ' (' || o.case_name || ', ' || o.court
                              || ' ' || o.docket || ') ' || s.status || ' on '
                              || strftime(s.valid_from, '%Y-%m-%d'), '; ' ORDER BY o.order_id)
                   || ' (registry version ' || $version || ')' AS reason
            FROM alerts a, unnest(a.citations) AS c(citation)
            JOIN registry_court_orders o ON o.order_id = c.citation
            JOIN registry_order_status s
              ON s.order_id = o.order_id AND NOT s.binding
             AND s.valid_from <= coalesce(a.window_end, s.valid_from)
            WHERE a.status = 'retracted' AND a.last_run_id = $run_id
            GROUP BY a.alert_id
        ) r WHERE a.alert_id = r.alert_id
        """,
        {"version": version, "run_id": run_id},
    )


def run_rules(
    con: duckdb.DuckDBPyConnection,
    registry: Registry,
    *,
    run_id: str,
    rules: list[Rule] | None = None,
) -> DetectResult:
    """Judge the whole store by the registry and merge findings into ``alerts``.

    Re-evaluates all history (the registry may have changed), retracting findings that
    no longer hold with the reason, then marks alerts touching coverage gaps. Caller owns
    the transaction.
    """
    chosen = rules if rules is not None else load_rules()
    result = DetectResult(run_id=run_id, registry_version=registry.version)
    result.rules, result.citations_refreshed = _evaluate(
        con, registry, chosen, table="dw_candidates", sync=True
    )
    result.merge = merge_alerts(
        con,
        "dw_candidates",
        detector_ids=[r.id for r in chosen],
        run_id=run_id,
        retract_reason=f"finding no longer holds under registry version {registry.version}",
        subjects="dw_candidates_subjects",
        events="dw_candidates_events",
    )
    rule_state.save_full(con, run_id, registry.version)  # what a run judging new batches continues
    _explain_retractions(con, run_id, registry.version)
    result.coverage_flagged = mark_coverage(con)
    return result


# --------------------------------------------------------------------------- cases


def _case_value(value: Any) -> Any:
    if isinstance(value, date) and not isinstance(value, datetime):
        return datetime(value.year, value.month, value.day)
    return value


CASE_DEFAULTS_FILE = RULES_DIR / "_case_defaults.yaml"


def case_event_defaults(path: Path = CASE_DEFAULTS_FILE) -> dict[str, Any]:
    """The values each case event starts from (data next to the rules)."""
    loaded = yamlfile.safe_load(path.read_text(encoding="utf-8")) or {}
    return dict(loaded.get("events") or {})


def load_case(con: duckdb.DuckDBPyConnection, case: RuleCase) -> None:
    """Insert a case's events, request items and quarantine rows (SQL, bound values)."""
    seq: dict[str, int] = {}
    defaults = case_event_defaults()
    for n, raw in enumerate(case.events, start=1):
        event = {**defaults, **raw}
        event.setdefault("event_id", f"E{n}")
        source = str(event["source_system"])
        seq[source] = seq.get(source, 0) + 1
        event.setdefault("sequence_no", seq[source])
        cols = list(event)
        marks = ", ".join(
            "?::TIMESTAMPTZ"
            if c == "occurred_at"
            else "?::VARCHAR[]"
            if c == "data_elements"
            else "?"
            for c in cols
        )
        con.execute(
            f"INSERT INTO disclosure_events ({', '.join(cols)}) VALUES ({marks})",
            [_case_value(event[c]) for c in cols],
        )
    for n, raw in enumerate(case.request_items, start=1):
        item = {"item_no": n, **raw}
        cols = list(item)
        con.execute(
            f"INSERT INTO request_items ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})",
            [item[c] for c in cols],
        )
    for raw in case.quarantine:
        row = {"ingest_run_id": "case-run", "source_file": "case.csv", "message": "case", **raw}
        cols = list(row)
        con.execute(
            f"INSERT INTO quarantine ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})",
            [row[c] for c in cols],
        )


# --------------------------------------------------------------------------- the detect step


def new_run_id() -> str:
    return "det_" + datetime.now().strftime("%Y%m%dT%H%M%S") + "_" + uuid.uuid4().hex[:6]


def detect_rules(
    con: duckdb.DuckDBPyConnection,
    *,
    registry: Registry | None = None,
    registry_path: Path | None = None,
    rules_dir: Path = RULES_DIR,
    run_id: str | None = None,
) -> DetectResult:
    """Load the registry and rules, judge the store, merge alerts - one transaction."""
    from dwatch.policy import load_registry
    from dwatch.store import transaction

    judged_by = registry or load_registry(registry_path)
    rules = load_rules(rules_dir)
    with transaction(con):
        return run_rules(con, judged_by, run_id=run_id or new_run_id(), rules=rules)


def summarise(result: DetectResult) -> str:
    lines = [
        f"detect run {result.run_id} (registry {result.registry_version})",
        f"  {len(result.rules)} rule(s), {result.findings} finding(s)"
        + (
            f", authority_id refreshed on {result.citations_refreshed:,} event(s)"
            if result.citations_refreshed
            else ""
        ),
    ]
    if result.merge:
        m = result.merge
        lines.append(
            f"  alerts: {m.new} new, {m.updated} updated, {m.reopened} reopened, {m.retracted} retracted"
            f"; {result.coverage_flagged} open alert(s) touch a coverage gap"
        )
    lines += [f"  read: {line}" for line in result.revisits]
    for run in sorted(result.rules, key=lambda r: -r.findings):
        if run.findings:
            lines.append(f"  {run.rule_id:<36} {run.findings:>6} finding(s)  {run.seconds:6.2f}s")
    return "\n".join(lines)
