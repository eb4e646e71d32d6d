"""What ingest does when DuckDB's CSV reader cannot make sense of a file on its own.

Two cases the reader handles badly (issue 16):

- one unclosed quote makes the dialect sniffer give up on every candidate, so the whole
  file reads as one column named after the header line (and "cannot tell whether this is
  events or request items" followed); the header itself, read with Python's csv module,
  still has its columns, so the line that leaves a quote open is found and named. (Reading
  on with the header's dialect was tried: DuckDB then folds the next line into the broken
  record, losing it without a reject, so failing with the line is the honest outcome.)
- a line longer than the reader's limit fails the file with "CSV Error on Line: 1" whatever
  line it is on; the line is found here so the error can name it.
"""

from __future__ import annotations

import csv
import gzip
import re
from pathlib import Path
from typing import IO

DELIMITER_CANDIDATES = (",", "\t", ";", "|")
_LINE_TOO_LONG = re.compile(r"Maximum line size of (\d+) bytes exceeded")
_CHUNK = 1 << 20


def _open_binary(path: Path) -> IO[bytes] | None:
    suffix = path.suffix.lower()
    if suffix == ".gz":
        return gzip.open(path, "rb")
    if suffix == ".zst":
        return None  # no reader in the standard library: DuckDB's own message stands
    return path.open("rb")


def header_dialect(
    path: Path, delimiter: str | None, quote: str | None
) -> tuple[str, list[str]] | None:
    """The header line's delimiter and column names, when it has more than one column.

    ``delimiter`` is the one the mapping names; otherwise the candidate the header line
    holds most of."""
    fh = _open_binary(path)
    if fh is None:
        return None
    with fh:
        raw = fh.readline(_CHUNK)
    line = raw.decode("utf-8-sig", errors="replace").rstrip("\r\n")
    chosen = delimiter or max(DELIMITER_CANDIDATES, key=line.count)
    if not line or chosen not in line:
        return None
    names = next(csv.reader([line], delimiter=chosen, quotechar=quote or '"'))
    if len(names) < 2:
        return None
    return chosen, [n.strip() or f"column{i}" for i, n in enumerate(names)]


def overlong_line(path: Path, message: str) -> str | None:
    """For DuckDB's "Maximum line size ... exceeded": which line, how long, and the fix."""
    found = _LINE_TOO_LONG.search(message)
    fh = _open_binary(path) if found else None
    if found is None or fh is None:
        return None
    limit = int(found.group(1))
    with fh:
        number, size = 1, 0
        while chunk := fh.readline(_CHUNK):
            size += len(chunk)
            if size > limit:
                return (
                    f"line {number} is longer than the CSV reader's limit of {limit:,} bytes"
                    " (no log entry holds a field that size); shorten or remove that line"
                    " and load the file again"
                )
            if chunk.endswith(b"\n"):
                number, size = number + 1, 0
    return None


def unclosed_quote_line(path: Path, quote: str | None) -> int | None:
    """The first physical line holding an odd number of quote characters (one never closed).

    Only asked once the sniffer has given up on the file, where a field running across
    lines is far likelier a missing quote than a note with a line break in it."""
    mark = (quote or '"').encode()
    fh = _open_binary(path)
    if fh is None:
        return None
    with fh:
        number, count = 1, 0
        while chunk := fh.readline(_CHUNK):
            count += chunk.count(mark)
            if chunk.endswith(b"\n"):
                if count % 2:
                    return number
                number, count = number + 1, 0
        return number if count % 2 else None
