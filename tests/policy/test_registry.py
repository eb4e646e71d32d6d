"""The shipped registry, its schema checks and its materialisation into the store."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from dwatch.errors import RegistryError
from dwatch.policy import DEFAULT_REGISTRY_DIR, load_registry, sync_registry, with_entries
from dwatch.store import migrate


@pytest.fixture
def registry_copy(tmp_path: Path) -> Path:
    target = tmp_path / "policies"
    shutil.copytree(DEFAULT_REGISTRY_DIR, target)
    return target


def test_the_shipped_registry_holds_the_law_from_the_domain_primer() -> None:
    registry = load_registry()
    for authority in [
        "26 USC 6103(d)", "26 USC 6103(h)", "26 USC 6103(i)(1)", "26 USC 6103(i)(2)",
        "26 USC 6103(i)(3)", "26 USC 6103(i)(7)", "26 USC 6103(j)(1)", "26 USC 6103(l)(1)",
        "26 USC 6103(l)(6)", "5 USC 552a(b)(3)", "5 USC 552a(b)(7)", "5 USC 552a(c)",
    ]:  # fmt: skip
        assert authority in registry.authorities_by_id, authority
    dockets = {o.docket: o for o in registry.court_orders}
    assert {"25-cv-00457", "25-cv-12822"} <= set(dockets)
    assert str(dockets["25-cv-00457"].issued) == "2025-11-21"
    assert str(dockets["25-cv-12822"].issued) == "2026-02-05"
    mou = registry.agreements_by_id["irs-dhs-ice-mou-2025-04-07"]
    assert str(mou.effective_from) == "2025-04-07"
    assert mou.suspended_by_orders == ["ddc-25-cv-00457-pi"]
    i2 = registry.authorities_by_id["26 USC 6103(i)(2)"]
    assert "civil_immigration_enforcement" not in i2.purposes
    assert "taxpayer_return_information" in i2.data_elements_forbidden
    assert i2.request.required_elements == ["name", "address", "tax_periods", "statute", "reason"]


def test_every_entry_cites_its_source() -> None:
    registry = load_registry()
    for entry in [*registry.authorities, *registry.court_orders, *registry.agreements]:
        assert entry.sources and all(s.cite for s in entry.sources), entry.id
    for recipient in registry.recipients:
        assert recipient.sources, recipient.code


def test_schema_errors_name_the_file_and_the_key(registry_copy: Path) -> None:
    path = registry_copy / "court_orders.yaml"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("status: in_force", "status: paused", 1), encoding="utf-8")
    with pytest.raises(RegistryError) as err:
        load_registry(registry_copy)
    message = str(err.value)
    assert "court_orders.yaml" in message
    assert "court_orders[0].status_history[0].status" in message
    assert "ddc-25-cv-00457-pi" in message


def test_unknown_keys_are_refused_not_ignored(registry_copy: Path) -> None:
    path = registry_copy / "authorities.yaml"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("case_by_case: true", "case_by_cases: true", 1), encoding="utf-8")
    with pytest.raises(RegistryError) as err:
        load_registry(registry_copy)
    assert "authorities.yaml" in str(err.value) and "case_by_cases" in str(err.value)


def test_duplicate_ids_and_broken_references_are_reported(registry_copy: Path) -> None:
    extra = registry_copy / "zz_extra.yaml"
    extra.write_text(
        "agreements:\n"
        "  - {id: irs-dhs-ice-mou-2025-04-07, title: dup, parties: [IRS, SSA],"
        " authorities: [26 USC 6103(l)(1)], effective_from: 2025-01-01, sources: [{cite: x}]}\n",
        encoding="utf-8",
    )
    with pytest.raises(RegistryError) as err:
        load_registry(registry_copy)
    assert "zz_extra.yaml" in str(err.value) and "duplicate id" in str(err.value)
    extra.write_text(
        "agreements:\n"
        "  - {id: new-cma, title: t, parties: [IRS, SSA], authorities: [26 USC 6103(z)(9)],"
        " effective_from: 2025-01-01, suspended_by_orders: [no-such-order], sources: [{cite: x}]}\n",
        encoding="utf-8",
    )
    with pytest.raises(RegistryError) as err:
        load_registry(registry_copy)
    assert "26 USC 6103(z)(9)" in str(err.value) and "no-such-order" in str(err.value)


def test_invalid_yaml_names_the_line(registry_copy: Path) -> None:
    (registry_copy / "recipients.yaml").write_text("recipients:\n  - {code: X\n", encoding="utf-8")
    with pytest.raises(RegistryError, match=r"recipients\.yaml:\d+"):
        load_registry(registry_copy)


def test_a_non_canonical_authority_id_is_refused(registry_copy: Path) -> None:
    (registry_copy / "zz.yaml").write_text(
        "authorities:\n  - {id: 'IRC 6103(k)(6)', title: t, sources: [{cite: x}]}\n",
        encoding="utf-8",
    )
    with pytest.raises(RegistryError, match="canonical form"):
        load_registry(registry_copy)


def test_the_version_changes_with_any_edit(registry_copy: Path) -> None:
    before = load_registry(registry_copy).version
    path = registry_copy / "court_orders.yaml"
    path.write_text(path.read_text(encoding="utf-8") + "\n# a comment\n", encoding="utf-8")
    after = load_registry(registry_copy).version
    assert before != after and before.split("+")[0] == after.split("+")[0]


def test_sync_materialises_the_registry_for_sql(con: duckdb.DuckDBPyConnection) -> None:
    registry = load_registry()
    sync_registry(con, registry)
    sync_registry(con, registry)  # idempotent: replaced, not appended

    def count(table: str) -> int:
        row = con.execute(f"SELECT count(*) FROM {table}").fetchone()
        return int(row[0]) if row else 0

    assert count("registry_authorities") == len(registry.authorities)
    assert count("registry_court_orders") == len(registry.court_orders)
    assert count("registry_recipients") == len(registry.recipients)
    assert count("registry_versions") == 1
    assert con.execute(
        "SELECT role FROM registry_authority_requester_roles"
        " WHERE authority_id = '26 USC 6103(i)(2)' AND list_contains(recipient_categories, 'justice')"
        " ORDER BY role"
    ).fetchall()[0] == ("assistant_attorney_general",)
    rows = con.execute(
        "SELECT order_id, status, binding FROM registry_orders_now ORDER BY order_id"
    ).fetchall()
    assert rows == [
        ("ddc-25-cv-00457-pi", "in_force", True),
        ("dmass-25-cv-12822-pi", "in_force", True),
    ]


def test_status_history_becomes_periods(con: duckdb.DuckDBPyConnection) -> None:
    registry = load_registry()
    order = registry.court_orders_by_id["dmass-25-cv-12822-pi"].model_dump(by_alias=True)
    order["status_history"] = [
        {"status": "in_force", "from": "2026-02-05"},
        {"status": "stayed", "from": "2026-03-01"},
        {"status": "in_force", "from": "2026-05-01"},
    ]
    sync_registry(con, with_entries(registry, {"court_orders": [order]}))
    periods = con.execute(
        "SELECT status, strftime(valid_from, '%Y-%m-%d'), strftime(valid_to, '%Y-%m-%d'), binding"
        " FROM registry_order_status WHERE order_id = 'dmass-25-cv-12822-pi' ORDER BY valid_from"
    ).fetchall()
    assert periods == [
        ("in_force", "2026-02-05", "2026-03-01", True),
        ("stayed", "2026-03-01", "2026-05-01", False),
        ("in_force", "2026-05-01", None, True),
    ]


def test_a_quoted_zoned_start_keeps_its_zone(registry_copy: Path) -> None:
    # Unquoted, YAML reads the court's local midnight as a timestamp; quoted, it used to
    # be read as the UTC day and lose five hours. Both spellings must mean the same instant.
    path = registry_copy / "court_orders.yaml"
    text = path.read_text(encoding="utf-8")
    assert "from: 2025-11-21T00:00:00-05:00" in text
    path.write_text(
        text.replace("from: 2025-11-21T00:00:00-05:00", 'from: "2025-11-21T00:00:00-05:00"'),
        encoding="utf-8",
    )
    order = {o.docket: o for o in load_registry(registry_copy).court_orders}["25-cv-00457"]
    start = order.status_history[0].on
    assert isinstance(start, datetime)
    assert start.astimezone(UTC) == datetime(2025, 11, 21, 5, tzinfo=UTC)
    shipped = {o.docket: o for o in load_registry().court_orders}["25-cv-00457"]
    assert shipped.status_history[0].on == start


def test_status_history_order_is_judged_as_instants(registry_copy: Path) -> None:
    # 23:00 at -05:00 on Feb 4 is 04:00 UTC on Feb 5: after a change on the UTC day Feb 5
    # began, though it sorts before it as text; the reverse order is refused.
    path = registry_copy / "court_orders.yaml"
    text = path.read_text(encoding="utf-8")
    entry = "      - status: in_force\n        from: 2026-02-05T00:00:00-05:00\n        note: Order entered.\n"
    assert entry in text
    in_order = (
        "      - status: in_force\n        from: 2026-02-05\n        note: Order entered.\n"
        '      - status: stayed\n        from: "2026-02-04T23:00:00-05:00"\n        note: Stayed.\n'
    )
    path.write_text(text.replace(entry, in_order), encoding="utf-8")
    load_registry(registry_copy)
    reversed_ = in_order.replace("2026-02-04T23:00:00-05:00", "2026-02-04T18:00:00-05:00")
    path.write_text(text.replace(entry, reversed_), encoding="utf-8")
    with pytest.raises(RegistryError, match="status_history: dates must be in order"):
        load_registry(registry_copy)


# ------------------------------------------------------------ registry fidelity (issue 13)

_AGREEMENT = {
    "id": "TEST-AGR",
    "title": "test agreement",
    "parties": ["Internal Revenue Service", "OCSE"],
    "authorities": ["26 USC 6103(l)(6)"],
    "effective_from": "2024-01-01",
    "sources": [{"cite": "test"}],
}


def test_an_agreement_end_is_given_inclusive_or_exclusive_never_both() -> None:
    registry = load_registry()
    through = with_entries(
        registry, {"agreements": [{**_AGREEMENT, "valid_through": "2025-06-30"}]}
    )
    exclusive = with_entries(
        registry, {"agreements": [{**_AGREEMENT, "effective_to": "2025-07-01"}]}
    )
    end = datetime(2025, 7, 1, tzinfo=UTC)
    assert through.agreements_by_id["TEST-AGR"].ends == end
    assert exclusive.agreements_by_id["TEST-AGR"].ends == end
    with pytest.raises(RegistryError, match="give the end once"):
        with_entries(
            registry,
            {
                "agreements": [
                    {**_AGREEMENT, "valid_through": "2025-06-30", "effective_to": "2025-07-01"}
                ]
            },
        )


def test_parties_and_restraints_resolve_through_recipient_aliases() -> None:
    registry = with_entries(load_registry(), {"agreements": [_AGREEMENT]})
    con = duckdb.connect()
    try:
        migrate(con)
        sync_registry(con, registry)
        parties = con.execute(
            "SELECT parties FROM registry_agreements WHERE agreement_id = 'TEST-AGR'"
        ).fetchone()
        restraint = con.execute(
            "SELECT recipient_agencies, words, reading FROM registry_order_restraints"
            " WHERE order_id = 'ddc-25-cv-00457-pi' AND restraint_no = 0"
        ).fetchone()
    finally:
        con.close()
    assert parties is not None and parties[0] == ["IRS", "HHS-OCSE"]
    assert restraint is not None and "DHS-ICE" in restraint[0]
    assert restraint[1] and "DHS/ICE" in restraint[1]  # the order's own words
    assert restraint[2]  # and the reading chosen where they are ambiguous


def test_every_restraint_quotes_the_order_and_hsi_is_one_recipient() -> None:
    registry = load_registry()
    for order in registry.court_orders:
        for restraint in order.restraints:
            assert restraint.words, (order.id, restraint.description)
    assert registry.resolve_agency("ICE-HSI") == registry.resolve_agency("HSI") == "DHS-HSI"
    assert registry.resolve_agency("Immigration & Customs Enforcement") == "DHS-ICE"


def test_safeguard_reviews_name_a_recipient_any_way_and_carry_a_due_date() -> None:
    review = {"recipient": "hhs/ocse", "status": "current", "reviewed_on": "2023-01-31"}
    registry = with_entries(
        load_registry(), {"safeguard_reviews": [{**review, "due_on": "2026-01-31"}]}
    )
    safeguards = registry.recipients_by_code["HHS-OCSE"].safeguards
    assert str(safeguards.due_on) == "2026-01-31"
    with pytest.raises(RegistryError, match="names no registry recipient"):
        with_entries(load_registry(), {"safeguard_reviews": [{**review, "recipient": "ZZ-NOPE"}]})


def test_agency_time_zones_live_in_the_registry() -> None:
    registry = load_registry()
    assert registry.recipients_by_code["CA-FTB"].time_zone == "America/Los_Angeles"
    assert all(r.time_zone for r in registry.recipients)
    bad = {"code": "ZZ-TEST", "name": "test", "category": "justice", "time_zone": "Mars/Olympus"}
    with pytest.raises(RegistryError, match="not an IANA time zone"):
        with_entries(load_registry(), {"recipients": [bad]})
