"""YAML read through libyaml's parser when PyYAML was built with it.

A run reads about 80 YAML files (policies, rules, mappings, settings). PyYAML's pure-Python
parser cost about a second of CPU of every run for them; libyaml's parser builds the same
Python objects with the same safe constructor ~8x faster. Where PyYAML was built without
libyaml the pure-Python safe loader is used: the results are the same.
"""

from __future__ import annotations

from typing import Any

import yaml

SAFE_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def safe_load(text: str) -> Any:
    """``yaml.safe_load`` of ``text`` (one document), with the fastest safe loader available."""
    return yaml.load(text, Loader=SAFE_LOADER)
