"""Load the policy registry from YAML, check it against the schema, index it.

The registry is a folder of YAML files (``policies/`` by default). Each file holds one or
more top-level sections: ``registry`` (header with the version), ``authorities``,
``court_orders``, ``agreements``, ``recipients``, ``recipient_patterns``, ``parameters``.
Every problem is reported with its file and key path (``court_orders[1].status_history[0].from``)
and all problems are reported at once.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from dwatch import yamlfile
from dwatch.errors import RegistryError
from dwatch.policy.citations import ParsedCitation, _alias_key, parse_citation, placeholder_key
from dwatch.policy.custody import Reconciliation, RetentionTerm
from dwatch.policy.models import (
    Agreement,
    Authority,
    CourtOrder,
    Parameters,
    Recipient,
    RecipientPattern,
    RegistryHeader,
    SafeguardsReview,
    SafeguardsReviewEntry,
    as_instant,
)

DEFAULT_REGISTRY_DIR = Path(__file__).resolve().parents[2] / "policies"

_LIST_SECTIONS: dict[str, type[BaseModel]] = {
    "authorities": Authority,
    "court_orders": CourtOrder,
    "agreements": Agreement,
    "recipients": Recipient,
    "recipient_patterns": RecipientPattern,
    "safeguard_reviews": SafeguardsReviewEntry,
    "reconciliations": Reconciliation,
    "retention_terms": RetentionTerm,
}
_KEYS = {
    "authorities": "id",
    "court_orders": "id",
    "agreements": "id",
    "recipients": "code",
    "reconciliations": "id",
    "retention_terms": "id",
}


@dataclass
class Registry:
    """The law as data, with indexes the citation normaliser and the engine use."""

    version: str
    header: RegistryHeader
    authorities: list[Authority]
    court_orders: list[CourtOrder]
    agreements: list[Agreement]
    recipients: list[Recipient]
    recipient_patterns: list[RecipientPattern]
    parameters: Parameters
    files: list[Path]
    origin: dict[str, str] = field(default_factory=dict)  # entry id -> "file: key"
    reconciliations: list[Reconciliation] = field(default_factory=list)
    retention_terms: list[RetentionTerm] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.authorities_by_id = {a.id: a for a in self.authorities}
        self.authority_ids = frozenset(self.authorities_by_id)
        self.court_orders_by_id = {o.id: o for o in self.court_orders}
        self.agreements_by_id = {a.id: a for a in self.agreements}
        self.recipients_by_code = {r.code: r for r in self.recipients}
        self._agency_keys = agency_index(self.recipients)
        # Sections keyed in lower case (the grammar folds case); spelled as registered.
        self.known_sections: dict[str, set[str]] = {}
        self.section_spelling: dict[str, str] = {}
        for auth in self.authorities:
            if m := _USC_ID.match(auth.id):
                self.known_sections.setdefault(m.group(2).lower(), set()).add(m.group(1))
                self.section_spelling[m.group(2).lower()] = m.group(2)
        self.alias_index: dict[str, str] = {}
        for auth in self.authorities:
            for alias in [auth.id, *auth.aliases]:
                self.alias_index[_alias_key(alias)] = auth.id
        self._subdivisions = {
            a.id: frozenset(s.lower() for s in a.subdivisions) for a in self.authorities
        }
        self.missing_citation_placeholders = frozenset(
            placeholder_key(p) for p in self.parameters.missing_citation_placeholders
        )

    def subdivisions_of(self, authority_id: str) -> frozenset[str]:
        """The subdivisions (relative, lower case: '(a)', '(b)(i)') that resolve to it."""
        return self._subdivisions.get(authority_id, frozenset())

    def resolve_agency(self, written: str) -> str:
        """The registry code an agency written any way names, as events are resolved
        (code or alias, then folded against codes, aliases and names); else as written,
        upper case."""
        return _resolve(self._agency_keys, written)

    def citation_exists(self, citation: str) -> bool:
        """True for an authority, court order or agreement id."""
        return (
            citation in self.authorities_by_id
            or citation in self.court_orders_by_id
            or citation in self.agreements_by_id
        )


def _folded(text: str) -> str:
    # as registry_recipient_resolution folds: upper case, '&' read as AND, only A-Z0-9
    return re.sub(r"[^A-Z0-9]+", "", text.upper().replace("&", " AND "))


def agency_index(recipients: list[Recipient]) -> dict[str, str]:
    """Every spelling of every recipient -> its code: exact codes and aliases (upper
    case), then folded codes, aliases and names; a folded key two codes share is left out
    rather than guessed (the store's resolution view does the same)."""
    exact: dict[str, str] = {}
    folded: dict[str, set[str]] = {}
    for rank in (1, 2):
        for r in recipients:
            spellings = [r.code, *r.aliases] if rank == 1 else [r.name]
            for spelling in spellings:
                if rank == 1:
                    exact.setdefault(spelling.strip().upper(), r.code)
                key = _folded(spelling)
                if key and (rank == 1 or key not in folded):
                    folded.setdefault(key, set()).add(r.code)
    index = {f"~{key}": next(iter(codes)) for key, codes in folded.items() if len(codes) == 1}
    index.update(exact)
    return index


def _resolve(index: dict[str, str], written: str) -> str:
    upper = written.strip().upper()
    return index.get(upper) or index.get(f"~{_folded(written)}") or upper


def _apply_reviews(
    recipients: list[Recipient], reviews: list[SafeguardsReviewEntry], where: str
) -> tuple[list[Recipient], list[str]]:
    """Each review replaces its recipient's safeguards; the recipient is named any way."""
    index = agency_index(recipients)
    by_code = {r.code: r for r in recipients}
    problems: list[str] = []
    for i, review in enumerate(reviews):
        code = _resolve(index, review.recipient)
        if code not in by_code:
            problems.append(
                f"{where}: safeguard_reviews[{i}].recipient: {review.recipient!r} names no"
                " registry recipient; add it to recipients (code, name, category) or correct it"
            )
            continue
        by_code[code] = by_code[code].model_copy(
            update={
                "safeguards": SafeguardsReview(
                    status=review.status,
                    reviewed_on=review.reviewed_on,
                    due_on=review.due_on,
                    note=review.note,
                )
            }
        )
    return [by_code[r.code] for r in recipients], problems


# "26 USC 6103(i)(2)" -> ("26", "6103"); "5 USC 552a(b)(7)" -> ("5", "552a")
_USC_ID = re.compile(r"^(\d+) USC (\d+[A-Za-z]*)")


def _fmt_loc(prefix: str, loc: tuple[int | str, ...]) -> str:
    out = prefix
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _read_yaml(path: Path) -> Any:
    try:
        return yamlfile.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise RegistryError(
            f"not valid YAML: {getattr(exc, 'problem', exc)}",
            where=where,
            fix="fix the YAML syntax at that line",
        ) from exc
    except OSError as exc:
        raise RegistryError(
            f"cannot read registry file: {exc}", where=str(path), fix="check the path"
        ) from exc


def registry_files(path: Path | None = None) -> list[Path]:
    root = Path(path) if path is not None else DEFAULT_REGISTRY_DIR
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise RegistryError(
            "registry path does not exist",
            where=str(root),
            fix="pass a folder of registry YAML files or one YAML file",
        )
    files = sorted(
        p for p in root.iterdir() if p.suffix in {".yaml", ".yml"} and not p.name.startswith("_")
    )
    if not files:
        raise RegistryError(
            "no registry YAML files found", where=str(root), fix="add policies/*.yaml"
        )
    return files


def load_registry(path: Path | None = None) -> Registry:
    """Load, validate and index the registry at ``path`` (folder or file; default policies/)."""
    files = registry_files(path)
    problems: list[str] = []
    header: RegistryHeader | None = None
    params: dict[str, Any] = {}
    entries: dict[str, list[Any]] = {name: [] for name in _LIST_SECTIONS}
    origin: dict[str, str] = {}
    seen_keys: dict[tuple[str, str], str] = {}
    digest = hashlib.sha256()

    for file in files:
        digest.update(file.name.encode() + b"\0" + file.read_bytes() + b"\0")
        doc = _read_yaml(file)
        if doc is None:
            continue
        if not isinstance(doc, dict):
            problems.append(f"{file}: top level must be a mapping of sections")
            continue
        for section, body in doc.items():
            if str(section).startswith("x-"):
                continue  # a YAML anchor's home ("x-statute: &statute"), not a section
            if section == "registry":
                try:
                    header = RegistryHeader.model_validate(body)
                except ValidationError as exc:
                    problems += [
                        f"{file}: {_fmt_loc('registry', e['loc'])}: {e['msg']}"
                        for e in exc.errors()
                    ]
                continue
            if section == "parameters":
                if not isinstance(body, dict):
                    problems.append(f"{file}: parameters: must be a mapping")
                    continue
                for k, v in body.items():
                    if k in params:
                        problems.append(f"{file}: parameters.{k}: defined twice")
                    params[k] = v
                    origin[f"parameters.{k}"] = str(file)
                continue
            model = _LIST_SECTIONS.get(section)
            if model is None:
                problems.append(
                    f"{file}: {section}: unknown section (expected one of registry, parameters, "
                    f"{', '.join(_LIST_SECTIONS)})"
                )
                continue
            if not isinstance(body, list):
                problems.append(f"{file}: {section}: must be a list of entries")
                continue
            for i, raw in enumerate(body):
                try:
                    entry = model.model_validate(raw)
                except ValidationError as exc:
                    label = raw.get(_KEYS.get(section, "id")) if isinstance(raw, dict) else None
                    tag = f" ({label})" if label else ""
                    problems += [
                        f"{file}: {_fmt_loc(f'{section}[{i}]', e['loc'])}{tag}: {e['msg']}"
                        for e in exc.errors()
                    ]
                    continue
                entries[section].append(entry)
                key_field = _KEYS.get(section)
                if key_field:
                    key = getattr(entry, key_field)
                    where = f"{file}: {section}[{i}]"
                    if (section, key) in seen_keys:
                        problems.append(
                            f"{where}.{key_field}: duplicate {key_field} {key!r} (first at {seen_keys[(section, key)]})"
                        )
                    seen_keys[(section, key)] = where
                    origin[key] = where

    if header is None:
        problems.append(
            f"{files[0].parent}: registry: no 'registry:' header with a version in any file"
        )
    try:
        parameters = Parameters.model_validate(params)
    except ValidationError as exc:
        problems += [
            f"{origin.get('parameters.' + str(e['loc'][0]), files[0])}: {_fmt_loc('parameters', e['loc'])}: {e['msg']}"
            for e in exc.errors()
        ]
        parameters = Parameters()
    if problems:
        raise RegistryError(
            f"{len(problems)} problem(s) in the policy registry:\n  " + "\n  ".join(problems),
            where=str(files[0].parent if len(files) > 1 else files[0]),
            fix="correct each named file and key; see policies/README.md for the schema",
        )
    recipients, review_problems = _apply_reviews(
        entries["recipients"], entries["safeguard_reviews"], str(files[0].parent)
    )
    if review_problems:
        raise RegistryError(
            "\n  ".join(review_problems),
            where=str(files[0].parent),
            fix="name each reviewed recipient by a registry code, alias or name",
        )
    assert header is not None
    registry = Registry(
        version=f"{header.version}+{digest.hexdigest()[:12]}",
        header=header,
        authorities=entries["authorities"],
        court_orders=entries["court_orders"],
        agreements=entries["agreements"],
        recipients=recipients,
        recipient_patterns=entries["recipient_patterns"],
        parameters=parameters,
        files=files,
        origin=origin,
        reconciliations=entries["reconciliations"],
        retention_terms=entries["retention_terms"],
    )
    _check_references(registry)
    return registry


def _check_references(registry: Registry) -> None:
    """Cross-references must resolve: a court order cannot restrain an unknown authority."""
    problems: list[str] = []
    auth_ids = registry.authority_ids
    for auth in registry.authorities:
        if not _USC_ID.match(auth.id):
            # Non-statutory ids (publications, standards) are taken as written, but a
            # statute written another way ("IRC 6103(k)(6)") must use the canonical form.
            loose = parse_citation(auth.id, registry.known_sections)
            if loose is not None and loose.title:
                spelled = ParsedCitation(
                    loose.title,
                    registry.section_spelling.get(loose.section, loose.section),
                    loose.path,
                ).render()
                problems.append(
                    f"{registry.origin.get(auth.id)}.id: {auth.id!r} is not in canonical form;"
                    f" write it {spelled!r}"
                )
            continue
        parsed = parse_citation(auth.id, registry.known_sections)
        if (
            parsed is None
            or not parsed.title
            or ParsedCitation(
                parsed.title,
                registry.section_spelling.get(parsed.section, parsed.section),
                parsed.path,
            ).render()
            != auth.id
        ):
            problems.append(
                f"{registry.origin.get(auth.id)}.id: {auth.id!r} is not in canonical form "
                "(e.g. '26 USC 6103(i)(2)', '5 USC 552a(b)(7)')"
            )
    for order in registry.court_orders:
        # Compared as instants: a day and a zoned timestamp do not sort as text.
        starts = [as_instant(c.on) for c in order.status_history]
        if any(a and b and a > b for a, b in pairwise(starts)):
            problems.append(
                f"{registry.origin.get(order.id)}.status_history: dates must be in order"
            )
        for r_i, restraint in enumerate(order.restraints):
            for x_i, exc in enumerate(restraint.exceptions):
                for a in exc.authorities:
                    if a not in auth_ids:
                        problems.append(
                            f"{registry.origin.get(order.id)}.restraints[{r_i}].exceptions[{x_i}].authorities: "
                            f"unknown authority {a!r}"
                        )
    for agreement in registry.agreements:
        where = registry.origin.get(agreement.id)
        for a in agreement.authorities:
            if a not in auth_ids:
                problems.append(f"{where}.authorities: unknown authority {a!r}")
        for o in agreement.suspended_by_orders:
            if o not in registry.court_orders_by_id:
                problems.append(f"{where}.suspended_by_orders: unknown court order {o!r}")
    for term in registry.retention_terms:
        where = registry.origin.get(term.id)
        problems += [
            f"{where}.agreements: unknown agreement {g!r}"
            for g in term.agreements
            if g not in registry.agreements_by_id
        ]
        problems += [
            f"{where}.court_orders: unknown court order {o!r}"
            for o in term.court_orders
            if o not in registry.court_orders_by_id
        ]
    for pattern in registry.recipient_patterns:
        try:
            re.compile(pattern.pattern)
        except re.error as exc:
            problems.append(f"recipient_patterns: {pattern.pattern!r}: not a valid regex ({exc})")
    if problems:
        raise RegistryError(
            f"{len(problems)} reference problem(s) in the policy registry:\n  "
            + "\n  ".join(problems),
            where=str(registry.files[0].parent),
            fix="register the referenced entry or correct the reference",
        )


def with_entries(registry: Registry, extra: dict[str, Any], *, label: str = "patch") -> Registry:
    """A copy of ``registry`` with entries added or replaced (same id/code) and parameters set.

    Used by rule cases and what-if analysis; the copy gets its own version.
    """
    sections: dict[str, list[Any]] = {
        "authorities": list(registry.authorities),
        "court_orders": list(registry.court_orders),
        "agreements": list(registry.agreements),
        "recipients": list(registry.recipients),
        "recipient_patterns": list(registry.recipient_patterns),
        "safeguard_reviews": [],
        "reconciliations": list(registry.reconciliations),
        "retention_terms": list(registry.retention_terms),
    }
    params = registry.parameters.model_dump()
    for section, body in extra.items():
        if section == "parameters":
            params.update(body)
            continue
        model = _LIST_SECTIONS.get(section)
        if model is None or not isinstance(body, list):
            raise RegistryError(
                f"cannot patch section {section!r}",
                where=label,
                fix=f"use one of parameters, {', '.join(_LIST_SECTIONS)} (each a list)",
            )
        key_field = _KEYS.get(section)
        for i, raw in enumerate(body):
            try:
                entry = model.model_validate(raw)
            except ValidationError as exc:
                problems = "; ".join(
                    f"{_fmt_loc(f'{section}[{i}]', e['loc'])}: {e['msg']}" for e in exc.errors()
                )
                raise RegistryError(problems, where=label, fix="correct the entry") from exc
            if key_field:
                key = getattr(entry, key_field)
                sections[section] = [e for e in sections[section] if getattr(e, key_field) != key]
            sections[section].append(entry)
    sections["recipients"], problems = _apply_reviews(
        sections["recipients"], sections["safeguard_reviews"], label
    )
    if problems:
        raise RegistryError("; ".join(problems), where=label, fix="correct the review")
    digest = hashlib.sha256(repr(sorted(extra.items(), key=str)).encode()).hexdigest()[:8]
    patched = Registry(
        version=f"{registry.version}+{label}-{digest}",
        header=registry.header,
        authorities=sections["authorities"],
        court_orders=sections["court_orders"],
        agreements=sections["agreements"],
        recipients=sections["recipients"],
        recipient_patterns=sections["recipient_patterns"],
        parameters=Parameters.model_validate(params),
        files=registry.files,
        origin=registry.origin,
        reconciliations=sections["reconciliations"],
        retention_terms=sections["retention_terms"],
    )
    _check_references(patched)
    return patched
