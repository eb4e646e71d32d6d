"""Disclosure Watch: audit-log anomaly detection for agency disclosures of tax data."""

from __future__ import annotations

import os

# Nothing phones home. Set before Prefect or Great Expectations is imported anywhere;
# an operator can still override them explicitly in the environment.
for _name, _value in {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "GX_ANALYTICS_ENABLED": "false",
    "PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY": "false",
    "PREFECT_UI_ENABLED": os.environ.get("PREFECT_UI_ENABLED", "true"),
}.items():
    os.environ.setdefault(_name, _value)

__version__ = "0.1.0"

# Every log record of the process is masked when it is made (dwatch.masking): log messages
# quote file names and values from outside, and logs of tax data are protected like the data.
from dwatch.masking import install_log_guard  # noqa: E402

install_log_guard()
