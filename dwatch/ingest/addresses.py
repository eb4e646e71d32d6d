"""Address verdicts judged beside the load: the parser's Python work off the critical path.

A load that brings request items ends by judging each new supplied address
(``write._judge_addresses``: usaddress, pure Python, about 0.14 ms an address, one core).
In a full run that was the last ~2 CPU-s of ingest, on one core of two, after every
event file had loaded (the items file sorts last). ``AddressPrefetch`` starts with the
load: a thread reads the distinct addresses of the Parquet files that carry a
``supplied_address`` column (by its canonical name or a mapping's), trimmed as ingest
trims them, and judges those the store has no verdict for, while DuckDB loads the events
(DuckDB releases the GIL while it works). The end of the load then looks each stored
address up in what the thread judged and parses only the rest.

Exact: a verdict is a function of the text and the vocabulary alone
(``address.judge_address``), the cache is keyed by the very text the store holds, and it
is used only under the vocabulary it was judged with. A text ingest changes (an address
carrying a taxpayer-id shape is stored masked) is simply not found and is judged as
before. The raw texts stay in this process's memory and are never written or logged.
CSV and JSON files are not read ahead (that would parse the whole file twice): their
addresses are judged at the end, as before.
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

import duckdb

from dwatch.address import AddressVerdict, AddressVocabulary, judge_address, vocabulary_of
from dwatch.ingest.base import _Context, _q
from dwatch.ingest.files import _format_of

ADDRESS_FIELD = "supplied_address"

# Off only to compare with and without (tests, benchmarks): every address judged at the end.
PREFETCH = True

_UNJUDGED = (
    "SELECT DISTINCT a FROM (SELECT nullif(trim(CAST({column} AS VARCHAR)), '') AS a"
    " FROM read_parquet($path)) WHERE a IS NOT NULL AND md5_number(a) NOT IN"
    " (SELECT address_key FROM address_verdicts WHERE vocabulary = $fingerprint)"
)


class AddressPrefetch:
    """Judges the supplied addresses of a load's Parquet files in a background thread."""

    def __init__(self, con: duckdb.DuckDBPyConnection, files: list[Path], context: _Context):
        self.files = [p for p in files if _format_of(p, explicit=True) == "parquet"]
        self.context = context
        self._columns = self._address_names() if self.files else set()
        self.fingerprint: str | None = None
        self.judged: dict[str, AddressVerdict] = {}
        self._stop = threading.Event()
        self._cursor = con.cursor() if self.files else None
        self._thread: threading.Thread | None = None

    def start(self) -> AddressPrefetch:
        if self._cursor is not None:
            self._thread = threading.Thread(target=self._run, name="dwatch-addresses", daemon=True)
            self._thread.start()
        return self

    def take(self, vocabulary: AddressVocabulary) -> dict[str, AddressVerdict]:
        """Stop reading ahead and return the verdicts judged under ``vocabulary`` (each one
        the parser's own answer for that exact text); empty under another vocabulary."""
        self.stop()
        return self.judged if self.fingerprint == vocabulary.fingerprint else {}

    def stop(self) -> None:
        """Stop the thread (it finishes the address in hand) and release its cursor."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._cursor is not None:
            with contextlib.suppress(duckdb.Error):
                self._cursor.close()
            self._cursor = None

    def _run(self) -> None:
        cursor = self._cursor
        assert cursor is not None
        # Anything unexpected leaves the cache as it is: the load judges what is missing.
        with contextlib.suppress(Exception):
            self.context._load_registry()
            registry = self.context.registry
            if registry is None:
                return
            vocabulary = vocabulary_of(registry)  # type: ignore[arg-type]
            self.fingerprint = vocabulary.fingerprint
            for path, column in self._address_columns(cursor):
                texts = cursor.execute(
                    _UNJUDGED.format(column=_q(column)),
                    {"path": str(path), "fingerprint": vocabulary.fingerprint},
                ).fetchall()
                for (text,) in texts:
                    if self._stop.is_set():
                        return
                    if text not in self.judged:
                        self.judged[text] = judge_address(text, vocabulary)

    def _address_names(self) -> set[str]:
        """The column names supplied addresses arrive under (mappings read here, in the
        caller's thread, as the load reads them)."""
        return {ADDRESS_FIELD} | {
            m.columns[ADDRESS_FIELD]
            for m in self.context.source_mappings().values()
            if isinstance(m.columns.get(ADDRESS_FIELD), str)
        }

    def _address_columns(self, cursor: duckdb.DuckDBPyConnection) -> list[tuple[Path, str]]:
        """Each file with the column its supplied addresses are read from."""
        rows = cursor.execute(
            "SELECT file_name, name FROM parquet_schema($paths) WHERE name IN"
            " (SELECT unnest($names::VARCHAR[])) ORDER BY file_name, column_id",
            {"paths": [str(p) for p in self.files], "names": sorted(self._columns)},
        ).fetchall()
        found: dict[str, str] = {}
        for file_name, name in rows:
            found.setdefault(str(file_name), str(name))
        return [(p, found[str(p)]) for p in self.files if str(p) in found]
