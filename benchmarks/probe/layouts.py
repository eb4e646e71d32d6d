"""Write the world: each log in its own layout, the labels, and the registry overlay."""

from __future__ import annotations

import csv
import json
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from benchmarks.probe.world import SOURCES, World

CANONICAL = ("event_id", "source_system", "sequence_no", "occurred_at", "event_type", "disclosing_agency",
             "recipient_agency", "actor_id", "actor_role", "request_id", "legal_authority", "purpose",
             "data_elements", "record_count", "taxpayer_tin", "channel", "encrypted", "agreement_id",
             "case_number", "description", "outcome")  # fmt: skip
ITEM_FIELDS = ("request_id", "event_id", "item_no", "taxpayer_tin", "supplied_name", "supplied_address",
               "tax_periods", "statute", "reason", "match_method", "source_system")  # fmt: skip


def _local(at: datetime, source: str) -> datetime:
    return at.astimezone(ZoneInfo(SOURCES[source][1]))


def _offset(at: datetime, source: str) -> str:
    return _local(at, source).isoformat(timespec="seconds")


def _named(at: datetime, source: str) -> str:
    return f"{_local(at, source):%Y-%m-%d %H:%M:%S} {SOURCES[source][1]}"


def _abbrev(at: datetime, source: str) -> str:
    local = _local(at, source)
    return f"{local:%Y-%m-%d %H:%M:%S} {local.tzname()}"


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _months(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    by: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in sorted(events, key=lambda e: e["sequence_no"]):
        by[f"{e['logged_at']:%Y-%m}"].append(e)
    return by


def _write_csv(path: Path, header: list[str], rows: Iterable[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(header)
        out.writerows(rows)


# ---------------------------------------------------------------------------- per-source layouts

KITEWORKS = ["Activity ID", "Seq", "Event Time", "User", "User Role", "Recipient Org", "Action", "Record Count",
             "Fields", "Request Ref", "Authority", "Purpose", "Encrypted", "Comment", "Status", "Client IP",
             "Browser", "File Name", "File Size"]  # fmt: skip


def kiteworks_row(e: dict[str, Any], rng: random.Random) -> list[str]:
    local = _local(e["occurred_at"], "kiteworks-activity")
    action = {
        "disclosure": rng.choice(["File Upload", "File Upload", "Share Link Created"]),
        "receipt": "File Download",
    }[e["event_type"]]
    n = e["record_count"]
    return [
        e["event_id"],
        str(e["sequence_no"]),
        local.strftime("%m/%d/%Y %I:%M:%S %p"),
        e["actor_id"],
        _text(e.get("actor_role")),
        e["recipient_agency"],
        action,
        f"{n:,}" if rng.random() < 0.3 else str(n),
        "|".join(e["data_elements"]),
        _text(e.get("request_id")),
        _text(e.get("legal_authority")),
        _text(e.get("purpose")),
        "Yes" if e.get("encrypted") else "No",
        "",
        "Completed",
        f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
        "kw-agent/8.2",
        f"fti_{e['recipient_agency'].replace(' ', '_')}_{local:%Y%m%d}.dat.pgp",
        str(n * 412),
    ]


PUB1075 = ["AuditID", "SeqNo", "EventDateTime", "UserID", "UserRole", "EventType", "Outcome", "CaseRef",
           "Description", "SubjectTIN", "Agency", "Records", "Origin", "ObjectID", "Workstation"]  # fmt: skip


def pub1075_row(e: dict[str, Any], rng: random.Random) -> list[str]:
    when = (
        _offset(e["occurred_at"], "pub1075-audit")
        if rng.random() < 0.8
        else _abbrev(e["occurred_at"], "pub1075-audit")
    )
    return [
        e["event_id"],
        str(e["sequence_no"]),
        when,
        e["actor_id"],
        _text(e.get("actor_role")),
        e["audit_type"],
        e["outcome"],
        _text(e.get("request_id")),
        "Return inquiry",
        e["taxpayer_tin"],
        e["recipient_agency"],
        "1",
        "FTI-APP",
        f"RET-{rng.getrandbits(32):08x}",
        f"WS{rng.randint(100, 199)}",
    ]


def canonical_value(e: dict[str, Any], column: str, when: Callable[[datetime, str], str]) -> Any:
    if column == "occurred_at":
        return when(e["occurred_at"], e["source_system"])
    if column == "data_elements":
        return e["data_elements"]
    if column == "record_count" and e.get("malformed"):
        return "1 record"  # a malformed count: the row is quarantined at ingest
    return e.get(column)


def _write_canonical_csv(
    path: Path,
    rows: list[dict[str, Any]],
    header_style: Callable[[str], str],
    when: Callable[[datetime, str], str],
    tin_column: str = "taxpayer_tin",
) -> None:
    header = [header_style(tin_column if c == "taxpayer_tin" else c) for c in CANONICAL]
    body = []
    for e in rows:
        values = [canonical_value(e, c, when) for c in CANONICAL]
        body.append([json.dumps(v) if isinstance(v, list) else _text(v) for v in values])
    _write_csv(path, header, body)


def _write_jsonl(
    path: Path,
    rows: list[dict[str, Any]],
    key: Callable[[str], str],
    when: Callable[[datetime, str], str],
    tin_column: str = "taxpayer_tin",
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for e in rows:
            record = {
                key(tin_column if c == "taxpayer_tin" else c): canonical_value(e, c, when)
                for c in CANONICAL
                if e.get(c) is not None or c == "occurred_at"
            }
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")


def _title(c: str) -> str:
    return " ".join(w.upper() if w in {"id", "tin"} else w.capitalize() for w in c.split("_"))


def _camel(c: str) -> str:
    head, *rest = c.split("_")
    return head + "".join(w.capitalize() for w in rest)


def write_logs(w: World, out: Path) -> dict[str, int]:
    rng = random.Random(w.seed + 1)
    logs = out / "logs"
    by_source: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in w.events:
        by_source[e["source_system"]].append(e)
    for month, rows in _months(by_source["kiteworks-activity"]).items():
        body = []
        for e in rows:
            body.append(kiteworks_row(e, rng))
            if e.get("duplicate_row"):
                body.append(body[-1])
        _write_csv(logs / "kiteworks" / f"activity_{month}.csv", KITEWORKS, body)
    for month, rows in _months(by_source["pub1075-audit"]).items():
        _write_csv(
            logs / "hi-dotax-fti-app" / f"audit_{month}.csv",
            PUB1075,
            [pub1075_row(e, rng) for e in rows],
        )
    for month, rows in _months(by_source["irs-disclosure-office"]).items():
        _write_canonical_csv(
            logs / "irs-disclosure-office" / f"ledger_{month}.csv", rows, _title, _named
        )
    for month, rows in _months(by_source["irs-matching-exchange"]).items():
        _write_jsonl(
            logs / "irs-matching-exchange" / f"exchange_{month}.jsonl", rows, _camel, _offset
        )
    for month, rows in _months(by_source["fed-le-receipts"]).items():
        _write_jsonl(
            logs / "fed-le-receipts" / f"receipts_{month}.jsonl", rows, str, _offset, "taxpayer_ssn"
        )
    for month, rows in _months(by_source["txoag-fti-ledger"]).items():
        _write_canonical_csv(
            logs / "txoag" / f"fti_ledger_{month}.csv", rows, str.upper, _abbrev, "subject_ssn"
        )
    for month, rows in _months(by_source["ssa-pa-disclosures"]).items():
        _write_canonical_csv(logs / "ssa-pa" / f"disclosures_{month}.csv", rows, str, _offset)
    items_by: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for i in w.items:
        items_by[i["source_system"]].append(i)
    for source, items in items_by.items():
        _write_csv(
            logs / "request-items" / f"{source}-items.csv",
            list(ITEM_FIELDS),
            [[_text(i.get(c)) for c in ITEM_FIELDS] for i in items],
        )
    return dict(Counter(e["source_system"] for e in w.events))


# ---------------------------------------------------------------------------- labels


def write_labels(w: World, out: Path, counts: dict[str, int]) -> None:
    labels = out / "labels"
    rows = []
    for e in sorted(w.events, key=lambda e: (e["source_system"], e["sequence_no"])):
        kind = w.instances[e["instance"]].kind if e.get("instance") else "lawful"
        rows.append(
            [
                e["source_system"],
                e["event_id"],
                e["event_type"],
                e["label"],
                e.get("instance") or "",
                kind,
                _text(e.get("request_id")),
            ]
        )
    _write_csv(
        labels / "events.csv",
        ["source_system", "event_id", "event_type", "label", "instance_id", "kind", "chain_id"],
        rows,
    )
    instances = [asdict(i) for i in w.instances.values()]
    (labels / "instances.json").write_text(json.dumps(instances, indent=1), encoding="utf-8")
    _write_csv(
        labels / "subjects.csv",
        ["truth_set", "taxpayer", "instance_id", "request_id"],
        [[s["truth_set"], s["taxpayer"], s["instance_id"], s["request_id"]] for s in w.subjects],
    )
    manifest = {
        "writer": "benchmarks.probe",
        "seed": w.seed,
        "events_requested": w.events_target,
        "events": len(w.events),
        "lawful_events": w.lawful_count(),
        "events_per_source": counts,
        "request_items": len(w.items),
        "instances": len(w.instances),
        "identifiers": "raw synthetic TINs as the logs wrote them; pseudonymise with the store's key",
        "registry_overlay": "registry/",
    }
    (labels / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")


OVERLAY = """\
# The probe's own registry facts, added to the shipped policies/ (files are merged by the
# loader; nothing here repeats a key the shipped registry defines).
recipients:
  - {code: HUD, name: Department of Housing and Urban Development, category: federal_benefits,
     aliases: [US-HUD], sources: [{cite: "26 U.S.C. 6103(l)(7)(D)"}]}
  - {code: LACOUNTY-DCSS, name: Los Angeles County Child Support Services Department, category: child_support,
     safeguards: {status: current, reviewed_on: 2022-04-20}, sources: [{cite: "26 U.S.C. 6103(l)(6)"}]}
  - {code: MARICOPA-CO-SO, name: Maricopa County Sheriff's Office, category: state_law_enforcement,
     aliases: [MCSO], sources: [{cite: "5 U.S.C. 552a(b)(7)"}]}
  - {code: TRAVIS-CO-SO, name: Travis County Sheriff's Office, category: state_law_enforcement,
     sources: [{cite: "Tex. Code Crim. Proc. art. 2.17"}]}
retention_terms:
  - id: doj-dea-fti-disposal
    title: DEA destroys return information received from the IRS within a year of receipt
    recipient_agencies: [DOJ-DEA]
    dispose_within_days: 365
    effective_from: 2024-10-01
    sources: [{cite: "IRS Publication 1075 disposal controls; the probe's own safeguards agreement"}]
agreements:
  - id: irs-ssa-cma-1071
    title: IRS-SSA computer matching agreement 1071 (earnings and tax information)
    kind: computer_matching_agreement
    aliases: ["IRS-SSA CMA 1071", "CMA 1071"]
    parties: [IRS, SSA]
    authorities: [26 USC 6103(l)(1)]
    effective_from: 2024-07-01
    sources: [{cite: "5 U.S.C. 552a(o); probe's own agreement inventory"}]
  - id: census-irs-2024-01
    title: Census Bureau - IRS agreement for statistical use of return information
    kind: data_sharing_agreement
    aliases: ["Census-IRS Agreement 2024-01"]
    parties: [IRS, USCB]
    authorities: [26 USC 6103(j)(1)]
    effective_from: 2024-01-01
    sources: [{cite: "26 U.S.C. 6103(j)(1); probe's own agreement inventory"}]
  - id: irs-hud-cma-2023-07
    title: IRS-HUD computer matching agreement (income verification)
    kind: computer_matching_agreement
    aliases: ["IRS-HUD CMA 2023-07"]
    parties: [IRS, HUD]
    authorities: [26 USC 6103(l)(7)]
    effective_from: 2023-07-01
    effective_to: 2026-01-01
    sources: [{cite: "5 U.S.C. 552a(o)(2)(D): 18 months, renewed once for 12; not renewed"}]
"""


def write_overlay(out: Path) -> None:
    (out / "registry").mkdir(parents=True, exist_ok=True)
    (out / "registry" / "probe.yaml").write_text(OVERLAY, encoding="utf-8")
