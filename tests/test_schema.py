"""The canonical schema is the one source: DDL and docs derive from it and cannot drift."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dwatch.errors import ConfigError
from dwatch.schema import CANONICAL_PATH, _parse, field_docs_markdown, load_schema

ROOT = Path(__file__).resolve().parent.parent


def test_docs_schema_md_is_generated_from_the_schema() -> None:
    committed = (ROOT / "docs" / "schema.md").read_text(encoding="utf-8")
    assert committed.strip() == field_docs_markdown().strip(), (
        "run `make docs` to regenerate docs/schema.md"
    )


def test_fixed_public_field_names_are_present() -> None:
    events = load_schema().events
    for name in (
        "event_id",
        "source_system",
        "sequence_no",
        "occurred_at",
        "event_type",
        "disclosing_agency",
        "recipient_agency",
        "actor_id",
        "actor_role",
        "request_id",
        "legal_authority",
        "authority_id",
        "purpose",
        "data_elements",
        "record_count",
        "taxpayer_ref",
        "channel",
        "encrypted",
        "agreement_id",
        "case_number",
    ):
        assert name in events.names
    assert load_schema().items.names[:10] == [
        "request_id",
        "event_id",
        "item_no",
        "taxpayer_ref",
        "supplied_name",
        "supplied_address",
        "tax_periods",
        "statute",
        "reason",
        "match_method",
    ]


def test_bad_schema_type_names_file_and_field() -> None:
    raw = yaml.safe_load(CANONICAL_PATH.read_text())
    raw["tables"]["disclosure_events"]["fields"][2]["type"] = "INTEGR"
    with pytest.raises(ConfigError, match=r"tables\.disclosure_events\.fields\[2\]"):
        _parse(raw, CANONICAL_PATH)
