"""Evidence bundles: one case, everything behind it, and a manifest another party can check.

``export_bundle`` writes a folder: the case and its alerts, the affected subjects (where the
store records them), the events and request items behind the alerts (pseudonymised as
stored, free text masked again on the way out), each event's source file, row and the file's
SHA-256, the ingest records with their chain hashes, the rules' YAML and SQL, the registry
version and the entries cited, the triage history, and ``MANIFEST.json`` listing every
file's SHA-256. ``verify_bundle`` recomputes them on any machine with the tool and names
each file that was changed, removed or added. The manifest's own SHA-256 is printed at
export so it can be written into a filing; ``dwatch verify DIR --expect`` checks it.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb

from dwatch import __version__, ledger
from dwatch.errors import InputError
from dwatch.report.safety import csv_cell, mask_free_text, mask_json

FORMAT = "dwatch-evidence-bundle/2"
FORMATS_READ = ("dwatch-evidence-bundle/1", FORMAT)  # /1 has no self_sha256
MANIFEST = "MANIFEST.json"
# The manifest's own digest sits inside it: the SHA-256 of the file's exact bytes with this
# field's value written as zeros. Any byte changed in the manifest (a date, a size, a digest,
# even a space) then fails verification by itself; only a rewrite that recomputes it passes,
# which --expect (the digest printed at export) catches.
_SELF_FIELD = "self_sha256"
_SELF_RE = re.compile(rb'"self_sha256": "([0-9a-f]{64})"')
_ZEROS = b"0" * 64
RULES_DIR = Path(__file__).resolve().parent.parent / "detectors" / "rules"


@dataclass(frozen=True)
class Bundle:
    directory: Path
    case_id: str
    files: int
    manifest_sha256: str


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _query(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any]) -> list[dict[str, Any]]:
    cur = con.execute(sql, params)
    cols = [d[0] for d in cur.description or []]
    return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]


def _has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    found = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = ? AND NOT temporary", [name]
    ).fetchone()
    return bool(found and found[0])


def _write_json(path: Path, value: Any) -> None:
    text = json.dumps(mask_json(_plain(value)), indent=2, sort_keys=True, default=str)
    path.write_text(text + "\n", encoding="utf-8")


def _write_csv(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    with path.open("w", encoding="utf-8", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(columns)
        for row in rows:
            out.writerow([csv_cell(_cell(row.get(c))) for c in columns])


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, list | dict):
        return mask_free_text(json.dumps(_plain(value), default=str))
    if isinstance(value, datetime | date):
        return value.isoformat()
    return mask_free_text(value) if isinstance(value, str) else value


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    return [r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()]


def _case(con: duckdb.DuckDBPyConnection, case_id: str) -> dict[str, Any]:
    rows = _query(con, "SELECT * FROM cases WHERE case_id = ?", [case_id])
    if not rows:
        raise InputError(
            f"no case {case_id!r} in the store",
            where="dwatch alerts export",
            fix="list cases with `dwatch alerts list` and give a case id (cs_...)",
        )
    return rows[0]


def _events(con: duckdb.DuckDBPyConnection, alert_ids: list[str]) -> list[dict[str, Any]]:
    """Events behind the alerts: keyed (source, id) with their chain where the store has
    alert_events; else an alert's source, when it names one, tells equal ids apart."""
    if _has_table(con, "alert_events"):
        return _query(
            con,
            """
            WITH ev AS (
                SELECT DISTINCT source_system, event_id FROM alert_events
                WHERE list_contains(?, alert_id)
                UNION
                SELECT DISTINCT a.source_system, unnest(a.event_ids) FROM alerts a
                WHERE list_contains(?, a.alert_id)
                  AND a.alert_id NOT IN (SELECT alert_id FROM alert_events)
            )
            SELECT DISTINCT e.*, r.source_file, r.content_sha256 AS source_file_sha256
            FROM disclosure_events e
            JOIN ev ON e.event_id = ev.event_id
                   AND (ev.source_system IS NULL OR e.source_system = ev.source_system)
            LEFT JOIN ingest_runs r ON r.run_id = e.ingest_run_id
            ORDER BY e.source_system, e.occurred_at, e.event_id
            """,
            [alert_ids, alert_ids],
        )
    return _query(
        con,
        """
        WITH ev AS (
            SELECT DISTINCT unnest(a.event_ids) AS event_id, a.source_system
            FROM alerts a WHERE list_contains(?, a.alert_id)
        )
        SELECT DISTINCT e.*, r.source_file, r.content_sha256 AS source_file_sha256
        FROM disclosure_events e
        JOIN ev ON e.event_id = ev.event_id
               AND (ev.source_system IS NULL OR e.source_system = ev.source_system)
        LEFT JOIN ingest_runs r ON r.run_id = e.ingest_run_id
        ORDER BY e.source_system, e.occurred_at, e.event_id
        """,
        [alert_ids],
    )


