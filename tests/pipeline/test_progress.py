"""Progress on long work (issue 18 item 6): plain lines every few seconds when output is not
a terminal, rich bars on one, the same lines in Prefect's log; never a raw identifier.
Time is a fake clock: nothing here waits or measures wall time."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest
from click.testing import CliRunner
from pipeline_helpers import ledger_rows, write_events

from dwatch import progress
from dwatch.cli import main
from dwatch.errors import ConfigError
from dwatch.progress import Reporter, reporting, task


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _plain(clock: FakeClock) -> tuple[Reporter, list[str]]:
    lines: list[str] = []
    return Reporter(lines.append, interval=5.0, clock=clock), lines


def test_a_plain_line_every_interval_with_file_rows_rate_and_time_left(tmp_path: Path) -> None:
    clock = FakeClock()
    reporter, lines = _plain(clock)
    with reporting(reporter, heartbeat=False), task("ingest", total=400, unit="bytes") as t:
        for n in range(1, 5):
            t.working_on(tmp_path / f"events-{n}.csv", f"file {n}/4")
            clock.now += 2.5  # each file takes 2.5 s: a line every second file
            t.advance(100, rows=1000)
    assert lines == [
        "progress: ingest 50%, file 2/4 events-2.csv: 2,000 rows, 400 rows/s, 0:05 left,"
        " 0:05 elapsed",
        "progress: ingest 100%, file 4/4 events-4.csv: 4,000 rows, 400 rows/s, 0:10 elapsed",
        "progress: ingest 100%, file 4/4 events-4.csv: 4,000 rows, 400 rows/s, done",
    ]


def test_work_that_does_not_advance_still_prints_its_elapsed_time() -> None:
    """One long DuckDB query: the heartbeat ticks; a line per interval, none in between."""
    clock = FakeClock()
    reporter, lines = _plain(clock)
    with reporting(reporter, heartbeat=False), task("step 3/8 validate"):
        for _ in range(12):  # the heartbeat thread's ticks, one per simulated second
            clock.now += 1.0
            reporter.tick()
    assert lines == [
        "progress: step 3/8 validate: 0:05 elapsed",
        "progress: step 3/8 validate: 0:10 elapsed",
        "progress: step 3/8 validate: done",
    ]


def test_a_short_task_prints_nothing() -> None:
    clock = FakeClock()
    reporter, lines = _plain(clock)
    with reporting(reporter, heartbeat=False), task("step 2/8 plan"):
        clock.now += 1.0
        reporter.tick()
    assert lines == []


def test_file_names_pass_the_masking_policy(tmp_path: Path) -> None:
    clock = FakeClock()
    reporter, lines = _plain(clock)
    reporter.key = b"progress-test-key-0123456789abcdef"
    with reporting(reporter, heartbeat=False), task("ingest", total=2, unit="files") as t:
        t.working_on(tmp_path / "ledger-123-45-6789.csv", "file 1/2")
        clock.now += 6
        t.advance(1, rows=10)
    text = "\n".join(lines)
    assert lines and "6789" not in text and "ledger-tp_" in text


def test_without_a_reporter_work_reports_to_nobody() -> None:
    with task("ingest", total=10, unit="files") as t:
        t.advance(3, rows=30)
    assert (t.done, t.rows) == (3, 30)


def test_prefect_logs_get_the_same_lines(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    logger = logging.getLogger("prefect.flow_runs.test")
    reporter = progress.logger_reporter(logger)
    reporter.clock, reporter.interval = clock, 5.0
    with (
        caplog.at_level(logging.INFO, logger=logger.name),
        reporting(reporter, heartbeat=False),
        task("step 1/8 ingest"),
    ):
        clock.now += 6
        reporter.tick()
    assert [r.getMessage() for r in caplog.records] == [
        "progress: step 1/8 ingest: 0:06 elapsed",
        "progress: step 1/8 ingest: done",
    ]


def test_the_display_follows_the_stream_and_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    with reporting(stream=io.StringIO(), heartbeat=False) as chosen:
        assert type(chosen) is Reporter
    with reporting(stream=Tty(), heartbeat=False) as chosen:
        assert isinstance(chosen, progress.RichReporter)
    monkeypatch.setenv("DWATCH_PROGRESS", "off")
    with reporting(stream=Tty(), heartbeat=False) as chosen:
        assert chosen is None
    monkeypatch.setenv("DWATCH_PROGRESS", "loud")
    with (
        pytest.raises(ConfigError, match="auto, rich, plain or off"),
        reporting(stream=io.StringIO()),
    ):
        pass


def test_the_rich_bar_shows_the_task_on_a_terminal(tmp_path: Path) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Tty()
    with (
        reporting(progress.RichReporter(screen), heartbeat=False),
        task("generate", total=1000, unit="events") as t,
    ):
        t.advance(1000, rows=1000)
    assert "generate" in screen.getvalue() and "1000/1000" in screen.getvalue()


def test_long_commands_show_progress_and_others_do_not() -> None:
    wrapped = {
        name
        for name in ("run", "ingest", "validate", "train", "detect", "generate", "schema")
        if getattr(main.get_command(None, name).callback, "_dwatch_progress", False)  # type: ignore[arg-type, union-attr]
    }
    assert wrapped == set(progress.COMMANDS)


def test_dwatch_ingest_prints_progress_lines_when_not_a_terminal(
    tmp_path: Path, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the real command: an interval of zero makes every change a line."""
    monkeypatch.setattr(progress, "INTERVAL_SECONDS", 0.0)
    data = tmp_path / "in"
    for n in (1, 2):
        write_events(
            data / f"events-{n}.csv", ledger_rows("ca-ftb-fti-log", [(f"2026-01-0{n}", 9)], n)
        )
    result = CliRunner().invoke(main, ["--db", str(db_path), "ingest", str(data)])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("progress: ")]
    assert any("ingest" in line and "file 2/2 events-2.csv" in line for line in lines), lines
    assert lines[-1].startswith("progress: dwatch ingest: ") and lines[-1].endswith("done")


