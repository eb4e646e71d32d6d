"""Canary: fake taxpayer identifiers in every field and file name, through the whole pipeline.

Each input field (and each file name and extra column, its header included) carries its own
fake SSN in one of the shapes logs write: dashed, spaced, dotted, undashed, glued to letters
or punctuation, inside an id. The Prefect flow then ingests, validates, detects, reports,
mails (to a real SMTP server on loopback), publishes a snapshot and creates its artifacts.
Afterwards every byte the run wrote is searched for every canary in any formatting, and every
text column of every table of the store is searched by SQL too (DuckDB compresses strings,
so a byte scan alone could miss one). Not one hit is allowed.
"""

from __future__ import annotations

import csv
import json
import logging
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pytest
from aiosmtpd.controller import Controller

from dwatch.snapshot_parts import PARTITIONED

KEY = "canary-key-not-secret-0123456789abcdef"


class _Canaries:
    """Distinct fake SSNs handed out one per use, written in a rotating shape."""

    SHAPES = (
        "{a}-{b}-{c}",
        "{a} {b} {c}",
        "{a}.{b}.{c}",
        "{a}{b}{c}",
        "ssn:{a}-{b}-{c}x",
        "no{a}{b}{c}x",
        "({a}-{b}-{c})",
        "{a} - {b} - {c}",
    )

    def __init__(self) -> None:
        self.issued: list[str] = []

    def __call__(self, shape: int | None = None) -> str:
        n = len(self.issued)
        digits = f"{731 + n % 200:03d}{41 + n % 50:02d}{(5103 + 37 * n) % 10000:04d}"
        assert digits not in self.issued, digits
        self.issued.append(digits)
        a, b, c = digits[:3], digits[3:5], digits[5:]
        template = self.SHAPES[(n if shape is None else shape) % len(self.SHAPES)]
        return template.format(a=a, b=b, c=c)


def _any_format(digits: str) -> re.Pattern[bytes]:
    """The nine digits with any separators (none, dash, dot, slash, spaces) between them."""
    return re.compile(rb"[-./ ]{0,3}".join(d.encode() for d in digits))


EVENT_FIELDS = [
    "event_id", "source_system", "sequence_no", "occurred_at", "event_type", "disclosing_agency",
    "recipient_agency", "actor_id", "actor_role", "request_id", "legal_authority", "purpose",
    "data_elements", "record_count", "taxpayer_tin", "channel", "encrypted", "agreement_id",
    "case_number", "description", "outcome",
]  # fmt: skip
ITEM_FIELDS = [
    "request_id", "event_id", "item_no", "taxpayer_tin", "supplied_name", "supplied_address",
    "tax_periods", "statute", "reason", "match_method", "source_system",
]  # fmt: skip


