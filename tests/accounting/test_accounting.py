"""dwatch accounting: every recorded handling of a taxpayer's data, from the side table."""

from __future__ import annotations

import csv
import io
import itertools
import json
import re

import pytest
from accounting_seed import BULK, LEDGER, RECEIPTS, TIN_A, TIN_B, TIN_C, TIN_NONE, load

from dwatch.accounting import index as index_module
from dwatch.accounting.index import refresh_index
from dwatch.accounting.lookup import build_accounting, subjects_from_identifiers
from dwatch.accounting.write import NONE_RECORDED, WRITERS, copy_csv, write_csv
from dwatch.policy import load_registry, sync_registry
from dwatch.pseudonym import pseudonymise, resolve_key
from dwatch.store import transaction

TIN_SHAPE = re.compile(r"666-?01-?000\d")


def _keys(accounting):
    return sorted(
        (e.row, e.source_system, e.event_id, e.item_no, e.via, e.event_type)
        for e in accounting.entries
    )


def _account(con, *tins):
    return build_accounting(con, subjects_from_identifiers(list(tins), resolve_key()))


def _refresh(con):
    with transaction(con):
        return refresh_index(con)


def test_every_way_a_taxpayer_is_recorded_is_listed(loaded):
    sync_registry(loaded, load_registry())
    _refresh(loaded)
    accounting = _account(loaded, TIN_A, TIN_B, TIN_C, TIN_NONE)
    assert _keys(accounting) == sorted(
        [
            (1, LEDGER, "EV-1", None, "event", "request"),
            (1, LEDGER, "EV-2", None, "event", "disclosure"),
            (1, LEDGER, "EV-3", 1, "request_item", "request"),
            (1, LEDGER, "EV-4", 1, "request_item", "disclosure"),
            # receipt and disposal name nobody: they concern A because A was disclosed in BULK
            (1, RECEIPTS, "EV-1", None, "request_chain", "receipt"),
            (1, RECEIPTS, "EV-2", None, "request_chain", "disposal"),
            # B was named in the request but never disclosed: no receipt or disposal of B's data
            (2, LEDGER, "EV-3", 2, "request_item", "request"),
            (3, LEDGER, "EV-6", None, "event", "access"),
        ]
    )
    by_event = {(e.row, e.event_id, e.source_system): e for e in accounting.entries}
    assert by_event[(1, "EV-1", LEDGER)].authority_status == "in force"
    assert by_event[(3, "EV-6", LEDGER)].authority_status == "not recognised"
    assert by_event[(1, "EV-2", RECEIPTS)].request_id == BULK
    # the 5000-record state disclosure names nobody and carries no items
    assert (accounting.unattributed_disclosures, accounting.unattributed_records) == (1, 5000)
    assert accounting.entries_by_row().get(4) is None


def test_unindexed_batches_are_read_directly_with_the_same_answer(loaded):
    before = _account(loaded, TIN_A, TIN_B, TIN_C)
    assert before.unindexed_batches == 3
    _refresh(loaded)
    after = _account(loaded, TIN_A, TIN_B, TIN_C)
    assert after.unindexed_batches == 0
    assert _keys(before) == _keys(after) != []


@pytest.mark.parametrize(
    "order",
    [
        ("items", "ledger", "receipts"),
        ("receipts", "items", "ledger"),
        ("ledger", "items", "receipts"),
    ],
)
def test_index_kept_batch_by_batch_equals_one_built_at_once(con, tmp_path, order):
    """Items may arrive before or after the events that carry them and the chain events."""
    for n, part in enumerate(order):
        load(con, tmp_path / f"logs{n}", part)
        _refresh(con)
    incremental = _keys(_account(con, TIN_A, TIN_B, TIN_C))
    unattributed = (
        "SELECT unattributed_disclosures, unattributed_records FROM accounting_index_state"
    )
    counted = con.execute(unattributed).fetchone()
    for table in ("accounting_keys", "accounting_index_runs", "accounting_index_state"):
        con.execute(f"DELETE FROM {table}")
    _refresh(con)
    rebuilt = _keys(_account(con, TIN_A, TIN_B, TIN_C))
    assert incremental == rebuilt
    # the bulk disclosure EV-4 stops counting as unattributed once its items arrive
    assert counted == con.execute(unattributed).fetchone() == (1, 5000)
    assert len(incremental) == 8
    duplicates = con.execute(
        "SELECT count(*) - count(DISTINCT (via, source_system, event_id, item_no, taxpayer_ref))"
        " FROM accounting_index"
    ).fetchone()[0]
    assert duplicates == 0


