"""Prefect flows: thin wiring of plain steps (the logic lives in dwatch/ and detectors/).

Importing ``dwatch`` here, before any flow module imports Prefect, sets the no-telemetry
environment (Prefect reads its analytics setting once, at import).
"""

import dwatch  # noqa: F401
