"""The analysts' snapshot opens in older DuckDB clients (issue 15 item 6).

A store written by this engine is published in the oldest storage format that holds it;
the DuckDB CLI 1.5 (the ``duckdb-cli`` package, ``.venv/bin/duckdb``) opens it and runs
every query of docs/analyst-guide.md; ``dwatch export --parquet`` writes the analyst views
for tools without DuckDB."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from detectors.engine import detect_rules
from dwatch.cli import main
from dwatch.errors import StoreError
from dwatch.ingest import ingest_paths
from dwatch.snapshot import ANALYST_VIEWS, publish_snapshot, storage_ladder
from dwatch.store import connect

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "analyst-guide.md"
EXPORTS = ROOT / "tests" / "fixtures" / "exports"
CLI = Path(sys.executable).parent / "duckdb"


def _published(db_path: Path, snap_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DWATCH_SOURCES_DIR", str(EXPORTS / "sources"))
    con = connect(db_path)
    try:
        ingest_paths(con, [EXPORTS / "raw"])
        detect_rules(con)
        con.execute(
            "INSERT INTO runs (run_id, trigger, status, started_at) VALUES ('run_t', 'test',"
            " 'succeeded', now())"
        )
        published = publish_snapshot(con, db_path, snap_dir, "run_t")
    finally:
        con.close()
    assert published.storage_version == "v1.0.0"
    return published.path


def _cli_version() -> str:
    return subprocess.run([str(CLI), "--version"], capture_output=True, text=True).stdout


def test_duckdb_cli_1_5_runs_every_analyst_guide_query_on_the_snapshot(
    db_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _cli_version().startswith("v1.5"), _cli_version()
    snapshot = _published(db_path, tmp_path / "snapshots", monkeypatch)
    queries = re.findall(r"```sql\n(.*?)```", GUIDE.read_text(encoding="utf-8"), re.S)
    assert len(queries) >= 10
    for sql in queries:
        done = subprocess.run(
            [
                str(CLI),
                "-readonly",
                "-csv",
                str(snapshot),
                "-c",
                "SET TimeZone = 'UTC';",
                "-c",
                sql,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0 and not done.stderr, (sql, done.stderr)
    # Data, not only a schema: the older client reads the rows this engine wrote.
    counted = subprocess.run(
        [str(CLI), "-readonly", "-csv", "-noheader", str(snapshot), "-c",
         "SELECT count(*) FROM disclosure_events"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    engine = duckdb.connect(str(snapshot), read_only=True)
    try:
        expected = engine.execute("SELECT count(*) FROM disclosure_events").fetchone()
    finally:
        engine.close()
    assert expected is not None and expected[0] > 50
    assert counted.stdout.strip() == str(expected[0])


def test_the_storage_version_is_settable_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    assert storage_ladder()[0] == "v1.0.0"
    monkeypatch.setenv("DWATCH_SNAPSHOT_STORAGE", "v1.3.0")
    assert storage_ladder()[0] == "v1.3.0"
    assert storage_ladder("latest") == []
    with pytest.raises(StoreError, match="unknown snapshot storage version"):
        storage_ladder("v9")


def test_export_parquet_writes_every_analyst_view(
    db_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    snap_dir = tmp_path / "snapshots"
    _published(db_path, snap_dir, monkeypatch)
    monkeypatch.setenv("DWATCH_SNAPSHOT_DIR", str(snap_dir))
    out = tmp_path / "parquet"
    result = CliRunner().invoke(main, ["--db", str(db_path), "export", "--parquet", str(out)])
    assert result.exit_code == 0, result.output
    written = {p.stem for p in out.glob("*.parquet")}
    assert written == set(ANALYST_VIEWS)
    [(events,)] = duckdb.sql(
        f"SELECT count(*) FROM '{out / 'disclosure_events.parquet'}'"
    ).fetchall()
    assert events > 50
