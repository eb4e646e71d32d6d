"""Realistic synthetic disclosure logs with labelled scenarios (``dwatch generate``).

``generate(out_dir, events=..., seed=..., fmt=..., scale=..., scenarios=...)`` writes one
canonical event file per log (``events-<source_system>.<ext>``), ``request_items.<ext>``
and ``ground_truth.json`` listing every injected scenario instance.
"""

from dwatch.generate.core import (
    ALL_FORMATS,
    DEFAULT_SCALE,
    GenerateResult,
    generate,
    parse_scenarios,
)
from dwatch.generate.scenarios import SCENARIOS

__all__ = [
    "ALL_FORMATS",
    "DEFAULT_SCALE",
    "SCENARIOS",
    "GenerateResult",
    "generate",
    "parse_scenarios",
]
