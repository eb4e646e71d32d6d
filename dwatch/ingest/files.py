"""Which files a load reads: paths, folders and globs expanded, formats told apart, content hashed."""

from __future__ import annotations

import contextlib
import glob
import hashlib
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from dwatch.mapping import (
    named_by_mappings,
)

FORMATS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".log": "lines",  # text, one record per line: read through a mapping's extract patterns
}
# Extensions picked up when a folder is scanned; .json and .txt only when named explicitly
# (folders hold README.md, ground-truth and notes too).
FOLDER_FORMATS = {".csv", ".tsv", ".jsonl", ".ndjson", ".parquet", ".pq"}
COMPRESSIONS = {".gz", ".zst"}

# One hashing thread for the process: file_sha256 releases the GIL while it hashes.
_HASHER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dwatch-sha256")


# ---------------------------------------------------------------------------- paths


def expand_paths(paths: Iterable[str | Path]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files to load, and (path, problem) pairs for inputs that name nothing loadable."""
    files: list[Path] = []
    problems: list[tuple[str, str]] = []
    loadable = _scan_filter()
    for raw in paths:
        text = str(raw)
        if any(ch in text for ch in "*?["):
            matched = sorted(Path(p) for p in glob.glob(text, recursive=True))
            hits = [p for p in matched if p.is_file() and loadable(p)]
            if not hits:
                problems.append((text, "the pattern matches no log file"))
            files += hits
            continue
        path = Path(text)
        if not path.exists():
            problems.append((text, "no such file or folder"))
        elif path.is_dir():
            hits = sorted(p for p in path.rglob("*") if p.is_file() and loadable(p))
            if not hits:
                problems.append((text, "the folder holds no .csv, .jsonl or .parquet file"))
            files += hits
        else:
            files.append(path)
    seen: set[Path] = set()
    unique = []
    for f in files:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique, problems


def _scan_filter() -> Callable[[Path], bool]:
    """Files a folder scan or glob reads: the usual extensions, plus .json and .log files a
    mapping's match_files names (CloudTrail deliveries, sftp session logs)."""
    named: list[Callable[[str], bool]] = []

    def loadable(path: Path) -> bool:
        if _format_of(path, explicit=False):
            return True
        if not _format_of(path, explicit=True):
            return False
        if not named:
            named.append(named_by_mappings())
        return named[0](path.name)

    return loadable


def _format_of(path: Path, *, explicit: bool) -> str | None:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in COMPRESSIONS:
        suffixes = suffixes[:-1]
    if not suffixes:
        return None
    ext = suffixes[-1]
    if not explicit and ext not in FOLDER_FORMATS:
        return None
    return FORMATS.get(ext)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def _size(path: Path) -> int:
    with contextlib.suppress(OSError):
        return path.stat().st_size
    return 0
