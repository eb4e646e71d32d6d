"""Tools around source mappings: draft one from a file, try one on a file, check them all.

``suggest`` reads a file's header and a sample of its values and drafts a mapping to be
edited, not trusted; ``try_mapping`` loads a file with a mapping into a throw-away store
and shows how its first rows map and which would be quarantined and why; ``check_all``
loads every mapping and names each problem's file and key.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb
import yaml

from dwatch.errors import DWatchError, InputError
from dwatch.mapping import load_mapping, sources_dir
from dwatch.memory import memory_budget
from dwatch.pseudonym import TIN_RE
from dwatch.schema import load_schema

SAMPLE_ROWS = 500

# Other names exports give the canonical fields (folded: lower case, '_' between words).
SYNONYMS: dict[str, tuple[str, ...]] = {
    "event_id": ("id", "activity_id", "audit_id", "record_id", "entry_id", "log_id", "eventid"),
    "sequence_no": ("seq", "seq_no", "sequence", "sequence_number", "line_no", "serial"),
    "occurred_at": ("timestamp", "time", "event_time", "date_time", "event_date_time",
                    "datetime", "logged_at", "created_at", "when", "ts"),
    "event_type": ("action", "activity", "operation", "type", "event", "event_name",
                   "event_type_name", "action_type", "activity_type"),
    "actor_id": ("user", "user_id", "userid", "username", "login", "operator", "clerk", "officer",
                 "custodian", "employee", "user_name", "staff_id"),
    "actor_role": ("role", "user_role", "title"),
    "recipient_agency": ("recipient", "recipient_org", "to_agency", "receiving_agency", "agency"),
    "disclosing_agency": ("sender", "from_agency", "discloser", "sending_agency"),
    "record_count": ("records", "count", "record_total", "rows", "num_records"),
    "data_elements": ("fields", "elements", "data_fields", "data_items"),
    "legal_authority": ("authority", "citation", "statute", "legal_basis"),
    "request_id": ("request", "request_ref", "case_ref", "reference"),
    "outcome": ("status", "result"),
    "description": ("comment", "comments", "note", "notes", "details"),
}  # fmt: skip

# Time patterns tried on sample values, most specific first (zone-less and zoned).
TIME_PATTERNS = (
    "%Y-%m-%dT%H:%M:%S.%f%z", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d %H:%M:%S.%f%z",
    "%Y-%m-%d %H:%M:%S%z", "%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M",
    "%m/%d/%Y %I:%M:%S.%f %p", "%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y %I:%M %p",
    "%m/%d/%Y %H:%M:%S.%f", "%m/%d/%Y %H:%M:%S", "%m/%d/%Y %H:%M",
    "%d/%m/%Y %H:%M:%S", "%d.%m.%Y %H:%M:%S", "%Y%m%d%H%M%S",
)  # fmt: skip


def _fold(name: str) -> str:
    split = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name.replace("\ufeff", ""))
    return re.sub(r"[^0-9a-z]+", "_", split.lower()).strip("_")


def _reader(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes if s.lower() not in (".gz", ".zst")]
    ext = suffixes[-1] if suffixes else ""
    if ext in (".csv", ".tsv", ".txt"):
        return "read_csv($path, all_varchar = true, header = true, ignore_errors = true)"
    if ext in (".jsonl", ".ndjson", ".json"):
        return "read_json($path, format = 'newline_delimited', ignore_errors = true)"
    if ext in (".parquet", ".pq"):
        return "read_parquet($path)"
    raise InputError(
        f"unrecognised file type {ext or '(none)'}",
        where=str(path),
        fix="use .csv, .tsv, .jsonl/.ndjson or .parquet",
    )


def _sample_records(con: duckdb.DuckDBPyConnection, path: Path) -> list[dict[str, object]]:
    """Up to SAMPLE_ROWS records as written: JSON Lines parsed line by line (values keep
    their text; a broken line is skipped), other formats through DuckDB as text."""
    if _reader(path).startswith("read_json"):
        records: list[dict[str, object]] = []
        opener = gzip.open if path.suffix.lower() == ".gz" else open
        with opener(path, "rt", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict):
                    records.append(record)
                if len(records) >= SAMPLE_ROWS:
                    break
        return records
    rows = con.execute(
        f"SELECT * FROM {_reader(path)} LIMIT {SAMPLE_ROWS}", {"path": str(path)}
    ).fetchall()
    names = [d[0] for d in con.description or []]
    return [dict(zip(names, row, strict=True)) for row in rows]


def _item_list(records: list[dict[str, object]]) -> str | None:
    """The list of objects that holds the events, if any: reached through objects only,
    and the longest (more than one item) in the sample, e.g. CloudTrail's Records."""
    longest: dict[str, int] = {}

    def find(prefix: str, value: object) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                find(f"{prefix}.{key}" if prefix else str(key), inner)
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            longest[prefix] = max(longest.get(prefix, 0), len(value))

    for record in records:
        find("", record)
    best = max(longest, key=lambda k: (longest[k], -k.count(".")), default=None)
    return best if best is not None and longest[best] > 1 else None


