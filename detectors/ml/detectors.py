"""The ML detectors: for each, its features, its pipeline and how its alerts read.

A detector subclasses :class:`MLDetector` (``base``) and is registered by being defined;
this module imports every module that declares one, so :data:`DETECTORS` is complete once
it is imported, and re-exports the names callers use. The modules, by what they judge:
``transfers`` (single transfers), ``flows`` (a flow's day), ``actors`` (a user's reads),
``novelty`` (combinations never seen), ``log_coverage`` (a log silent for a flow).

Score convention: :meth:`MLDetector.anomaly_scores` returns ``-score_samples`` of the
pipeline, so *higher = more anomalous* everywhere outside the estimators.
"""

from __future__ import annotations

from detectors.ml.actors import ActorPeers
from detectors.ml.base import (
    DETECTORS,
    MAX_EVENT_IDS,
    SCORE_CHUNK_ROWS,
    DetectorSettings,
    MLDetector,
    ModelContext,
    log_to_count,
    rule_flagged_events,
    score_in_chunks,
)
from detectors.ml.flows import RecipientVolume
from detectors.ml.log_coverage import LogCoverage
from detectors.ml.novelty import FirstSeenCombination
from detectors.ml.transfers import TransferIsolation, TransferSurprise

__all__ = [
    "DETECTORS",
    "MAX_EVENT_IDS",
    "SCORE_CHUNK_ROWS",
    "ActorPeers",
    "DetectorSettings",
    "FirstSeenCombination",
    "LogCoverage",
    "MLDetector",
    "ModelContext",
    "RecipientVolume",
    "TransferIsolation",
    "TransferSurprise",
    "log_to_count",
    "rule_flagged_events",
    "score_in_chunks",
]
