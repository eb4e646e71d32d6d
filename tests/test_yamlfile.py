"""dwatch.yamlfile: libyaml's parser gives what PyYAML's safe loader gives, and stays safe."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dwatch import yamlfile

ROOT = Path(__file__).resolve().parents[1]
PROJECT_YAML = sorted(
    p
    for folder in ("policies", "detectors", "schemas", "config", "sample_logs", "mappings")
    if (ROOT / folder).is_dir()
    for p in (ROOT / folder).rglob("*.y*ml")
)


def test_the_project_has_yaml_to_compare() -> None:
    assert len(PROJECT_YAML) > 40


@pytest.mark.parametrize("path", PROJECT_YAML, ids=lambda p: str(p.relative_to(ROOT)))
def test_same_objects_as_the_pure_python_safe_loader(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert yamlfile.safe_load(text) == yaml.load(text, Loader=yaml.SafeLoader)


def test_uses_libyaml_when_pyyaml_has_it() -> None:
    if yaml.__with_libyaml__:
        assert yamlfile.SAFE_LOADER is yaml.CSafeLoader
    else:
        assert yamlfile.SAFE_LOADER is yaml.SafeLoader


def test_refuses_python_object_tags() -> None:
    with pytest.raises(yaml.YAMLError):
        yamlfile.safe_load("!!python/object/apply:os.system ['echo owned']")


def test_syntax_error_names_the_line() -> None:
    with pytest.raises(yaml.MarkedYAMLError) as info:
        yamlfile.safe_load("a: 1\nb: [2, 3\nc: 4\n")
    assert info.value.problem_mark is not None
    assert info.value.problem_mark.line >= 1


def test_dates_and_yaml11_scalars_as_the_safe_loader() -> None:
    text = "d: 2025-08-01\nt: 2025-08-01T12:00:00Z\nyes_word: yes\noctal: 010\nnull_word: ~\n"
    assert yamlfile.safe_load(text) == yaml.safe_load(text)