def _leaves(con: duckdb.DuckDBPyConnection, path: Path) -> dict[str, list[str]]:
    """Sample values per column; nested objects become dotted paths (user.id); the list
    holding the events (_item_list) is walked with [*], other lists at their first item."""
    sample: dict[str, list[str]] = {}
    records = _sample_records(con, path)
    items = _item_list(records)

    def walk(prefix: str, value: object) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}", inner)
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            if prefix == items:
                for item in value[:SAMPLE_ROWS]:
                    walk(f"{prefix}[*]", item)
            else:
                walk(f"{prefix}[0]", value[0])
        else:
            seen = sample.setdefault(prefix, [])
            if value is not None:
                seen.append(json.dumps(value) if isinstance(value, list) else str(value))

    for record in records:
        for name, value in record.items():
            walk(name, value)
    return sample


@dataclass
class Suggestion:
    mapping: dict[str, object]
    notes: list[str]

    def to_yaml(self) -> str:
        head = "".join(f"# {n}\n" for n in self.notes)
        return head + yaml.safe_dump(self.mapping, sort_keys=False, allow_unicode=True, width=100)


def _time_patterns(values: list[str]) -> list[str]:
    """Patterns that read the sample values, in the order first needed (several when the
    export varies, e.g. optional milliseconds); values no pattern reads are left out."""
    found: list[str] = []
    for value in values:
        text = re.sub(r"Z$", "+0000", value.strip())
        if any(_reads(text, p) for p in found):
            continue
        match = next((p for p in TIME_PATTERNS if _reads(text, p)), None)
        if match is not None:
            found.append(match)
    return found


def _reads(text: str, pattern: str) -> bool:
    from datetime import datetime

    try:
        datetime.strptime(text, pattern)
    except ValueError:
        return False
    return True


# Syslog line prefixes: RFC 3339 (rsyslog's default file format) and the traditional
# "Mmm dd hh:mm:ss" (no year, no zone: the draft says so).
SYSLOG_PREFIXES = (
    (r"^(?P<time>\d{4}-\d\d-\d\dT\S+) (?P<host>\S+) (?P<program>[^\s\[:]+)(?:\[(?P<pid>\d+)\])?: ",
     None),
    (r"^(?P<time>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d) (?P<host>\S+)"
     r" (?P<program>[^\s\[:]+)(?:\[(?P<pid>\d+)\])?: ",
     "the time has no year and no zone: configure rsyslog's RFC 3339 format, or export from"
     " journald (journalctl -o json)"),
)  # fmt: skip


def _suggest_lines(path: Path) -> Suggestion:
    """Draft a mapping for a text log: the syslog prefix its lines share, as extract groups,
    and the message for the user to write record patterns for."""
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as fh:
        lines = [line.rstrip("\n") for _, line in zip(range(SAMPLE_ROWS), fh, strict=False)]
    notes = [f"Drafted by `dwatch mapping suggest {path.name}` from {len(lines)} lines: edit it."]
    found = next(
        ((p, why) for p, why in SYSLOG_PREFIXES if lines and all(re.match(p, x) for x in lines)),
        None,
    )
    pattern = (found[0] if found else "^") + "(?P<message>.*)$"
    if found is None:
        notes.append("No syslog prefix fits every line: write the extract pattern yourself.")
    elif found[1]:
        notes.append(found[1])
    notes += [
        "records: a pattern the record lines' message matches (the others are context).",
        "extract: add patterns that name the record's parts (user, path, action), tried in order.",
    ]
    mapping: dict[str, object] = {
        "source_system": _fold(path.name.split(".")[0]).replace("_", "-"),
        "kind": "events",
        "description": f"Text log like {path.name}",
        "match_files": [re.sub(r"\d[\d_-]*\d|\d", "*", path.name)],
        "extract": {"line": [pattern]},
        "records": {"line": "TODO a pattern of the record lines"},
        "columns": {"occurred_at": "time"} if found and found[1] is None else {},
        "event_id_from": ["time", "pid", "message"] if found else [],
        "ignore_columns": ["line"],
    }
    return Suggestion(mapping, notes)


