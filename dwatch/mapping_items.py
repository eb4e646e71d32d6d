"""One record per item of a list: the ``[*]`` paths of a source mapping (JSON Lines).

A CloudTrail log file is one JSON object whose ``Records`` list holds the events; a request
record may list several taxpayers. A mapping whose paths walk a list with ``[*]``
(``Records[*].eventID``) makes one record of each item before anything is mapped: the
line's other fields repeat on every item, and the item stands where the list stood, so each
path reads as it would in a record holding that one item (``dwatch.mapping.split_path``).
``[#]`` is the item's position in its list, from 1 (``item_no: "subjects[#]"``). An
``event_id`` read outside the list is the same for every item, so ``#<position>`` is
appended to keep each item's event its own.

What "rows read" counts for such a file: every item of every line, plus one row for each
line that cannot be read (``malformed_json``) and one for each line whose list is missing,
empty or not a list (``no_items``, quarantined with its raw form). Rows read = loaded +
quarantined holds with items as the rows; source_row is the item's place in the file and a
quarantined item's source_line is the line that held it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import duckdb

from dwatch.errors import ConfigError, InputError
from dwatch.mapping import POSITION, WILDCARD, SourceMapping, split_path, wildcard_list

# Staged columns an expansion adds (no '.' or '[': never read as a path themselves).
ITEM_EVENT_ID = "_item_event_id"
ITEM_POSITION = "_item_position"
NO_ITEMS = "no_items"


@dataclass(frozen=True)
class Expansion:
    """What expanding a file's lists changed for the rest of the load."""

    mapping: SourceMapping  # [#] and a per-item event_id read from the staged columns below
    columns: list[str]  # staged columns added (ITEM_POSITION, ITEM_EVENT_ID)
    checks: list[tuple[str, str, str, str]]  # (condition, reason code, field, message SQL)
    line_sql: str  # the file line a staged row came from
    warnings: list[str]


def sql_literal(text: str) -> str:
    """SQL string literal for text the mapping wrote (paths, patterns), never log data."""
    return "'" + text.replace("'", "''") + "'"


def json_path_of(path: str) -> str:
    """JSON path of a mapping path read from the line: 'a.b' -> '$."a"."b"'."""
    split = split_path(path)
    head, rest = split if split is not None else (path, "$")
    return '$."' + head.replace('"', '\\"') + '"' + rest[1:]


def _nest(names: list[str], value: str) -> str:
    """json_object('a', json_object('b', value)) for names ['a', 'b']."""
    for name in reversed(names):
        value = f"json_object({sql_literal(name)}, {value})"
    return value


def _one_item_record(keys: list[str], list_path: str) -> tuple[list[str], str]:
    """SQL for the per-line values (computed once per line) and for the one-item record
    built from them and ``_item``: the line's other top-level keys, and the list's head
    key holding the item (a nested list: the head object with the item in the list's place,
    the list removed once per line so copying the head does not copy the list)."""
    names = list_path.split(".")
    head = names[0]
    others = [k for k in keys if k != head]
    per_line: list[str] = []
    if others:
        paths = ", ".join(sql_literal(json_path_of(k)) for k in others)
        per_line.append(f"json_extract(line, [{paths}]) AS _others")
    # The record is written as text from JSON texts (no parse and re-serialise per item):
    # the other keys' values as the line had them, then the item in the list's place.
    parts = [
        f"{sql_literal(json.dumps(k) + ':')} || coalesce(CAST(_others[{i}] AS VARCHAR), 'null')"
        for i, k in enumerate(others, 1)
    ]
    if len(names) == 1:
        parts.append(f"{sql_literal(json.dumps(head) + ':')} || CAST(_item AS VARCHAR)")
    else:
        inner = names[1:]
        per_line.append(
            f"json_merge_patch(json_extract(line, {sql_literal(json_path_of(head))}),"
            f" {_nest(inner, 'NULL::JSON')}) AS _head_rest"
        )
        parts.append(
            f"{sql_literal(json.dumps(head) + ':')} || CAST(json_merge_patch(_head_rest,"
            f" {_nest(inner, '_item')}) AS VARCHAR)"
        )
    return per_line, "'{' || " + " || ',' || ".join(parts) + " || '}'"


