"""The validation gate: Great Expectations on every ingested batch, and no silent gaps.

``validate_batches(con, ingest_run_ids=None, config=None)`` is the entry point (the
Prefect flow ``flows/validate.py`` and ``dwatch validate`` call it). Suites are derived
from ``schemas/canonical.yaml`` (``suites``) plus per-source suites in
``schemas/sources/<source>.expectations.yaml`` (``sources``); GX runs on the DuckDB store
through one adapter module (``gx_duckdb``); Data Docs are built offline (``docs``).
"""

from __future__ import annotations

from dwatch.validate.config import ValidationConfig, load_config
from dwatch.validate.runner import BatchReport, Outcome, ValidationReport, validate_batches

__all__ = [
    "BatchReport",
    "Outcome",
    "ValidationConfig",
    "ValidationReport",
    "load_config",
    "validate_batches",
]
