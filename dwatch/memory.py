"""One memory budget for a whole run: ``DWATCH_MEMORY``.

Every DuckDB connection the pipeline opens gets its share as ``memory_limit`` (spilling to
a folder beside the store when a query needs more), and the Python side (Arrow frames,
numpy arrays, scikit-learn fits) sizes its work from the rest: ML scoring streams rows in
chunks of :meth:`MemoryBudget.rows_for` rows and ML training reads at most that many rows.
So peak memory follows the setting, not the size of the store.

``DWATCH_MEMORY`` takes a size (``4GB``, ``512MB``, ``1.5GiB``) or a share of this
machine's memory (``40%``); unset, it is :data:`DEFAULT_SHARE` of the machine (or of the
container's limit, when that is smaller), at most :data:`DEFAULT_CAP`: a run's peak then
stays under 4 GB however large the store or the machine (at 10M events the default of 40%
of 23.5 GiB let a run peak at 6.1 GB, most of it DuckDB's buffers and the training frame).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from dwatch.errors import ConfigError

MEMORY_ENV = "DWATCH_MEMORY"
THREADS_ENV = "DWATCH_THREADS"
DEFAULT_SHARE = 0.40
# The default never passes this (a budget is what DuckDB and the Python frames may hold;
# the interpreter, its libraries and DuckDB's own bookkeeping come on top, under 1 GB).
DEFAULT_CAP = 3 * 10**9
# DuckDB's buffer manager gets this share of the budget; Python's frames the rest.
DUCKDB_SHARE = 0.5
MIN_BUDGET = 256 * 2**20

_UNITS = {
    "": 1,
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
    "TIB": 2**40,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]I?B|B)?\s*$", re.IGNORECASE)
_SHARE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")
_FIX = (
    f"set {MEMORY_ENV} to a size such as 4GB, 512MB or 1.5GiB, or to a share of this "
    f"machine's memory such as 40%; unset it for the default ({DEFAULT_SHARE:.0%}, at most"
    f" {DEFAULT_CAP / 10**9:g} GB)"
)


def machine_memory() -> int:
    """Bytes of memory this process may use: the machine's, or its container's limit."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit_file).read_text(encoding="utf-8").strip()
        except OSError:
            continue
        if text.isdigit() and 0 < int(text) < total:
            total = int(text)
    return total


def parse_memory(text: str, machine: int | None = None) -> int:
    """Bytes meant by ``text`` ('4GB', '512MiB', '40%'); a clear error otherwise."""
    share = _SHARE.match(text)
    if share:
        percent = float(share.group(1))
        if not 0 < percent <= 100:
            raise ConfigError(
                f"{MEMORY_ENV}={text!r}: a share of memory must be above 0% and at most 100%",
                where="environment",
                fix=_FIX,
            )
        size = int((machine if machine is not None else machine_memory()) * percent / 100)
    else:
        match = _SIZE.match(text)
        if not match:
            raise ConfigError(
                f"{MEMORY_ENV}={text!r} is not a memory size",
                where="environment",
                fix=_FIX,
            )
        size = int(float(match.group(1)) * _UNITS[(match.group(2) or "").upper()])
    if size < MIN_BUDGET:
        raise ConfigError(
            f"{MEMORY_ENV}={text!r} is {size / 2**20:.0f} MiB, below the {MIN_BUDGET // 2**20} MiB"
            " a run needs",
            where="environment",
            fix=_FIX,
        )
    return size


def _threads() -> int:
    raw = os.environ.get(THREADS_ENV)
    if raw:
        if not raw.strip().isdigit() or int(raw) < 1:
            raise ConfigError(
                f"{THREADS_ENV}={raw!r} is not a whole number of threads",
                where="environment",
                fix=f"set {THREADS_ENV} to 1 or more, or unset it to use every core",
            )
        return int(raw)
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not on Linux
        return max(os.cpu_count() or 1, 1)


@dataclass(frozen=True)
class MemoryBudget:
    """How much memory a run may use, and how it is shared out."""

    total_bytes: int
    threads: int
    source: str  # where the figure came from, for messages

    @property
    def duckdb_bytes(self) -> int:
        """DuckDB's ``memory_limit``: its buffer pool, hash tables and sorts."""
        return int(self.total_bytes * DUCKDB_SHARE)

    @property
    def python_bytes(self) -> int:
        """What Arrow frames, numpy arrays and model fits may hold at once."""
        return self.total_bytes - self.duckdb_bytes

    def rows_for(self, bytes_per_row: int, *, floor: int = 10_000) -> int:
        """How many rows of ``bytes_per_row`` (with every copy the step makes) fit in the
        Python share; never fewer than ``floor``."""
        return max(floor, self.python_bytes // max(bytes_per_row, 1))

    def duckdb_config(self, db_path: Path | str | None) -> dict[str, str | int]:
        """Settings for ``duckdb.connect(config=...)``: limit, threads, and spill beside
        the store (in-memory databases spill to DuckDB's default place)."""
        config: dict[str, str | int] = {
            "memory_limit": f"{max(self.duckdb_bytes // 2**20, 1)}MiB",
            "threads": self.threads,
        }
        if db_path is not None and str(db_path) != ":memory:":
            path = Path(db_path)
            config["temp_directory"] = str(path.parent / f"{path.name}.spill")
        return config

    def describe(self) -> str:
        return (
            f"{self.total_bytes / 2**30:.1f} GiB ({self.source}): DuckDB"
            f" {self.duckdb_bytes / 2**30:.1f} GiB, Python {self.python_bytes / 2**30:.1f} GiB,"
            f" {self.threads} thread(s)"
        )


def memory_budget() -> MemoryBudget:
    """The budget from ``DWATCH_MEMORY`` (and ``DWATCH_THREADS``), else the default."""
    raw = os.environ.get(MEMORY_ENV, "").strip()
    machine = machine_memory()
    if raw:
        total, source = parse_memory(raw, machine), f"{MEMORY_ENV}={raw}"
    else:
        total = max(min(int(machine * DEFAULT_SHARE), DEFAULT_CAP), MIN_BUDGET)
        source = (
            f"default {DEFAULT_SHARE:.0%} of {machine / 2**30:.1f} GiB,"
            f" at most {DEFAULT_CAP / 10**9:g} GB"
        )
    return MemoryBudget(total, _threads(), source)
