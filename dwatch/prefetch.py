"""Import the modules later steps need in a thread while earlier steps wait on DuckDB.

Scoring loads scikit-learn, SciPy and skops (skops' import alone walks every scikit-learn
estimator), and the report loads Jinja2: about 2 CPU-seconds, the largest fixed cost of a
daily run. Most of ingest, validation and the rules is DuckDB work that releases the GIL,
so the imports can run beside it on the other core. This moves the cost off the run's
critical path; it does not remove it (``process_time`` still counts it, in whichever step
was running).

A run starts the thread only when ingest has new files to read: a run with nothing new
never needs these modules (the ML step is skipped without loading them). The steps that
use the modules ``wait()`` first, so no module is ever imported by two threads at once.
Any import error here is ignored: the step that needs the module imports it again and
reports the error where it belongs.
"""

from __future__ import annotations

import contextlib
import importlib
import threading
from collections.abc import Sequence

# In dependency order; each is imported whole before the next starts.
MODULES: tuple[str, ...] = (
    "numpy",
    "scipy.sparse",
    "sklearn",
    "skops.io",
    "detectors.ml.registry",
    "detectors.ml.run",
    "dwatch.report.render",
)


class Prefetch:
    """One background import of ``modules``; ``wait()`` before using any of them."""

    def __init__(self, modules: Sequence[str] = MODULES) -> None:
        self.modules = tuple(modules)
        self.failed: dict[str, str] = {}
        self._thread = threading.Thread(target=self._load, name="dwatch-prefetch", daemon=True)
        self._thread.start()

    def _load(self) -> None:
        for name in self.modules:
            try:
                importlib.import_module(name)
            except Exception as exc:  # the step that needs the module reports it
                self.failed[name] = f"{type(exc).__name__}: {exc}"

    def wait(self) -> None:
        with contextlib.suppress(RuntimeError):
            self._thread.join()

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()