def _request_items(con: duckdb.DuckDBPyConnection, alert_ids: list[str]) -> list[dict[str, Any]]:
    return _query(
        con,
        """
        SELECT DISTINCT i.*, r.source_file, r.content_sha256 AS source_file_sha256
        FROM request_items i
        LEFT JOIN ingest_runs r ON r.run_id = i.ingest_run_id
        WHERE i.request_id IN (
            SELECT request_id FROM alerts
            WHERE list_contains(?, alert_id) AND request_id IS NOT NULL
        )
        ORDER BY i.request_id, i.item_no
        """,
        [alert_ids],
    )


def _registry(con: duckdb.DuckDBPyConnection, alerts: list[dict[str, Any]]) -> dict[str, Any]:
    cited = sorted({c for a in alerts for c in (a.get("citations") or [])})
    versions = sorted({a["registry_version"] for a in alerts if a.get("registry_version")})
    entries: dict[str, list[dict[str, Any]]] = {}
    for table, key in (
        ("registry_authorities", "authority_id"),
        ("registry_court_orders", "order_id"),
        ("registry_agreements", "agreement_id"),
    ):
        entries[table] = _query(
            con, f"SELECT * FROM {table} WHERE list_contains(?, {key}) ORDER BY {key}", [cited]
        )
    return {
        "registry_versions": _query(
            con,
            "SELECT * FROM registry_versions WHERE list_contains(?, registry_version)",
            [versions],
        ),
        "cited": cited,
        "entries": entries,
    }


def _copy_rules(alerts: list[dict[str, Any]], out: Path) -> None:
    """The rule files behind the rule alerts, and rules.json saying which version judged."""
    index: list[dict[str, Any]] = []
    for rule_id in sorted({a["detector_id"] for a in alerts if a["detector_kind"] == "rule"}):
        versions = sorted({a["detector_version"] for a in alerts if a["detector_id"] == rule_id})
        files = [RULES_DIR / f"{rule_id}{s}" for s in (".yaml", ".sql")]
        copied = [f for f in files if f.is_file()]
        for src in copied:
            (out / "rules").mkdir(exist_ok=True)
            (out / "rules" / src.name).write_bytes(src.read_bytes())
        index.append(
            {
                "rule_id": rule_id,
                "alert_versions": versions,
                "files": [f"rules/{f.name}" for f in copied],
                "note": None if copied else "no rule file of this id in this installation",
            }
        )
    _write_json(out / "rules.json", index)


def export_bundle(con: duckdb.DuckDBPyConnection, case_id: str, out: Path) -> Bundle:
    """Write the bundle for one case into ``out`` (created; must be empty if it exists)."""
    if out.exists() and any(out.iterdir()):
        raise InputError(
            f"{out} is not empty",
            where="dwatch alerts export --bundle",
            fix="give a new or empty folder, so the bundle holds only what the manifest lists",
        )
    out.mkdir(parents=True, exist_ok=True)
    case = _case(con, case_id)
    alerts = _query(
        con,
        "SELECT a.* FROM alerts a JOIN case_alerts c USING (alert_id) WHERE c.case_id = ?"
        " ORDER BY a.alert_id",
        [case_id],
    )
    alert_ids = [a["alert_id"] for a in alerts]
    _write_json(out / "case.json", case)
    _write_json(out / "alerts.json", alerts)
    if _has_table(con, "alert_subjects"):
        subjects = _query(
            con,
            "SELECT * FROM alert_subjects WHERE list_contains(?, alert_id) ORDER BY ALL",
            [alert_ids],
        )
        _write_csv(out / "alert_subjects.csv", subjects, _columns(con, "alert_subjects"))
    events = _events(con, alert_ids)
    ev_cols = [*_columns(con, "disclosure_events"), "source_file", "source_file_sha256"]
    _write_csv(out / "events.csv", events, ev_cols)
    items = _request_items(con, alert_ids)
    item_cols = [*_columns(con, "request_items"), "source_file", "source_file_sha256"]
    _write_csv(out / "request_items.csv", items, item_cols)
    run_ids = sorted({r["ingest_run_id"] for r in (*events, *items) if r.get("ingest_run_id")})
    _write_json(
        out / "ingest_runs.json",
        {
            "chain_head_at_export": ledger.chain_head(con).__dict__,
            "runs": _query(
                con,
                "SELECT * FROM ingest_runs WHERE list_contains(?, run_id) ORDER BY chain_seq",
                [run_ids],
            ),
        },
    )
    _copy_rules(alerts, out)
    _write_json(out / "registry.json", _registry(con, alerts))
    triage = _query(
        con,
        "SELECT * FROM triage_decisions WHERE target_id = ? OR list_contains(?, target_id)"
        " ORDER BY decision_no",
        [case_id, alert_ids],
    )
    _write_csv(out / "triage.csv", triage, _columns(con, "triage_decisions"))
    return _write_manifest(out, case_id)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _bundle_files(directory: Path) -> list[str]:
    return sorted(
        p.relative_to(directory).as_posix()
        for p in directory.rglob("*")
        if p.is_file() and p.name != MANIFEST
    )