def _write_inputs(folder: Path, canary: _Canaries) -> list[Path]:
    folder.mkdir(parents=True)
    source = f"ledger-{canary(0)}"
    actor = f"user-{canary(0)}"
    extra_header = f"note {canary(0)}"
    events: list[dict[str, object]] = []
    requests = [f"REQ-{canary(0)}", f"REQ {canary(1)}", f"req{canary(3)}"]
    for i in range(12):
        request_id = requests[i % len(requests)]
        events.append(
            {
                "event_id": f"EV-{canary()}",
                "source_system": source,
                "sequence_no": i + 1,
                "occurred_at": f"2025-03-{3 + i:02d}T10:15:00Z",
                "event_type": "request" if i < 3 else "disclosure",
                "disclosing_agency": "IRS",
                "recipient_agency": f"CA-FTB {canary()}" if i % 4 == 3 else "CA-FTB",
                "actor_id": actor if i % 2 else f"{canary()}",
                "actor_role": f"analyst {canary()}",
                "request_id": request_id,
                "legal_authority": f"26 USC 6103(d) ref {canary()}" if i % 3 else "26 USC 6103(d)",
                "purpose": f"ssn {canary()} asked",
                "data_elements": json.dumps(["name", f"tin {canary()}"]),
                "record_count": 1,
                "taxpayer_tin": canary(),
                "channel": "sftp" if i % 5 else "email",
                "encrypted": "true" if i % 5 else "false",
                "agreement_id": f"MOU-{canary()}",
                "case_number": f"CASE-{canary()}",
                "description": f"note {canary()};{canary()}",
                "outcome": f"success {canary()}" if i % 6 == 5 else "success",
                extra_header: f"extra {canary()}",
            }
        )
    # Bad rows: every check that quotes a value, with a canary in the checked field.
    for i, (name, value) in enumerate(
        [
            ("record_count", canary(0)),
            ("sequence_no", canary(0)),
            ("occurred_at", canary(0)),
            ("event_type", canary()),
            ("channel", canary()),
            ("encrypted", canary()),
        ]
    ):
        bad = dict(events[3 + i])
        bad.update({"event_id": f"BAD-{canary()}", "description": f"bad {canary()}", name: value})
        events.append(bad)
    events.append(dict(events[4]))  # a duplicate event_id: quarantined with the id quoted
    ledger = folder / f"ledger-{canary(0)}.csv"
    with ledger.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, [*EVENT_FIELDS, extra_header])
        writer.writeheader()
        writer.writerows(events)
    items = folder / f"items {canary(1)}.csv"
    with items.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, ITEM_FIELDS)
        writer.writeheader()
        for n, event in enumerate(events[:3], 1):
            writer.writerow(
                {
                    "request_id": event["request_id"],
                    "event_id": event["event_id"],
                    "item_no": n,
                    "taxpayer_tin": canary(),
                    "supplied_name": f"Jane Roe {canary()}",
                    "supplied_address": f"1 Main St, apt {canary()}",
                    "tax_periods": f"2023 {canary()}",
                    "statute": f"18 USC 1001 {canary()}",
                    "reason": f"subject {canary()}",
                    "match_method": f"tin {canary()}",
                    "source_system": source,
                }
            )
    return [ledger, items]


