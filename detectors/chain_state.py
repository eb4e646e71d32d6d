"""Request chains kept between runs, so a run judging new batches reads no old event to
name a finding's chain (issue 18; table ``rule_chain_rows``, migration 0045).

A finding names the rest of its request chain: the requests, disclosures and receipts
sharing a request id and recipient with its events (:mod:`detectors.evidence`). Those are
read from every event of the store once per judgement into ``dw_chain_rows``; at 10M
events, 794k rows copied each run (0.8 CPU-s of a 1% run's rules). Each row is derived from
its own event alone (its request id, type, taxpayer and its recipient resolved under the
registry: :data:`detectors.evidence.CHAIN_ROWS_SELECT`), so the rows of all history are the
rows of each batch put together, as with custody (:mod:`detectors.custody_state`):

* a full judgement rebuilds the kept rows from every event and judges from them;
* a run judging new batches appends the new batches' rows (bounded by the row id they
  start from, :func:`detectors.rule_state.find_new_rows`) and judges from the kept rows;
* the state is trusted only under the ledger of :mod:`detectors.rule_state` (every old
  batch as counted when the rows were kept: rows deleted, quarantined or corrected since
  rebuild it) and the registry and code version it was derived under (family ``chain`` in
  ``rule_state``): a registry change, a batch left half-judged or other code rebuild it.

It keeps values, not row ids, so DuckDB renumbering rows (a checkpoint compacting row
groups emptied by deletes) cannot make it point at other events.
"""

from __future__ import annotations

import hashlib

import duckdb

from detectors.evidence import CHAIN_EVENT_TYPES, CHAIN_ROWS, CHAIN_ROWS_SELECT, forget_chains

FAMILY = "chain"
TABLE = "rule_chain_rows"
CODE_VERSION = hashlib.md5((CHAIN_ROWS_SELECT + repr(CHAIN_EVENT_TYPES)).encode()).hexdigest()[:12]


def _insert(con: duckdb.DuckDBPyConnection, where: str) -> int:
    row = con.execute(
        f"INSERT INTO {TABLE} {CHAIN_ROWS_SELECT.format(where=where)}",
        {"chain_types": list(CHAIN_EVENT_TYPES)},
    ).fetchone()
    return int(row[0]) if row else 0


def use(con: duckdb.DuckDBPyConnection) -> None:
    """``dw_chain_rows`` as a view over the kept rows (nothing copied)."""
    forget_chains(con)
    con.execute(f"CREATE TEMP VIEW {CHAIN_ROWS} AS SELECT * FROM {TABLE}")


def rebuild(con: duckdb.DuckDBPyConnection) -> int:
    """The kept rows, whole, from every event (``dw_agencies`` resolved), and judged from.

    The family's version is dropped until a judgement records the registry it judged under
    (:func:`detectors.rule_state.save_full` or :func:`detectors.rule_state.finish`): rows
    rebuilt by a judgement that records none are not trusted by the next run."""
    con.execute("DELETE FROM rule_state WHERE family = $f", {"f": FAMILY})
    con.execute(f"DELETE FROM {TABLE}")
    added = _insert(con, "true")
    use(con)
    return added


def append_new(con: duckdb.DuckDBPyConnection, first_row: int) -> int:
    """Add the rows of the new batches (``dw_new_batches``, every row at or after row id
    ``first_row``) and judge from the kept rows; the number of rows added."""
    added = _insert(
        con,
        f"e.rowid >= {int(first_row)}"
        " AND e.ingest_run_id IN (SELECT ingest_run_id FROM dw_new_batches)",
    )
    use(con)
    return added