def test_rewrite_in_key_order_keeps_every_answer(con, tmp_path, monkeypatch):
    load(con, tmp_path / "a", "ledger")
    assert _refresh(con).compacted is False
    monkeypatch.setattr(index_module, "COMPACT_MIN_TAIL", 1)
    load(con, tmp_path / "b", "receipts", "items")
    assert _refresh(con).compacted is True
    keys = [r[0] for r in con.execute("SELECT lookup_key FROM accounting_keys").fetchall()]
    assert keys == sorted(keys)
    state = con.execute("SELECT sorted_entries FROM accounting_index_state").fetchone()[0]
    assert state == len(keys)
    assert len(_keys(_account(con, TIN_A, TIN_B, TIN_C))) == 8


def test_validation_quarantine_after_indexing_drops_the_event(loaded):
    _refresh(loaded)
    run_id = loaded.execute(
        "SELECT ingest_run_id FROM disclosure_events WHERE event_id = 'EV-6' AND source_system = ?",
        [LEDGER],
    ).fetchone()[0]
    with transaction(loaded):
        loaded.execute(
            "DELETE FROM disclosure_events WHERE event_id = 'EV-6' AND source_system = ?", [LEDGER]
        )
        loaded.execute(
            "INSERT INTO quarantine (ingest_run_id, source_file, reason_code, message, stage)"
            " VALUES (?, 'events-ledger.csv', 'test', 'moved by validation', 'validate')",
            [run_id],
        )
    # the index still names EV-6 until the refresh, but its fields are read from the events:
    # an event validation moved out is no longer listed, even before the refresh
    assert loaded.execute("SELECT count(*) FROM accounting_keys WHERE ingest_run_id = ?", [run_id])
    assert _account(loaded, TIN_C).entries == []
    assert len(_account(loaded, TIN_A).entries) == 6
    refresh = _refresh(loaded)
    assert refresh.reindexed_batches == 1
    assert _account(loaded, TIN_C).entries == []
    assert len(_account(loaded, TIN_A).entries) == 6  # the batch's other events are back


def test_findings_and_triage_state_are_attached(loaded):
    _refresh(loaded)
    ref_a = pseudonymise(TIN_A, resolve_key())
    loaded.execute(
        "INSERT INTO alerts (alert_id, detector_id, detector_kind, detector_version, severity,"
        " entity_type, entity_id, explanation) VALUES"
        " ('al_disc', 'disclosure_without_valid_address', 'rule', '1', 'critical', 'request', ?, 'x'),"
        " ('al_rcpt', 'receipt_late', 'rule', '1', 'medium', 'request', ?, 'y'),"
        " ('al_only', 'bulk_case_by_case_request', 'rule', '1', 'high', 'request', ?, 'z')",
        [BULK, BULK, BULK],
    )
    loaded.execute(
        "INSERT INTO alert_subjects (alert_id, taxpayer_ref, reason, request_id, event_id, item_no,"
        " source_system) VALUES ('al_disc', ?, 'disclosed', ?, 'EV-4', 1, ?),"
        " ('al_only', ?, 'named', ?, 'EV-99', NULL, ?)",
        [ref_a, BULK, LEDGER, ref_a, BULK, LEDGER],
    )
    loaded.execute(
        "INSERT INTO alert_events VALUES ('al_rcpt', ?, 'EV-1', 'receipt', ?, 'finding')",
        [RECEIPTS, BULK],
    )
    accounting = _account(loaded, TIN_A)
    covered = {
        (e.source_system, e.event_id): [f.alert_id for f in e.findings] for e in accounting.entries
    }
    assert covered[(LEDGER, "EV-4")] == ["al_disc"]
    assert covered[(RECEIPTS, "EV-1")] == ["al_rcpt"]
    assert covered[(LEDGER, "EV-1")] == []
    assert [f.alert_id for f in accounting.other_findings[1]] == ["al_only"]
    rows = list(csv.DictReader(io.StringIO(write_csv(accounting))))
    assert [r["event_id"] for r in rows if r["covered_by_finding"] == "true"] == [
        "EV-4",
        "EV-1",
        "",
    ]
    (extra,) = [r for r in rows if not r["event_type"]]
    assert "al_only" in extra["findings"] and "no listed event" in extra["note"]


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_outputs_never_hold_an_identifier_and_neutralise_log_text(loaded, fmt):
    _refresh(loaded)
    text = WRITERS[fmt](_account(loaded, TIN_A, TIN_NONE))
    assert not TIN_SHAPE.search(text)
    assert pseudonymise(TIN_A, resolve_key()) not in text  # pseudonyms shortened, as in reports
    assert NONE_RECORDED in text
    assert "<script>" not in text if fmt == "html" else True
    if fmt == "csv":
        assert "'=HYPERLINK" in text
    if fmt == "json":
        subjects = json.loads(text)["subjects"]
        assert [len(s["entries"]) for s in subjects] == [6, 0]