@dataclass
class CanaryRun:
    root: Path
    out: Path
    db: Path
    canaries: list[str]
    mails: list[bytes] = field(default_factory=list)
    artifacts: list[str] = field(default_factory=list)
    prefect_files: dict[Path, bytes] = field(default_factory=dict)
    result: dict[str, object] = field(default_factory=dict)


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server, session, envelope) -> str:  # aiosmtpd hook name
        self.messages.append(bytes(envelope.content))
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def canary_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CanaryRun]:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_SERVER_DATABASE_CONNECTION_URL
    from prefect.testing.utilities import prefect_test_harness

    from flows.pipeline import pipeline_flow

    root = tmp_path_factory.mktemp("canary")
    canary = _Canaries()
    inputs = root / "inputs"
    _write_inputs(inputs, canary)
    out = root / "out"
    out.mkdir()
    settings = out / "pipeline.yaml"
    settings.write_text(
        f"reports_dir: {out / 'reports'}\nsnapshots: {{dir: {out / 'snapshots'}, keep: 2}}\n"
        "notify: true\n",
        encoding="utf-8",
    )
    log_file = out / "run.log"
    handler = logging.FileHandler(log_file, encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    loggers = [logging.getLogger(), logging.getLogger("prefect"), logging.getLogger("dwatch")]
    inbox = _Inbox()
    port = _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    env = {
        "DWATCH_PSEUDONYM_KEY": KEY,
        "DWATCH_SMTP_HOST": "127.0.0.1",
        "DWATCH_SMTP_PORT": str(port),
        "DWATCH_SMTP_FROM": "dwatch@agency.example",
        "DWATCH_SMTP_TO": "compliance@agency.example",
        "DWATCH_SMTP_MIN_SEVERITY": "low",
    }
    db = out / "store.duckdb"
    run = CanaryRun(root, out, db, canary.issued)
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        for logger in loggers:
            logger.addHandler(handler)
        controller.start()
        try:
            with prefect_test_harness(server_startup_timeout=180):
                run.result = pipeline_flow(
                    paths=[str(inputs)], db=str(db), config_path=str(settings)
                )
                with get_client(sync_client=True) as client:
                    run.artifacts = [json.dumps(a.data) for a in client.read_artifacts()]
                prefect_db = Path(PREFECT_SERVER_DATABASE_CONNECTION_URL.value().split("///", 1)[1])
                for path in prefect_db.parent.glob(prefect_db.name + "*"):
                    run.prefect_files[path] = path.read_bytes()
        finally:
            controller.stop()
            for logger in loggers:
                logger.removeHandler(handler)
            handler.close()
    run.mails = list(inbox.messages)
    yield run


def _hits(data: bytes, canaries: list[str]) -> list[str]:
    return [c for c in canaries if _any_format(c).search(data)]


def test_the_run_did_the_work_the_scan_relies_on(canary_run: CanaryRun) -> None:
    """Guards the scan below: a run that wrote nothing would pass it trivially."""
    assert canary_run.result["status"] == "succeeded", canary_run.result
    con = duckdb.connect(str(canary_run.db), read_only=True)
    try:
        counts = con.execute(
            "SELECT (SELECT count(*) FROM disclosure_events), (SELECT count(*) FROM request_items),"
            " (SELECT count(*) FROM quarantine), (SELECT count(*) FROM alerts),"
            " (SELECT count(*) FROM validation_results)"
        ).fetchone()
        # Ids carrying a shape are pseudonymised whole and alike in both files: joins hold.
        joined = con.execute(
            "SELECT count(*) FROM request_items i JOIN disclosure_events e USING (request_id, event_id)"
        ).fetchone()[0]
    finally:
        con.close()
    events, items, quarantined, alerts, validations = counts
    assert events == 12 and items == 3 and quarantined == 7, counts
    assert alerts > 0 and validations > 0
    assert joined == 3
    assert (canary_run.out / "reports" / "report.html").is_file()
    assert list((canary_run.out / "snapshots").rglob("*.duckdb"))
    assert canary_run.mails, "no mail was sent"
    assert canary_run.artifacts and canary_run.prefect_files
    assert (canary_run.out / "run.log").stat().st_size > 0


def test_no_canary_in_any_file_the_run_wrote(canary_run: CanaryRun) -> None:
    found = {}
    files = [p for p in canary_run.out.rglob("*") if p.is_file()]
    assert len(files) > 5
    for path in files:
        hits = _hits(path.read_bytes(), canary_run.canaries)
        if hits:
            found[str(path.relative_to(canary_run.out))] = hits
        name_hits = _hits(str(path).encode(), canary_run.canaries)
        if name_hits:
            found[f"name of {path}"] = name_hits
    assert not found


def test_no_canary_in_mail_artifacts_or_prefect_database(canary_run: CanaryRun) -> None:
    found = {}
    for i, mail in enumerate(canary_run.mails):
        if hits := _hits(mail, canary_run.canaries):
            found[f"mail {i}"] = hits
    for i, artifact in enumerate(canary_run.artifacts):
        if hits := _hits(artifact.encode(), canary_run.canaries):
            found[f"artifact {i}"] = hits
    for path, data in canary_run.prefect_files.items():
        if hits := _hits(data, canary_run.canaries):
            found[path.name] = hits
    assert not found


def test_no_canary_in_any_text_column_of_the_store(canary_run: CanaryRun) -> None:
    """Every VARCHAR, JSON and list column of every table, read back through SQL (in a
    snapshot, also of the views over its Parquet partitions: zstd hides bytes from a scan)."""
    found: dict[str, list[str]] = {}
    stores = [canary_run.db, *sorted((canary_run.out / "snapshots").rglob("*.duckdb"))]
    for store in stores:
        con = duckdb.connect(str(store), read_only=True)
        try:
            columns = con.execute(
                "SELECT table_schema, table_name, column_name FROM information_schema.columns"
                " JOIN information_schema.tables USING (table_catalog, table_schema, table_name)"
                # a snapshot's partitioned tables are views over Parquet files
                " WHERE (table_type = 'BASE TABLE' OR table_name IN (SELECT unnest(?)))"
                " AND (data_type LIKE '%VARCHAR%'"
                " OR data_type LIKE '%JSON%' OR data_type LIKE '%[]' OR data_type LIKE 'STRUCT%'"
                " OR data_type LIKE 'MAP%')",
                [list(PARTITIONED)],
            ).fetchall()
            assert len(columns) > 50
            for schema, table, column in columns:
                text = "\n".join(
                    str(v)
                    for (v,) in con.execute(
                        f'SELECT CAST("{column}" AS VARCHAR) FROM "{schema}"."{table}"'
                    ).fetchall()
                )
                if hits := _hits(text.encode(), canary_run.canaries):
                    found[f"{store.name}:{table}.{column}"] = hits
        finally:
            con.close()
    assert not found
