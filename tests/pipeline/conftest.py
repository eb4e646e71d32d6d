"""Fixtures for pipeline tests (helpers live in pipeline_helpers)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pipeline_helpers import compact_generated, make_config

from dwatch.pipeline import PipelineConfig


@pytest.fixture(scope="session")
def generated_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Generated logs (all scenarios, small), compacted to three files; read-only for tests."""
    from dwatch.generate import generate

    raw = tmp_path_factory.mktemp("generated-raw")
    generate(raw, events=600, seed=5)
    out = tmp_path_factory.mktemp("generated")
    compact_generated(raw, out)
    return out


@pytest.fixture
def config(tmp_path: Path) -> PipelineConfig:
    return make_config(tmp_path)
