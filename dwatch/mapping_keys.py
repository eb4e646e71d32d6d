"""The keys of a source mapping, each documented with an example.

The loader (dwatch/mapping.py) accepts exactly these keys and the reference page
(``schemas/sources/README.md``, :func:`reference_markdown`) is written from them, so the
two cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

KINDS = ("events", "request_items")
KIND_TABLE = {"events": "disclosure_events", "request_items": "request_items"}
AMBIGUOUS_POLICIES = ("earlier", "later", "quarantine")
NONEXISTENT_POLICIES = ("shift", "quarantine")
DEFAULT_AMBIGUOUS = "earlier"
DEFAULT_NONEXISTENT = "shift"


@dataclass(frozen=True)
class KeyDoc:
    """One key of a source mapping: what it holds, what it does, and an example.

    The loader accepts exactly these keys and the reference page
    (``schemas/sources/README.md``, :func:`reference_markdown`) is written from them."""

    name: str
    holds: str
    meaning: str
    example: str


KEYS: tuple[KeyDoc, ...] = (
    KeyDoc("source_system", "text", "Written to source_system unless a column maps it.",
           "source_system: kiteworks-activity"),
    KeyDoc("kind", f"one of {', '.join(KINDS)}",
           "Which canonical table the file fills; guessed from the columns when absent.",
           "kind: events"),
    KeyDoc("description", "text", "What the export is, for people reading the mapping.",
           "description: Secure file-transfer activity export"),
    KeyDoc("format", "csv, jsonl, parquet or log",
           "Documentation of the export's file format; the reader follows the file's extension"
           " (.log: lines of text, one column named line).",
           "format: csv"),
    KeyDoc("source", "text",
           "Documentation: where the export comes from (system, screen, job).",
           "source: Admin console > Reports > Activity, daily CSV"),
    KeyDoc("columns", "canonical field: column or path",
           "Which column holds each canonical field. In JSON Lines and Parquet a dotted path"
           " reaches into nested objects and arrays (arrays count from 0). In JSON Lines,"
           " [*] makes one event of each item of a list (Records[*].eventID); fields read"
           " outside it repeat on every item, [#] is the item's position from 1"
           " (item_no: \"subjects[#]\"), and an event_id read outside it gets '#<position>'"
           " appended. One list per mapping. Rows read then counts items, plus one for each"
           " record that lists none (quarantined no_items).",
           'columns: {event_id: Activity ID, actor_id: user.id, data_elements: "items[0].name"}'),
    KeyDoc("constants", "canonical field: value",
           "A value for every row; a mapped column's value wins where it is not empty.",
           "constants: {disclosing_agency: IRS}"),
    KeyDoc("values", "canonical field: {written: canonical}",
           "Values written another way (codes, Y/N, localised words), compared ignoring case;"
           " values not listed pass through.",
           "values: {event_type: {File Upload: disclosure}, encrypted: {Oui: 'true'}}"),
    KeyDoc("timezone", "IANA zone name",
           "The zone of timestamps written without an offset; a written offset or zone wins.",
           "timezone: America/New_York"),
    KeyDoc("timestamp_format", "strptime pattern, or a list tried in order",
           "How timestamps are written; with %z the offset is in the text; epoch / epoch_ms /"
           " epoch_us (journald's __REALTIME_TIMESTAMP) for Unix time. A list is tried in order, the first that reads a value wins.",
           'timestamp_format: ["%m/%d/%Y %I:%M:%S.%f %p", "%m/%d/%Y %I:%M:%S %p"]'),
    KeyDoc("ambiguous_time", f"one of {', '.join(AMBIGUOUS_POLICIES)}",
           "A zone-less time in the hour repeated when clocks go back: the first (earlier)"
           " or second (later) reading, or quarantine (ambiguous_local_time). Default"
           f" {DEFAULT_AMBIGUOUS}; every load that applies it says how many rows it touched.",
           "ambiguous_time: earlier"),
    KeyDoc("nonexistent_time", f"one of {', '.join(NONEXISTENT_POLICIES)}",
           "A zone-less time in the hour skipped when clocks go forward: shift (read with the"
           " offset before the change, so 02:30 becomes 03:30 daylight time) or quarantine"
           f" (nonexistent_local_time). Default {DEFAULT_NONEXISTENT}; every load that applies"
           " it says how many rows it touched.",
           "nonexistent_time: quarantine"),
    KeyDoc("match_columns", "list of column names",
           "Selects this mapping for a file holding all these columns (most specific wins).",
           "match_columns: [Activity ID, Event Time]"),
    KeyDoc("match_files", "list of file-name patterns",
           "Selects this mapping for files whose name matches one pattern (* ? [...])."
           " With match_columns too, both must hold. A file-name match beats a columns-only"
           " match, so logs with identical columns are told apart by name.",
           'match_files: ["receipts-ice-*.parquet"]'),
    KeyDoc("identifiers", "list of column names",
           "Columns holding raw taxpayer identifiers, pseudonymised into taxpayer_ref.",
           "identifiers: [Subject TIN]"),
    KeyDoc("list_separator", "text",
           "Separator of list fields (data_elements) written as a|b|c.",
           'list_separator: "|"'),
    KeyDoc("ignore_columns", "list of column names",
           "Known columns deliberately not kept (not reported as unmapped).",
           "ignore_columns: [Browser, Client IP]"),
    KeyDoc("event_id_from", "list of column names",
           "For logs that give events no id (sftp, many MFT exports): event_id is a hash of"
           " these columns' values, the same for the same event in overlapping exports, so"
           " a repeat is found as duplicate_event_id. Not together with columns.event_id,"
           " never taxpayer identifier columns (the hash is not keyed).",
           'event_id_from: [Date and Time, Username, Action, File ID]'),
    KeyDoc("not_logged", "list of canonical field names",
           "Fields the system does not record (legal_authority, purpose, agreement_id on a"
           " transfer log): left empty, and every load of the file says so. Not for"
           " required fields (give a constant) nor for fields the mapping fills.",
           "not_logged: [legal_authority, purpose, agreement_id]"),
    KeyDoc("extract", "column: pattern, or a list tried in order",
           "Text logs (.log, whose one column is line) and JSON Lines: regular expressions"
           " (RE2) whose named groups become columns to map. The first pattern that matches"
           " gives the groups. A record that no pattern reads is quarantined (unparsed_line).",
           "extract: {line: '^(?P<time>\\S+) \\S+ sshd\\[(?P<pid>\\d+)\\]: (?P<message>.*)$'}"),
    KeyDoc("records", "column: pattern",
           "Only rows whose column matches are records; the others are context lines (read"
           " for extract and fill_down, counted and said once per file, not rows). Default:"
           " every row is a record.",
           "records: {line: '\\]: (forced )?close \"'}"),
    KeyDoc("fill_down", "list of extracted group names",
           "A record without a value takes the last one an earlier line gave (the user"
           " named when a session opened).",
           "{extract: {line: 'local user (?P<user>\\S+)'}, fill_down: [user]}"),
    KeyDoc("fill_down_within", "extracted group name",
           "Lines of one session share this value (a process id): fill_down stays within it.",
           "{extract: {line: '\\[(?P<pid>\\d+)\\]: .*user (?P<user>\\S+)'},"
           " fill_down: [user], fill_down_within: pid}"),
    KeyDoc("csv", "mapping of delim, quote, escape",
           "CSV dialect when the sniffer would guess wrong.",
           "csv: {delim: ';', quote: '\"'}"),
)  # fmt: skip


def reference_markdown() -> str:
    """The reference page of mapping keys (schemas/sources/README.md), from :data:`KEYS`."""
    lines = [
        "# Source mappings",
        "",
        "<!-- Generated from dwatch.mapping.KEYS by `dwatch mapping reference`; do not edit. -->",
        "",
        "One YAML file per source system in this folder (`<name>.yaml`) tells ingest how a",
        "real export's columns become the canonical event (`dwatch schema`). A file whose",
        "columns already carry the canonical names needs no mapping at all. Draft one with",
        "`dwatch mapping suggest FILE`, try it with `dwatch mapping test MAPPING FILE` (the",
        "store is not touched) and validate every mapping with `dwatch mapping check`.",
        "",
        "| key | holds | meaning | example |",
        "|---|---|---|---|",
    ]
    for key in KEYS:
        cells = [f"`{key.name}`", key.holds, key.meaning, f"`{key.example}`"]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"