def _write_manifest(out: Path, case_id: str) -> Bundle:
    files = [
        {"path": name, "sha256": _sha256(out / name), "bytes": (out / name).stat().st_size}
        for name in _bundle_files(out)
    ]
    manifest = {
        "format": FORMAT,
        "case_id": case_id,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "tool": f"disclosure-watch {__version__}",
        "files": files,
        _SELF_FIELD: _ZEROS.decode(),
    }
    text = (json.dumps(manifest, indent=2) + "\n").encode("utf-8")
    digest = hashlib.sha256(text).hexdigest().encode()
    (out / MANIFEST).write_bytes(_SELF_RE.sub(b'"self_sha256": "' + digest + b'"', text))
    return Bundle(out, case_id, len(files), _sha256(out / MANIFEST))


def _self_check(raw: bytes, manifest: dict[str, Any]) -> str | None:
    """Why the manifest's bytes do not match its own digest, or None when they do."""
    found = _SELF_RE.findall(raw)
    if _SELF_FIELD not in manifest and manifest.get("format") == FORMATS_READ[0]:
        return None  # written before manifests carried their own digest
    if len(found) != 1 or manifest.get(_SELF_FIELD) != found[0].decode():
        return f"{MANIFEST}: its own digest ({_SELF_FIELD}) is missing or damaged"
    zeroed = _SELF_RE.sub(b'"self_sha256": "' + _ZEROS + b'"', raw)
    if hashlib.sha256(zeroed).hexdigest() != found[0].decode():
        return f"{MANIFEST}: changed since export (its bytes do not match its own {_SELF_FIELD})"
    return None


def manifest_sha256(directory: Path) -> str:
    return _sha256(directory / MANIFEST)


def verify_bundle(directory: Path, expect: str | None = None) -> list[str]:
    """Every way the bundle differs from its manifest, one sentence each naming the file."""
    path = directory / MANIFEST
    if not path.is_file():
        return [f"{MANIFEST}: missing, so nothing in {directory} can be checked"]
    raw = path.read_bytes()
    try:
        manifest = json.loads(raw.decode("utf-8"))
        listed = {f["path"]: f["sha256"] for f in manifest["files"]}
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError):
        return [f"{MANIFEST}: not a manifest dwatch wrote (changed or damaged)"]
    problems: list[str] = []
    if expect and _sha256(path) != expect.lower():
        problems.append(f"{MANIFEST}: its SHA-256 is not the one recorded at export ({expect})")
    if manifest.get("format") not in FORMATS_READ:
        problems.append(f"{MANIFEST}: format {manifest.get('format')!r}, expected {FORMAT!r}")
    damaged = _self_check(raw, manifest)
    if damaged:
        # its digests can no longer be trusted to name which other file differs
        return [*problems, damaged]
    present = set(_bundle_files(directory))
    for name, digest in sorted(listed.items()):
        if name not in present:
            problems.append(f"{name}: listed in the manifest but missing")
        elif _sha256(directory / name) != digest:
            problems.append(f"{name}: changed since export (SHA-256 differs from the manifest)")
    problems.extend(
        f"{name}: not in the manifest (added after export)"
        for name in sorted(present - set(listed))
    )
    return problems
