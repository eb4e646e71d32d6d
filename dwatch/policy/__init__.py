"""The policy registry: the law as data, and the citation grammar that reads logs against it.

Public interface (others depend on these names):
``load_registry(path=None) -> Registry``, ``normalise_citation(text, registry)``,
``classify_citation(text, registry)``, ``sync_registry(con, registry)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dwatch.policy.citations import (
    CitationStatus,
    Classification,
    ParsedCitation,
    classify,
    classify_all,
    parse_citation,
)
from dwatch.policy.registry import DEFAULT_REGISTRY_DIR, Registry, load_registry, with_entries

if TYPE_CHECKING:
    import duckdb

__all__ = [
    "DEFAULT_REGISTRY_DIR",
    "CitationStatus",
    "Classification",
    "ParsedCitation",
    "Registry",
    "classify_all",
    "classify_citation",
    "load_registry",
    "normalise_citation",
    "parse_citation",
    "sync_registry",
    "with_entries",
]


def normalise_citation(text: str | None, registry: Registry) -> str | None:
    """The registry authority id the citation text means, or None when unrecognised."""
    status, authority_id = classify(text, registry)
    return authority_id if status == "ok" else None


def classify_citation(text: str | None, registry: Registry) -> tuple[CitationStatus, str | None]:
    """('ok'|'general'|'unknown'|'malformed'|'missing', the first authority named or None)."""
    return classify(text, registry)


def sync_registry(con: duckdb.DuckDBPyConnection, registry: Registry) -> None:
    """Materialise the registry into the store's registry_* tables."""
    from dwatch.policy.sync import sync_registry as _sync

    _sync(con, registry)
