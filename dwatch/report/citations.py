"""What the citation ids on alerts mean: names, kinds and dates from the policy registry.

Alerts cite registry ids (authorities, court orders, agreements). Reports show their names
and dates. The registry is read from ``dwatch.policy.load_registry`` when it loads, else from
the ``registry_*`` tables in the store, else the report shows the raw ids and says why.
Nothing here names an agency, a statute or a date: all of it comes from the registry.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import duckdb

# Registry collections and the kind each one holds.
KINDS: dict[str, str] = {
    "authorities": "authority",
    "court_orders": "court_order",
    "agreements": "agreement",
    "recipients": "recipient",
}
_NAME_FIELDS = (
    "name",
    "title",
    "case",
    "case_name",
    "caption",
    "short_name",
    "label",
    "citation",
    "summary",
)
_ID_FIELDS = (
    "id",
    "authority_id",
    "court_order_id",
    "order_id",
    "agreement_id",
    "recipient_id",
    "code",
)
_CATEGORY_FIELDS = ("category", "authority_category", "kind", "type")
_REFERENCE_FIELDS = ("court", "docket", "case_number", "statute")


@dataclass(frozen=True)
class CitationInfo:
    citation_id: str
    kind: str  # authority | court_order | agreement | recipient | unknown
    name: str | None = None
    category: str | None = None
    reference: str | None = None  # docket / court / statute text, when the registry has one
    dates: tuple[tuple[str, date], ...] = ()  # (label, date), e.g. ("issued", 2025-11-21)

    @property
    def label(self) -> str:
        return f"{self.name} ({self.citation_id})" if self.name else self.citation_id


@dataclass
class CitationDirectory:
    entries: dict[str, CitationInfo] = field(default_factory=dict)
    source: str = "none"
    version: str | None = None
    note: str | None = None  # why the registry was not used, shown in reports

    def lookup(self, citation_id: str) -> CitationInfo:
        return self.entries.get(citation_id) or CitationInfo(citation_id, "unknown")

    def court_orders(self, citations: Iterable[str] | None) -> list[str]:
        return sorted({c for c in citations or () if self.lookup(c).kind == "court_order"})

    def of_kind(self, kind: str) -> list[CitationInfo]:
        return [e for e in self.entries.values() if e.kind == kind]

    @property
    def available(self) -> bool:
        return bool(self.entries)


def _as_mapping(item: Any) -> dict[str, Any]:
    if isinstance(item, Mapping):
        return dict(item)
    if hasattr(item, "model_dump"):
        return dict(item.model_dump())
    if dataclasses.is_dataclass(item) and not isinstance(item, type):
        return dataclasses.asdict(item)
    return {k: v for k, v in vars(item).items() if not k.startswith("_")}


def _first(record: Mapping[str, Any], names: Iterable[str]) -> str | None:
    for name in names:
        value = record.get(name)
        if value not in (None, ""):
            return str(value)
    return None


def _as_date(value: Any) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return None


def _dates(record: Mapping[str, Any]) -> tuple[tuple[str, date], ...]:
    """Top-level dates (issued, effective from) and a status history's changes (stayed, ...)."""
    found: list[tuple[str, date]] = []
    for key, value in record.items():
        if (day := _as_date(value)) is not None:
            found.append((key.replace("_", " "), day))
    for change in record.get("status_history") or ():
        if isinstance(change, Mapping):
            day = _as_date(change.get("on") or change.get("from"))
            if day is not None:
                found.append((str(change.get("status") or "status change").replace("_", " "), day))
    return tuple(sorted(set(found), key=lambda pair: (pair[1], pair[0])))


def _reference(record: Mapping[str, Any]) -> str | None:
    parts = [str(record[f]) for f in _REFERENCE_FIELDS if record.get(f) not in (None, "")]
    return ", ".join(parts) or None


def _entry(kind: str, record: Mapping[str, Any], fallback_id: str | None) -> CitationInfo | None:
    citation_id = _first(record, _ID_FIELDS) or fallback_id
    if not citation_id:
        return None
    return CitationInfo(
        citation_id=citation_id,
        kind=kind,
        name=_first(record, _NAME_FIELDS),
        category=_first(record, _CATEGORY_FIELDS) if kind in ("authority", "recipient") else None,
        reference=_reference(record),
        dates=_dates(record),
    )


def directory_from_registry(registry: Any, source: str = "policy registry") -> CitationDirectory:
    """Build the directory from a registry object (collections as dicts keyed by id or lists)."""
    entries: dict[str, CitationInfo] = {}
    for collection, kind in KINDS.items():
        items = getattr(registry, collection, None)
        if items is None and isinstance(registry, Mapping):
            items = registry.get(collection)
        if not items:
            continue
        pairs = items.items() if isinstance(items, Mapping) else ((None, i) for i in items)
        for key, item in pairs:
            entry = _entry(kind, _as_mapping(item), key)
            if entry is not None:
                entries[entry.citation_id] = entry
    version = getattr(registry, "version", None)
    if version is None and isinstance(registry, Mapping):
        version = registry.get("version")
    return CitationDirectory(
        entries, source=source, version=None if version is None else str(version)
    )


def directory_from_tables(con: duckdb.DuckDBPyConnection) -> CitationDirectory:
    """Build the directory from ``registry_<collection>`` tables, when the store has them."""
    present = {
        row[0]
        for row in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_name LIKE 'registry_%'"
        ).fetchall()
    }
    entries: dict[str, CitationInfo] = {}
    for collection, kind in KINDS.items():
        table = f"registry_{collection}"
        if table not in present:
            continue
        cursor = con.execute(f'SELECT * FROM "{table}"')
        columns = [d[0] for d in cursor.description]
        records = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
        if kind == "court_order" and "registry_order_status" in present:
            history: dict[str, list[dict[str, Any]]] = {}
            for order_id, status, valid_from in con.execute(
                "SELECT order_id, status, valid_from FROM registry_order_status ORDER BY valid_from"
            ).fetchall():
                history.setdefault(order_id, []).append({"status": status, "on": valid_from})
            for record in records:
                record["status_history"] = history.get(record.get("order_id"), [])
        for record in records:
            entry = _entry(kind, record, None)
            if entry is not None:
                entries.setdefault(entry.citation_id, entry)
    version = None
    if "registry_versions" in present:
        latest = con.execute(
            "SELECT registry_version FROM registry_versions ORDER BY last_synced_at DESC LIMIT 1"
        ).fetchall()
        version = latest[0][0] if latest else None
    source = "registry tables in the store" if entries else "none"
    return CitationDirectory(entries, source=source, version=version)


def load_directory(
    con: duckdb.DuckDBPyConnection | None = None, registry: Any | None = None
) -> CitationDirectory:
    """The best available directory: a given registry, the policy package, the store tables."""
    if registry is not None:
        return directory_from_registry(registry)
    reasons: list[str] = []
    try:
        policy = importlib.import_module("dwatch.policy")
        loaded = directory_from_registry(policy.load_registry())
        if loaded.available:
            return loaded
        reasons.append("the policy registry is empty")
    except Exception as exc:  # any failure means: fall back, and say why in the report
        reasons.append(f"policy registry not loaded ({type(exc).__name__}: {exc})")
    if con is not None:
        from_tables = directory_from_tables(con)
        if from_tables.available:
            return from_tables
        reasons.append("no registry_* tables in the store")
    return CitationDirectory(
        source="none",
        note="; ".join(reasons) + ". Citations are shown as raw registry ids.",
    )