def suggest(path: Path) -> Suggestion:
    """Draft a mapping for ``path`` from its header and a sample of its values."""
    if ".log" in [s.lower() for s in path.suffixes]:
        return _suggest_lines(path)
    con = duckdb.connect(config=memory_budget().duckdb_config(None))
    try:
        sample = _leaves(con, path)
    except duckdb.Error as exc:
        raise InputError(
            f"cannot read a sample: {str(exc).splitlines()[0]}", where=str(path)
        ) from exc
    finally:
        con.close()
    schema = load_schema()
    fields = {f.name: f for f in schema.events.input_fields}
    vocab = schema.vocabularies
    values: dict[str, dict[str, str]] = {}
    notes = [f"Drafted by `dwatch mapping suggest {path.name}` from {SAMPLE_ROWS} rows: edit it."]
    mapping: dict[str, object] = {"source_system": _fold(path.stem).replace("_", "-"),
                                  "kind": "events", "description": f"Export like {path.name}"}  # fmt: skip
    formats: list[str] = []
    zoneless = False
    separator = None
    columns, identifiers = _choose_columns(sample, set(fields), set(schema.identifier_columns))
    for target, column in columns.items():
        seen = sample[column]
        field = fields[target]
        if field.type == "TIMESTAMPTZ" and seen:
            formats = _time_patterns(seen)
            zoneless = not any(re.search(r"(Z|[+-]\d\d:?\d\d)$", v) for v in seen)
        if field.type == "VARCHAR[]" and seen:
            # A JSON array needs no separator; only plain text lists do.
            counts = {s: sum(s in v for v in seen if not v.startswith("[")) for s in "|;,"}
            best = max(counts, key=lambda s: counts[s])
            separator = best if counts[best] else None
        if field.vocabulary and field.strict and seen:
            allowed = set(vocab[field.vocabulary])
            codes = sorted({v for v in seen if v.lower() not in allowed})
            if codes and len(codes) <= 20:
                values[target] = {c: f"TODO one of {', '.join(sorted(allowed))}" for c in codes}
    if formats:
        mapping["timestamp_format"] = formats if len(formats) > 1 else formats[0]
    if zoneless and re.search(r"utc|gmt|zulu", _fold(columns.get("occurred_at", ""))):
        mapping["timezone"] = "UTC"
        notes.append("occurred_at has no zone but its name says UTC: check timezone: UTC.")
    elif zoneless and columns.get("occurred_at"):
        mapping["timezone"] = "TODO an IANA zone such as America/New_York"
        mapping["ambiguous_time"] = "earlier"
        mapping["nonexistent_time"] = "shift"
        notes.append("occurred_at has no zone: name the zone the system writes local time in.")
    mapping["match_columns"] = [c for c in sample if "." not in c and "[" not in c][:4]
    walked = sorted({c.split("[*]")[0] for c in columns.values() if "[*]" in c})
    if walked:
        notes.append(f"{walked[0]}[*]: one event per item of this list (rows read counts items).")
    # Dates and numbers in the name vary per export; logs with the same columns are told
    # apart by the rest of the name.
    mapping["match_files"] = [re.sub(r"\d[\d_-]*\d|\d", "*", path.name)]
    mapping["columns"] = columns
    if values:
        mapping["values"] = values
        notes.append("values: map each code the system writes to a canonical value.")
    if identifiers:
        mapping["identifiers"] = identifiers
    if separator:
        mapping["list_separator"] = separator
    missing = [n for n in schema.events.required if n not in columns and n != "source_system"]
    if missing:
        mapping["constants"] = {n: "TODO" for n in missing}
        notes.append(f"No column found for {missing}: map a column or give a constant.")
    unused = [c for c in sample if c not in columns.values() and c not in identifiers]
    if unused:
        notes.append(f"Columns not mapped (map them or list them under ignore_columns): {unused}")
    return Suggestion(mapping, notes)


