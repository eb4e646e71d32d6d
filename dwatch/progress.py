"""Progress of long work: step, file, rows, rate and time left, wherever the output goes.

Work reports through ``task()`` (a no-op when nobody is listening: library use, tests):

    with progress.task("ingest", total=total_bytes, unit="bytes") as t:
        for path in files:
            ...
            t.advance(path.stat().st_size, item=path, rows=result.rows_read)

A command that wants progress shown wraps its work in ``reporting()``, which picks:

* a terminal: a ``rich`` progress bar per task on stderr (description, bar, rows, rate,
  time left), redrawn in place;
* anything else (a file, a pipe, cron, a container log): one plain line per task every
  ``interval`` seconds (and when a task ends), e.g.
  ``progress: ingest 12/73 files, events-x.csv: 340,112 rows, 12,300 rows/s, 0:42 left``;
* inside a Prefect run, the same plain lines through the run's logger (the Prefect UI).

While a task runs without advancing (one long DuckDB query), a heartbeat thread still
prints its elapsed time every ``interval`` seconds. Every text passes the masking policy
(``mask_path`` with the pseudonymisation key when there is one): a file named by a
taxpayer id is shown by its keyed pseudonym, never raw.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from dwatch.errors import ConfigError
from dwatch.masking import mask_path

INTERVAL_SECONDS = 5.0
PROGRESS_ENV = "DWATCH_PROGRESS"
Clock = Callable[[], float]


def _key() -> bytes | None:
    from dwatch.pseudonym import resolve_key

    with contextlib.suppress(ConfigError):
        return resolve_key()
    return None


@dataclass
class Task:
    """One piece of long work: ``done`` of ``total`` units, and rows seen so far."""

    name: str
    total: float | None
    unit: str
    started: float
    reporter: Reporter | None = None
    done: float = 0.0
    rows: int = 0
    item: str = ""
    finished: bool = False

    def working_on(self, path: object, label: str = "") -> None:
        """Now working on ``path`` (a file: its name is shown, masked)."""
        name = mask_path(Path(str(path)).name, self.reporter.key if self.reporter else None)
        self.item = f"{label} {name}".strip()
        if self.reporter is not None:
            self.reporter.changed(self)

    def advance(self, amount: float = 1, *, rows: int = 0) -> None:
        """``amount`` more units done, ``rows`` more rows read or written."""
        self.done += amount
        self.rows += rows
        if self.reporter is not None:
            self.reporter.changed(self)

    def describe(self, now: float) -> str:
        """``ingest 12/73 files, x.csv: 340,112 rows, 12,300 rows/s, 0:42 left``."""
        elapsed = max(now - self.started, 1e-9)
        parts = [self.name]
        if self.total:
            done = (
                f"{self.done:,.0f}/{self.total:,.0f}"
                if self.unit != "bytes"
                else (f"{100 * self.done / self.total:.0f}%")
            )
            parts.append(f" {done}" + (f" {self.unit}" if self.unit != "bytes" else ""))
        if self.item:
            parts.append(f", {self.item}")
        text = "".join(parts)
        details = []
        if self.rows:
            details += [f"{self.rows:,} rows", f"{self.rows / elapsed:,.0f} rows/s"]
        if self.total and 0 < self.done < self.total:
            details.append(f"{_clock(elapsed * (self.total - self.done) / self.done)} left")
        details.append("done" if self.finished else f"{_clock(elapsed)} elapsed")
        return f"{text}: {', '.join(details)}"


def _clock(seconds: float) -> str:
    hours, rest = divmod(round(seconds), 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class Reporter:
    """Where progress goes; this base writes plain lines at most every ``interval``."""

    def __init__(
        self,
        write: Callable[[str], None],
        *,
        interval: float | None = None,
        clock: Clock = time.monotonic,
        key: bytes | None = None,
    ) -> None:
        self.write, self.clock, self.key = write, clock, key
        self.interval = INTERVAL_SECONDS if interval is None else interval
        self.tasks: list[Task] = []
        self.last: dict[int, float] = {}
        self.lock = threading.Lock()

    def start(self, task: Task) -> None:
        with self.lock:
            self.tasks.append(task)
            self.last[id(task)] = task.started

    def changed(self, task: Task) -> None:
        self.tick(only=task)

    def tick(self, only: Task | None = None) -> None:
        """A line for ``only`` (else the innermost running task: a step inside a command)
        when its last line is ``interval`` old."""
        now = self.clock()
        with self.lock:
            if only is None and not self.tasks:
                return
            task = only if only is not None else self.tasks[-1]
            if now - self.last.get(id(task), now) >= self.interval:
                self.last[id(task)] = now
                self.write(f"progress: {task.describe(now)}")

    def stop(self, task: Task) -> None:
        task.finished = True
        with self.lock:
            self.tasks.remove(task)
            self.last.pop(id(task), None)
            if task.done or task.rows or self.clock() - task.started >= self.interval:
                self.write(f"progress: {task.describe(self.clock())}")

    def close(self) -> None:
        """Nothing held (the rich reporter stops its live display)."""


class RichReporter(Reporter):
    """A live progress bar per task on a terminal (``rich``)."""

    def __init__(self, stream: TextIO, *, key: bytes | None = None) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        super().__init__(lambda _line: None, key=key)
        self.bars = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}", markup=False),  # file names are not markup
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(file=stream),
            transient=False,
        )
        self.ids: dict[int, Any] = {}
        self.bars.start()

    def start(self, task: Task) -> None:
        self.ids[id(task)] = self.bars.add_task(task.name, total=task.total, status="")

    def changed(self, task: Task) -> None:
        elapsed = max(time.monotonic() - task.started, 1e-9)
        status = (
            f"{task.item} {task.rows:,} rows {task.rows / elapsed:,.0f}/s"
            if task.rows
            else task.item
        )
        self.bars.update(self.ids[id(task)], completed=task.done, status=status)

    def tick(self, only: Task | None = None) -> None:
        """rich redraws on its own."""

    def stop(self, task: Task) -> None:
        task.finished = True
        bar = self.ids.pop(id(task))
        final = task.total or max(task.done, 1)  # a task without a total ends full too
        self.bars.update(bar, completed=final, total=final)

    def close(self) -> None:
        self.bars.stop()


_ACTIVE: Reporter | None = None


@contextlib.contextmanager
def task(name: str, *, total: float | None = None, unit: str = "") -> Iterator[Task]:
    """Report one piece of work to the active reporter (if any)."""
    reporter = _ACTIVE
    clock = reporter.clock if reporter is not None else time.monotonic
    current = Task(name, total, unit, clock(), reporter)
    if reporter is None:
        yield current
        return
    reporter.start(current)
    try:
        yield current
    finally:
        reporter.stop(current)


def _heartbeat(reporter: Reporter, stop: threading.Event) -> None:
    while not stop.wait(min(reporter.interval, 1.0)):
        reporter.tick()


def _chosen(stream: TextIO) -> Reporter | None:
    """The reporter ``DWATCH_PROGRESS`` asks for (``auto``: rich on a terminal, plain lines
    otherwise; ``rich``, ``plain`` or ``off``)."""
    setting = (os.environ.get(PROGRESS_ENV) or "auto").lower()
    if setting not in {"auto", "rich", "plain", "off"}:
        raise ConfigError(
            f"unknown progress display {setting!r}",
            where=PROGRESS_ENV,
            fix="use auto, rich, plain or off",
        )
    if setting == "off":
        return None
    if setting == "rich" or (setting == "auto" and stream.isatty()):
        return RichReporter(stream, key=_key())
    return Reporter(lambda line: print(line, file=stream, flush=True), key=_key())


@contextlib.contextmanager
def reporting(
    reporter: Reporter | None = None, *, stream: TextIO | None = None, heartbeat: bool = True
) -> Iterator[Reporter | None]:
    """Show progress of the work inside: ``reporter``, or the one chosen for ``stream``
    (stderr by default). ``heartbeat``: a thread ticks it while work runs without advancing."""
    global _ACTIVE
    chosen = reporter or _chosen(stream or sys.stderr)
    if chosen is None:
        yield None
        return
    previous, _ACTIVE = _ACTIVE, chosen
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(chosen, stop), daemon=True)
    if heartbeat:
        beat.start()
    try:
        yield chosen
    finally:
        stop.set()
        if heartbeat:
            beat.join(timeout=5)
        chosen.close()
        _ACTIVE = previous


def logger_reporter(logger: logging.Logger | logging.LoggerAdapter[Any]) -> Reporter:
    """Plain progress lines through ``logger`` (a Prefect run logger shows them in the UI)."""
    return Reporter(logger.info, key=_key())


# The commands that show progress (``dwatch.cli`` wraps their callbacks).
COMMANDS = frozenset({"run", "ingest", "validate", "train", "detect", "generate"})


def shown_for(name: str, callback: Callable[..., Any]) -> Callable[..., Any]:
    """``callback`` (a command's) run with progress shown on stderr, as one task ``name``."""
    if getattr(callback, "_dwatch_progress", False):
        return callback

    @functools.wraps(callback)
    def run(*args: Any, **kwargs: Any) -> Any:
        with reporting(), task(f"dwatch {name}"):
            return callback(*args, **kwargs)

    run._dwatch_progress = True  # type: ignore[attr-defined]
    return run


def in_prefect_logs(flow_body: Callable[..., Any]) -> Callable[..., Any]:
    """A flow's body with its progress sent as plain lines to the flow run's log."""

    @functools.wraps(flow_body)
    def run(*args: Any, **kwargs: Any) -> Any:
        from prefect import get_run_logger

        with reporting(logger_reporter(get_run_logger())), task(flow_body.__name__):
            return flow_body(*args, **kwargs)

    return run
