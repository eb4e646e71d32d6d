"""Importing any flow module directly keeps telemetry off (Prefect reads it at import)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import pytest

import flows

FLOW_MODULES = sorted(m.name for m in pkgutil.iter_modules(flows.__path__))


@pytest.mark.parametrize("module", FLOW_MODULES)
def test_flow_module_import_disables_telemetry(module: str) -> None:
    code = (
        "import os\n"
        f"import flows.{module}\n"
        "from prefect.settings import get_current_settings\n"
        "s = get_current_settings()\n"
        "print(os.environ.get('DO_NOT_TRACK'), s.server.analytics_enabled)\n"
    )
    env = {
        k: v
        for k, v in __import__("os").environ.items()
        if k not in ("DO_NOT_TRACK", "PREFECT_SERVER_ANALYTICS_ENABLED")
    }
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert proc.stdout.split() == ["1", "False"]