def test_the_heartbeat_speaks_for_the_innermost_task_only() -> None:
    """``dwatch run`` holds a step: the step's line, not the command's, every interval."""
    clock = FakeClock()
    reporter, lines = _plain(clock)
    with reporting(reporter, heartbeat=False), task("dwatch run"):
        with task("step 3/8 validate"):
            for _ in range(6):
                clock.now += 1.0
                reporter.tick()
        clock.now += 5.0
        reporter.tick()
    assert lines == [
        "progress: step 3/8 validate: 0:05 elapsed",
        "progress: step 3/8 validate: done",
        "progress: dwatch run: 0:11 elapsed",
        "progress: dwatch run: done",
    ]


def test_a_prefect_flow_sends_its_progress_to_the_run_log(
    tmp_path: Path, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.testing.utilities import prefect_test_harness

    from flows.ingest import ingest_flow

    monkeypatch.setattr(progress, "INTERVAL_SECONDS", 0.0)
    data = tmp_path / "in"
    write_events(
        data / "ledger-123-45-6789.csv", ledger_rows("ca-ftb-fti-log", [("2026-01-02", 9)])
    )
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    runs = logging.getLogger("prefect.flow_runs")
    runs.addHandler(handler)
    try:
        with prefect_test_harness(server_startup_timeout=180):
            ingest_flow(paths=[str(data)], db=str(db_path))
    finally:
        runs.removeHandler(handler)
    lines = [r.getMessage() for r in records if r.getMessage().startswith("progress: ")]
    assert any("ingest" in line and "file 1/1 ledger-tp_" in line for line in lines), lines
    assert lines[-1].startswith("progress: ingest_flow") and lines[-1].endswith("done")
    assert not [line for line in lines if "6789" in line]