def test_a_line_without_an_identifier_is_named_not_dropped(loaded):
    accounting = _account(loaded, "XXX-XX-0001", TIN_C)
    assert [s.taxpayer_ref is None for s in accounting.subjects] == [True, False]
    assert "holds no taxpayer identifier" in WRITERS["text"](accounting)


NASTY = [
    "+SUM(A1:A9)",
    "-2+3",
    "@cmd",
    "\tTAB",
    "\rCR",
    "=1+1",
    "cites 123-45-6789 in passing",
    "ref tp_0123456789abcdef0123456789abcdef here",
    '"quoted", with comma',
    "line\nbreak",
    "plain",
]


def test_duckdb_csv_writes_the_same_cells_as_csv_cell(loaded, tmp_path):
    """copy_csv applies csv_cell's policy in SQL: every cell equal on hostile log text."""
    for n, text in enumerate(NASTY):
        loaded.execute(
            "INSERT INTO disclosure_events (event_id, source_system, occurred_at, event_type,"
            " disclosing_agency, recipient_agency, actor_id, request_id, legal_authority, purpose,"
            " data_elements, record_count, taxpayer_ref, ingest_run_id, source_row)"
            " SELECT ?, ?, TIMESTAMPTZ '2025-10-01 00:00:00+00' + to_minutes(?), 'access', ?, ?,"
            " 'a', ?, ?, ?, ['name'], 1, ?, ingest_run_id, ?"  # a row of its batch, as ingest
            " FROM disclosure_events LIMIT 1",
            [
                *(f"X-{n}", text, n, text, text, text, text, text),
                *(pseudonymise(TIN_C, resolve_key()), 1000 + n),
            ],
        )
    _refresh(loaded)
    subjects = subjects_from_identifiers([TIN_A, "", "XX-1", TIN_C, TIN_NONE], resolve_key())
    in_python = write_csv(build_accounting(loaded, subjects))
    accounting = build_accounting(loaded, subjects, fetch=False)
    rows = copy_csv(loaded, accounting, tmp_path / "a.csv")
    with (tmp_path / "a.csv").open(encoding="utf-8", newline="") as handle:  # keep a bare CR
        by_duckdb = handle.read()
    parsed = list(csv.reader(io.StringIO(by_duckdb)))
    assert parsed == list(csv.reader(io.StringIO(in_python)))
    assert rows == len(parsed) - 1 == 6 + 1 + len(NASTY) + 2  # A, C, the hostile rows, notes
    assert "123-45-6789" not in by_duckdb and "0123456789abcdef0123" not in by_duckdb
    cells = {cell for row in parsed for cell in row}
    assert {"'+SUM(A1:A9)", "'-2+3", "'@cmd", "'=1+1", "'\tTAB"} <= cells


def test_a_first_build_lists_each_batch_as_the_staged_refresh_does(con, tmp_path):
    """A first build inserts straight from the query in sorted pieces, with no staging table; each batch's
    count in accounting_index_runs is what the staged rows give (rows of its events, plus
    rows of its items that sit on another batch's events)."""
    load(con, tmp_path / "a", "ledger")
    load(con, tmp_path / "b", "receipts")
    load(con, tmp_path / "c", "items")  # items of requests whose events came before
    batches = index_module.unindexed_batches(con)
    with transaction(con):
        index_module.pending_entries(con, batches, "_acct_staged")
        staged = con.execute(
            "SELECT ingest_run_id, item_run_id, via, source_row, item_no FROM _acct_staged"
        ).fetchall()
    expected = {b: sum(1 for e, i, *_ in staged if e == b or (i == b and i != e)) for b in batches}
    sent: list[str] = []
    execute = con.execute

    class Recording:
        def execute(self, sql, *args, **kwargs):
            sent.append(" ".join(sql.split()))
            return execute(sql, *args, **kwargs)

        def __getattr__(self, name):
            return getattr(con, name)

    with transaction(con):
        refreshed = refresh_index(Recording())
    assert refreshed.entries == len(staged) > 0
    assert (
        dict(con.execute("SELECT ingest_run_id, entries FROM accounting_index_runs").fetchall())
        == expected
    )
    assert sum(expected.values()) > len(staged)  # an item row counts for both its batches
    assert not [s for s in sent if "_acct_new" in s]
    indexed = con.execute(
        "SELECT ingest_run_id, item_run_id, via, source_row, item_no FROM accounting_keys"
    ).fetchall()
    assert sorted(indexed, key=str) == sorted(staged, key=str)
    keys = [r[0] for r in con.execute("SELECT lookup_key FROM accounting_keys").fetchall()]
    # two sorted pieces: the events' rows (one piece at this size), then the items' and chains'
    assert sum(a > b for a, b in itertools.pairwise(keys)) <= 1 < len(keys)