def _choose_columns(
    sample: dict[str, list[str]], fields: set[str], identifier_columns: set[str]
) -> tuple[dict[str, str], list[str]]:
    """Canonical field -> column, and the identifier columns. A whole path that names a
    field (eventName -> event_type) wins over a last name that does (userIdentity.type),
    and both over a guess by the values' shape."""

    def keys(column: str) -> list[str]:
        # The path within an item of a [*] list folded, then its last name.
        bare = re.sub(r"\[(0|\*)\]", "", column.split("[*].", 1)[-1])
        return [_fold(bare), _fold(bare.split(".")[-1])]

    identifiers = [
        c for c, seen in sample.items()
        if keys(c)[1] in identifier_columns or (seen and all(TIN_RE.search(v) for v in seen))
    ]  # fmt: skip
    names = [(k, (k,)) for k in sorted(fields)] + list(SYNONYMS.items())
    columns: dict[str, str] = {}
    for level in (0, 1):
        for column in sample:
            if column in identifiers or column in columns.values():
                continue
            key = keys(column)[level]
            target = next((f for f, n in names if key in n and f not in columns), None)
            if target is not None:
                columns[target] = column
    for column, seen in sample.items():
        if column in identifiers or column in columns.values():
            continue
        target = _guess_by_shape(keys(column)[0], seen, columns)
        if target is not None and target not in columns:
            columns[target] = column
    return columns, identifiers


def _guess_by_shape(key: str, seen: list[str], taken: dict[str, str]) -> str | None:
    """A field for a column no name matched: times that parse are occurred_at; the first
    '..._id' column is event_id."""
    patterns = _time_patterns(seen) if "occurred_at" not in taken else []
    if patterns and all(any(_reads(_zulu(v), p) for p in patterns) for v in seen):
        return "occurred_at"
    if "event_id" not in taken and key.endswith("_id"):
        return "event_id"
    return None


def _zulu(value: str) -> str:
    return re.sub(r"Z$", "+0000", value.strip())


@contextmanager
def _sources_with(mapping_path: Path) -> Iterator[str]:
    """A temporary sources folder holding only this mapping (the real one is untouched)."""
    folder = Path(tempfile.mkdtemp(prefix="dwatch-mapping-"))
    previous = os.environ.get("DWATCH_SOURCES_DIR")
    try:
        shutil.copyfile(mapping_path, folder / mapping_path.name)
        os.environ["DWATCH_SOURCES_DIR"] = str(folder)
        yield mapping_path.stem
    finally:
        if previous is None:
            os.environ.pop("DWATCH_SOURCES_DIR", None)
        else:
            os.environ["DWATCH_SOURCES_DIR"] = previous
        shutil.rmtree(folder, ignore_errors=True)


def try_mapping(mapping_path: Path, data: Path, rows: int = 10) -> str:
    """How the first ``rows`` records of ``data`` map, in a throw-away store."""
    from dwatch.ingest import ingest_paths, summarise
    from dwatch.store import connect

    load_mapping(mapping_path)  # a bad mapping fails here, naming file and key
    folder = Path(tempfile.mkdtemp(prefix="dwatch-mapping-test-"))
    key = os.environ.get("DWATCH_PSEUDONYM_KEY") or secrets.token_hex(32)
    try:
        con = connect(folder / "trial.duckdb")
        with _sources_with(mapping_path) as name:
            results = ingest_paths(con, [data], source=name, key=key.encode())
        lines = [summarise(results), "", f"first {rows} record(s):"]
        mapped = con.execute(
            "SELECT source_row, 'loaded' AS outcome, CAST(to_json(e) AS VARCHAR) AS detail FROM ("
            " SELECT * EXCLUDE (ingest_run_id, extra) FROM disclosure_events) e"
            " UNION ALL SELECT source_row, 'quarantined: ' || reason_code, message"
            " FROM quarantine ORDER BY 1 LIMIT ?",
            [rows],
        ).fetchall()
        lines += [f"  row {r}: {outcome}\n    {detail}" for r, outcome, detail in mapped]
        con.close()
        return "\n".join(lines)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def check_all(directory: Path | None = None) -> tuple[int, list[str]]:
    """Load every mapping in the folder; (mappings checked, problems naming file and key)."""
    folder = directory or sources_dir()
    problems: list[str] = []
    paths = sorted(p for p in folder.glob("*.yaml") if not p.name.endswith(".expectations.yaml"))
    for path in paths:
        try:
            load_mapping(path)
        except DWatchError as exc:
            problems.append(exc.render())
    return len(paths), problems
