"""Supplied addresses judged beside the load (dwatch.ingest.addresses): the same verdicts
as judging them at the end, the parser at the end only for texts the thread did not see."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest

import dwatch.address_verdicts as address_verdicts
import dwatch.ingest.addresses as ingest_addresses
from dwatch.address import AddressVocabulary, vocabulary_of
from dwatch.ingest import ingest_paths
from dwatch.ingest.addresses import AddressPrefetch
from dwatch.ingest.base import _Context
from dwatch.policy import load_registry
from dwatch.store import connect

KEY = b"unit-test-pseudonym-key"
SHAPED = "Apt 123-45-6789, 12 Elm St, Miami FL 33101"  # stored masked: a different text
ADDRESSES = [
    "4512 Oak Ridge Dr, Houston, TX 77001",
    "4512 Oak Ridge Dr, Houston, TX 77001",  # a second item, same text
    "  PO Box 7, Austin TX 78701 ",  # stored trimmed
    "Unknown",
    "33101",
    SHAPED,
    None,
    "",
]


def _inbox(folder: Path) -> Path:
    """An events file, then the items file (it sorts last, as in a real export)."""
    folder.mkdir()
    pl.DataFrame(
        {
            "event_id": ["e1", "e2"],
            "source_system": ["irs-disclosure-ledger"] * 2,
            "sequence_no": ["1", "2"],
            "occurred_at": ["2025-08-07T10:00:00-04:00", "2025-08-07T10:01:00-04:00"],
            "event_type": ["request", "disclosure"],
            "disclosing_agency": ["IRS"] * 2,
            "recipient_agency": ["CA-FTB"] * 2,
            "actor_id": ["u1"] * 2,
            "request_id": ["R1"] * 2,
            "data_elements": ['["name","address"]'] * 2,
            "record_count": ["1"] * 2,
        }
    ).write_parquet(folder / "events-ledger.parquet")
    pl.DataFrame(
        {
            "request_id": ["R1"] * len(ADDRESSES),
            "event_id": ["e1"] * len(ADDRESSES),
            "item_no": list(range(1, len(ADDRESSES) + 1)),
            "supplied_name": ["A. Person"] * len(ADDRESSES),
            "supplied_address": ADDRESSES,
        },
        schema={
            "request_id": pl.Utf8,
            "event_id": pl.Utf8,
            "item_no": pl.Int64,
            "supplied_name": pl.Utf8,
            "supplied_address": pl.Utf8,
        },
    ).write_parquet(folder / "request_items.parquet")
    return folder


def _verdicts(con: duckdb.DuckDBPyConnection) -> list[tuple[Any, ...]]:
    return con.execute(
        "SELECT address_key, vocabulary, usable, form, reason FROM address_verdicts ORDER BY 1"
    ).fetchall()


def _judged_at_the_end(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Texts the end of the load parses itself (not found among the thread's verdicts)."""
    parsed: list[str] = []
    judge = address_verdicts.judge_address

    def spy(text: str, vocabulary: AddressVocabulary) -> Any:
        parsed.append(text)
        return judge(text, vocabulary)

    monkeypatch.setattr(address_verdicts, "judge_address", spy)
    return parsed


def _patient(monkeypatch: pytest.MonkeyPatch) -> None:
    """The end of the load waits for the thread to judge everything (a test's files are
    small: the items file can arrive before the thread is done)."""
    take = AddressPrefetch.take

    def wait_then_take(self: AddressPrefetch, vocabulary: AddressVocabulary) -> Any:
        if self._thread is not None:
            self._thread.join()
        return take(self, vocabulary)

    monkeypatch.setattr(AddressPrefetch, "take", wait_then_take)


def test_verdicts_judged_beside_the_load_are_the_verdicts_judged_at_the_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _inbox(tmp_path / "in")
    monkeypatch.setattr(ingest_addresses, "PREFETCH", False)
    alone = connect(tmp_path / "alone.duckdb")
    ingest_paths(alone, [folder], key=KEY)
    expected = _verdicts(alone)

    monkeypatch.setattr(ingest_addresses, "PREFETCH", True)
    _patient(monkeypatch)
    parsed = _judged_at_the_end(monkeypatch)
    con = connect(tmp_path / "beside.duckdb")
    results = ingest_paths(con, [folder], key=KEY)
    assert {r.status for r in results} == {"loaded"}
    assert _verdicts(con) == expected
    assert len(expected) == 5  # distinct stored texts: empty and NULL are no address
    # Only the address ingest masked was left to the end: its stored text is not the
    # text the thread read, and the parser never sees the raw one from the store.
    stored = con.execute(
        "SELECT supplied_address FROM request_items WHERE supplied_address LIKE 'Apt %'"
    ).fetchone()[0]
    assert "6789" not in stored
    assert parsed == [stored]


def test_the_thread_judges_only_texts_the_store_has_no_verdict_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _inbox(tmp_path / "in")
    con = connect(tmp_path / "s.duckdb")
    vocabulary = vocabulary_of(load_registry())
    con.execute(
        "INSERT INTO address_verdicts (address_key, vocabulary, usable, form, reason)"
        " VALUES (md5_number('Unknown'), ?, false, 'none', 'seen before')",
        [vocabulary.fingerprint],
    )
    prefetch = AddressPrefetch(con, sorted(folder.iterdir()), _Context()).start()
    assert prefetch._thread is not None
    prefetch._thread.join()
    judged = prefetch.take(vocabulary)
    assert sorted(judged) == sorted(
        {"4512 Oak Ridge Dr, Houston, TX 77001", "PO Box 7, Austin TX 78701", "33101", SHAPED}
    )
    # Verdicts reached under another vocabulary are not this one's.
    assert prefetch.take(AddressVocabulary.of(["somewhere"])) == {}


def test_the_load_leaves_no_thread_running(tmp_path: Path) -> None:
    folder = _inbox(tmp_path / "in")
    con = connect(tmp_path / "s.duckdb")
    ingest_paths(con, [folder], key=KEY)
    assert not [t for t in threading.enumerate() if t.name == "dwatch-addresses"]
    assert con.execute("SELECT count(*) FROM address_verdicts").fetchone()[0] == 5
