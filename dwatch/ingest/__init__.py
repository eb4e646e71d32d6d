"""Ingest: disclosure logs (CSV, JSON Lines, Parquet) into the store, nothing lost.

Every input record ends in exactly one of ``disclosure_events`` / ``request_items`` and
``quarantine`` (which keeps file, row, line, the raw record with identifiers
pseudonymised, a reason code, the field and a message). Each file is recorded in
``ingest_runs`` (and chained, ``dwatch.ledger``) and is one transaction, except that
consecutive small Parquet or CSV files of one layout share one typed pass and one transaction
(``group``: the same rows, quarantine and records as loading each alone; a group that
fails is loaded again file by file). The same content is not loaded twice unless forced.

The work is set-wise in DuckDB: the file is scanned once into a staging table of text
columns, one SQL statement converts and checks every field (reason per row), and two
filtered INSERTs split good rows from bad. DuckDB streams the scan and spills to disk
under its memory limit, so files larger than memory load with bounded memory.

The package runs one way, by stage: ``files`` (what to read) and ``stage`` (read each format
into text columns), ``fields`` and ``instants`` (convert, check, mask and pseudonymise each
field), ``typed`` (the one layered pass that builds the typed work table), ``write`` (the
store and quarantine), ``group`` (many small files through those stages at once) and ``run``
(one transaction per file or group). ``base`` holds what they share; ``addresses`` judges
the supplied addresses of request items in a thread beside the load.
"""

from __future__ import annotations

from dwatch.ingest.base import IngestResult
from dwatch.ingest.files import COMPRESSIONS, FOLDER_FORMATS, FORMATS, expand_paths, file_sha256
from dwatch.ingest.run import ingest_file, ingest_paths, summarise, to_json

__all__ = [
    "COMPRESSIONS",
    "FOLDER_FORMATS",
    "FORMATS",
    "IngestResult",
    "expand_paths",
    "file_sha256",
    "ingest_file",
    "ingest_paths",
    "summarise",
    "to_json",
]
