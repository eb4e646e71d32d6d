"""A hash chain over ``ingest_runs``: a changed or deleted ingest record is detectable.

Each ingest record, when written, gets the next ``chain_seq``, a ``chain_record`` (canonical
JSON of the facts fixed at ingest: file, content hash, kind, counts, status, times) and
``chain_hash = sha256(chain_prev + "\\n" + chain_record)`` where ``chain_prev`` is the hash of
the record before it. ``verify_store`` walks the chain: a record whose columns no longer say
what was recorded, a broken link or a missing sequence number names the run.

Validation later moves rows from loaded to quarantined (``dwatch.validate.quarantine``), so
the chain checks that the two counts still add up to what ingest recorded and that the
quarantined count only grew, rather than that each is unchanged.

What a chain cannot show by itself: that the newest records were removed (the remaining
chain is still consistent). ``chain_head`` gives the latest (seq, hash); evidence bundles and
``dwatch verify --store`` print it so that a monitor can record it outside the store.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import duckdb

GENESIS = "0" * 64

# Facts fixed when the file was ingested (rows_loaded / rows_quarantined are checked as a sum).
_FIXED = (
    "run_id",
    "source_file",
    "content_sha256",
    "kind",
    "source_system",
    "file_format",
    "rows_read",
    "started_at",
    "finished_at",
    "status",
    "forced",
)
_COUNTS = ("rows_loaded", "rows_quarantined")


@dataclass(frozen=True)
class ChainHead:
    seq: int
    chain_hash: str


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    return value


def _record_of(row: dict[str, Any]) -> str:
    facts = {name: _jsonable(row[name]) for name in (*_FIXED, *_COUNTS)}
    return json.dumps(facts, sort_keys=True, separators=(",", ":"))


def link(prev_hash: str, record: str) -> str:
    return hashlib.sha256(f"{prev_hash}\n{record}".encode()).hexdigest()


def _rows(con: duckdb.DuckDBPyConnection, where: str, params: list[Any]) -> list[dict[str, Any]]:
    cols = (*_FIXED, *_COUNTS, "chain_seq", "chain_record", "chain_prev", "chain_hash")
    cur = con.execute(f"SELECT {', '.join(cols)} FROM ingest_runs {where}", params)
    return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def chain_head(con: duckdb.DuckDBPyConnection) -> ChainHead:
    row = con.execute(
        "SELECT chain_seq, chain_hash FROM ingest_runs WHERE chain_seq IS NOT NULL"
        " ORDER BY chain_seq DESC LIMIT 1"
    ).fetchone()
    return ChainHead(0, GENESIS) if row is None else ChainHead(int(row[0]), str(row[1]))


def append(con: duckdb.DuckDBPyConnection, run_id: str) -> ChainHead:
    """Chain the ingest record ``run_id`` (just inserted) after the current head."""
    return append_many(con, [run_id])


def append_many(con: duckdb.DuckDBPyConnection, run_ids: list[str]) -> ChainHead:
    """Chain the ingest records ``run_ids`` (just inserted), in this order, after the
    current head: one link each, as appending them one by one gives, in three statements."""
    rows = {
        row["run_id"]: row
        for row in _rows(con, "WHERE run_id IN (SELECT unnest(?::VARCHAR[]))", [run_ids])
    }
    head = chain_head(con)
    links: list[tuple[str, int, str, str, str]] = []
    for run_id in run_ids:
        record = _record_of(rows[run_id])
        new = ChainHead(head.seq + 1, link(head.chain_hash, record))
        links.append((run_id, new.seq, record, head.chain_hash, new.chain_hash))
        head = new
    if links:
        con.execute(
            "UPDATE ingest_runs SET chain_seq = v.seq, chain_record = v.record,"
            " chain_prev = v.prev, chain_hash = v.hash"
            " FROM (SELECT unnest(?::VARCHAR[]) AS run_id, unnest(?::BIGINT[]) AS seq,"
            " unnest(?::VARCHAR[]) AS record, unnest(?::VARCHAR[]) AS prev,"
            " unnest(?::VARCHAR[]) AS hash) v WHERE ingest_runs.run_id = v.run_id",
            [list(column) for column in zip(*links, strict=True)],
        )
    return head


def backfill(con: duckdb.DuckDBPyConnection) -> int:
    """Chain records written before the chain existed, oldest first; returns how many."""
    pending = con.execute(
        "SELECT run_id FROM ingest_runs WHERE chain_seq IS NULL ORDER BY started_at, run_id"
    ).fetchall()
    for (run_id,) in pending:
        append(con, run_id)
    return len(pending)


def verify_store(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Every way the ingest chain no longer holds, one sentence each naming the run."""
    problems: list[str] = []
    rows = _rows(con, "ORDER BY chain_seq NULLS FIRST, run_id", [])
    prev, expected_seq = GENESIS, 1
    for row in rows:
        run = row["run_id"]
        if row["chain_seq"] is None:
            problems.append(f"ingest run {run}: not in the chain (inserted outside dwatch ingest)")
            continue
        if row["chain_seq"] != expected_seq:
            problems.append(
                f"ingest run {run}: chain position {row['chain_seq']} where {expected_seq} was"
                f" expected; record(s) {expected_seq}..{row['chain_seq'] - 1} were deleted"
            )
        if row["chain_prev"] != prev:
            problems.append(f"ingest run {run}: does not follow the record before it (link broken)")
        if link(str(row["chain_prev"]), str(row["chain_record"])) != row["chain_hash"]:
            problems.append(f"ingest run {run}: chain_record or chain_hash was changed")
        problems.extend(_facts_changed(row))
        prev, expected_seq = str(row["chain_hash"]), int(row["chain_seq"]) + 1
    return problems


def _facts_changed(row: dict[str, Any]) -> list[str]:
    try:
        recorded = json.loads(str(row["chain_record"]))
    except json.JSONDecodeError:
        return [f"ingest run {row['run_id']}: chain_record is not the JSON dwatch wrote"]
    now = json.loads(_record_of(row))
    changed = [name for name in _FIXED if recorded.get(name) != now[name]]
    problems = [
        f"ingest run {row['run_id']}: {name} is {now[name]!r}, recorded {recorded.get(name)!r}"
        for name in changed
    ]
    before = (recorded.get("rows_loaded") or 0) + (recorded.get("rows_quarantined") or 0)
    after = (now["rows_loaded"] or 0) + (now["rows_quarantined"] or 0)
    if before != after or (now["rows_quarantined"] or 0) < (recorded.get("rows_quarantined") or 0):
        problems.append(
            f"ingest run {row['run_id']}: rows loaded/quarantined now {now['rows_loaded']}/"
            f"{now['rows_quarantined']}, recorded at ingest {recorded.get('rows_loaded')}/"
            f"{recorded.get('rows_quarantined')} (validation only moves rows to quarantine)"
        )
    return problems
