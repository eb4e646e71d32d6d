"""``dwatch mapping`` suggest / test / check, and the reference page of mapping keys."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from dwatch.cli import main
from dwatch.mapping import KEYS, parse_mapping, reference_markdown
from dwatch.schema import SOURCES_DIR

EXPORT = (
    "Entry ID,Seq,Logged At,Officer,Recipient,Action,Records,Data Items,Subject SSN,Browser\n"
    "L-1,1,2025-06-01 09:15:00.120,k.smith,SSA,SEND,3,name|address,123-45-6789,Edge\n"
    "L-2,2,2025-06-01 09:16:00,k.smith,SSA,VIEW,1,name,987-65-4321,Edge\n"
)


def test_reference_page_is_generated_from_the_keys_the_loader_uses() -> None:
    committed = (SOURCES_DIR / "README.md").read_text(encoding="utf-8")
    assert committed == reference_markdown(), (
        "run `dwatch mapping reference > schemas/sources/README.md`"
    )
    for key in KEYS:
        assert f"| `{key.name}` |" in committed


@pytest.mark.parametrize("key", KEYS, ids=lambda k: k.name)
def test_every_documented_example_loads(key: object, tmp_path: Path) -> None:
    example = yaml.safe_load(key.example)  # type: ignore[attr-defined]
    mapping = parse_mapping(example, tmp_path / "example.yaml")
    assert key.name in mapping.explicit  # type: ignore[attr-defined]


def test_an_undocumented_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="unknown key"):
        parse_mapping({"timestamp_formats": "%Y"}, tmp_path / "m.yaml")


def test_suggest_drafts_names_times_codes_identifiers_and_separators(tmp_path: Path) -> None:
    export = tmp_path / "ledger.csv"
    export.write_text(EXPORT)
    result = CliRunner().invoke(main, ["mapping", "suggest", str(export)])
    assert result.exit_code == 0, result.output
    draft = yaml.safe_load(result.output)
    assert draft["columns"]["event_id"] == "Entry ID"
    assert draft["columns"]["occurred_at"] == "Logged At"
    assert draft["columns"]["actor_id"] == "Officer"
    assert draft["columns"]["data_elements"] == "Data Items"
    assert draft["timestamp_format"] == ["%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S"]
    assert draft["timezone"].startswith("TODO")  # zone-less: the user must name it
    assert set(draft["values"]["event_type"]) == {"SEND", "VIEW"}
    assert draft["identifiers"] == ["Subject SSN"]
    assert draft["list_separator"] == "|"
    assert "Browser" in result.output  # said as not mapped


def test_test_shows_mapping_and_quarantine_without_touching_the_store(
    tmp_path: Path, db_path: Path
) -> None:
    export = tmp_path / "ledger.csv"
    export.write_text(EXPORT.replace("2025-06-01 09:16:00,", "June 1st,"))
    mapping = tmp_path / "ledger.yaml"
    mapping.write_text(
        "source_system: ledger\nkind: events\ntimezone: America/New_York\n"
        'timestamp_format: ["%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S"]\n'
        "columns: {event_id: Entry ID, sequence_no: Seq, occurred_at: Logged At,"
        " actor_id: Officer, recipient_agency: Recipient, event_type: Action,"
        " record_count: Records, data_elements: Data Items}\n"
        "constants: {disclosing_agency: IRS}\nvalues: {event_type: {SEND: disclosure}}\n"
        'identifiers: [Subject SSN]\nlist_separator: "|"\nignore_columns: [Browser]\n'
    )
    result = CliRunner().invoke(
        main, ["--db", str(db_path), "mapping", "test", str(mapping), str(export)]
    )
    assert result.exit_code == 0, result.output
    assert "read 2 = loaded 1 + quarantined 1" in result.output
    assert "row 1: loaded" in result.output and '"event_type":"disclosure"' in result.output
    assert "row 2: quarantined: bad_timestamp" in result.output
    assert "June 1st" in result.output
    assert "123-45-6789" not in result.output  # identifiers stay pseudonymised
    assert not db_path.exists()


def test_check_names_file_and_key_of_every_bad_mapping(tmp_path: Path) -> None:
    (tmp_path / "good.yaml").write_text("kind: events\ncolumns: {event_id: ID}\n")
    (tmp_path / "zone.yaml").write_text("timezone: Eastern\n")
    (tmp_path / "field.yaml").write_text("columns: {eventid: ID}\n")
    result = CliRunner().invoke(main, ["mapping", "check", "--dir", str(tmp_path)])
    assert result.exit_code == 1
    assert f"{tmp_path / 'zone.yaml'}: timezone" in result.output
    assert f"{tmp_path / 'field.yaml'}: columns.eventid" in result.output
    assert "3 mapping(s) checked, 2 with errors" in result.output


def test_check_passes_on_the_shipped_mappings() -> None:
    result = CliRunner().invoke(main, ["mapping", "check"])
    assert result.exit_code == 0, result.output


EXPORTS = Path(__file__).parents[1] / "fixtures" / "exports" / "raw"


def test_suggest_reaches_into_nested_json_and_skips_broken_lines() -> None:
    result = CliRunner().invoke(
        main, ["mapping", "suggest", str(EXPORTS / "dhs-audit-2025-08.jsonl")]
    )
    assert result.exit_code == 0, result.output
    draft = yaml.safe_load(result.output)
    assert draft["columns"]["actor_id"] == "user.id"
    assert draft["columns"]["event_type"] == "eventName"
    assert draft["columns"]["occurred_at"] == "eventTime"
    assert "list_separator" not in draft  # a JSON array needs none
    assert all("." not in c for c in draft["match_columns"])


def test_suggest_names_logs_with_identical_columns_by_file_and_its_draft_loads(
    tmp_path: Path,
) -> None:
    result = CliRunner().invoke(
        main, ["mapping", "suggest", str(EXPORTS / "receipts-ssa-2025.parquet")]
    )
    assert result.exit_code == 0, result.output
    draft = yaml.safe_load(result.output)
    assert draft["match_files"] == ["receipts-ssa-*.parquet"]
    assert draft["timezone"] == "UTC"  # the column is named received_utc
    draft["constants"] = {k: "x" for k in draft["constants"]}
    parse_mapping(draft, tmp_path / "receipts-ssa.yaml")