def _rewritten(
    mapping: SourceMapping, keys: list[str], kind: str
) -> tuple[SourceMapping, dict[str, str]]:
    """The mapping reading [#] and a per-item event_id from staged columns, and the SQL
    (over the original line and _pos) of each staged column it adds."""
    columns = dict(mapping.columns)
    added: dict[str, str] = {}
    for name, written in mapping.columns.items():
        if written.endswith(POSITION):
            columns[name] = ITEM_POSITION
            added[ITEM_POSITION] = "CAST(_pos AS VARCHAR)"
    event_id = mapping.columns.get("event_id", "event_id" if "event_id" in keys else None)
    if kind == "events" and event_id is not None and wildcard_list(event_id) is None:
        columns["event_id"] = ITEM_EVENT_ID
        added[ITEM_EVENT_ID] = (
            f"json_extract_string(line, {sql_literal(json_path_of(event_id))}) || '#' || _pos"
        )
    return replace(mapping, columns=columns), added


def expand_items(
    con: duckdb.DuckDBPyConnection,
    lines: str,
    fmt: str,
    mapping: SourceMapping,
    keys: list[str],
    kind: str,
    path: Path,
) -> Expansion | None:
    """Replace the staged ``lines`` table (line, _ok) of a JSON Lines file by one row per
    item of the mapping's [*] list (with _line, _pos, _no_items and the added columns).

    None when the mapping walks no list, or no line has the list's head key (then the
    [*] paths are missing columns, quarantined as such)."""
    list_path = mapping.item_list
    if list_path is None:
        return None
    where = f"{mapping.path or mapping.name}: columns"
    if fmt != "jsonl":
        raise InputError(
            f"the mapping makes one record per item of {list_path}{WILDCARD}, which is read"
            f" from JSON Lines only, not {fmt}",
            where=str(path),
            fix="export the log as JSON Lines (.jsonl/.json), or map fixed positions ([0])",
        )
    if "[" in list_path:
        raise ConfigError(
            f"the list {list_path!r} is reached through another list",
            where=where,
            fix="walk a list reached by names only (Records[*], detail.resources[*])",
        )
    if list_path.split(".")[0] not in keys:
        return None
    per_line, record = _one_item_record(keys, list_path)
    new_mapping, added = _rewritten(mapping, keys, kind)
    extra = "".join(f", CASE WHEN _n > 0 THEN {sql} END AS {name}" for name, sql in added.items())
    con.execute(
        f"CREATE TEMP TABLE {lines}_items AS SELECT"
        f" CASE WHEN _n = 0 THEN line ELSE {record} END AS line, _ok, _line,"
        f" CASE WHEN _n > 0 THEN _pos END AS _pos, _ok AND _n = 0 AS _no_items{extra}"
        " FROM (SELECT *, _items[_pos] AS _item FROM (SELECT *,"
        " unnest(range(1, greatest(_n, 1) + 1)) AS _pos FROM (SELECT *, len(_items) AS _n"
        f" FROM (SELECT rowid + 1 AS _line, line, _ok{''.join(', ' + p for p in per_line)},"
        f" CASE WHEN _ok THEN json_extract(line, {sql_literal(json_path_of(list_path) + '[*]')})"
        f" ELSE [] END AS _items FROM {lines}))))"
    )  # no ORDER BY: the scan and unnest keep the file's order (insertion order preserved)
    con.execute(f"DROP TABLE {lines}")
    con.execute(f"ALTER TABLE {lines}_items RENAME TO {lines.split('.')[-1]}")
    with_items, items = con.execute(
        f"SELECT count(DISTINCT _line) FILTER (WHERE _pos IS NOT NULL), count(_pos) FROM {lines}"
    ).fetchone() or (0, 0)
    shown = f"{list_path}{WILDCARD}"
    suffixed = ", with #position appended to event_id" if ITEM_EVENT_ID in added else ""
    message = (
        f"'the record lists no item at {shown} (the list is missing, empty or not a list), so"
        " there is nothing to map; check the export, or the list named in the source mapping'"
    )
    return Expansion(
        mapping=new_mapping,
        columns=list(added),
        checks=[("_no_items", NO_ITEMS, "", message)],
        line_sql="_line",
        warnings=[
            f"{path}: {items} item(s) of {shown} in {with_items} line(s) became one record"
            f" each (rows read counts items{suffixed})"
        ],
    )
