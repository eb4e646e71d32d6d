"""Address verdicts kept in the store: each distinct address judged once per vocabulary."""

from __future__ import annotations

from pathlib import Path

import duckdb

from dwatch.address import AddressVocabulary, vocabulary_of
from dwatch.address_verdicts import refresh_address_verdicts
from dwatch.ingest import ingest_paths
from dwatch.policy import load_registry

ADDRESSES = [
    "4512 Oak Ridge Dr, Houston, TX 77001",
    "4512 Oak Ridge Dr, Houston, TX 77001",  # a second item, same text
    "Unknown",
    "33101",
    None,
]


def _items(con: duckdb.DuckDBPyConnection, addresses: list[str | None]) -> None:
    for n, address in enumerate(addresses, start=1):
        con.execute(
            "INSERT INTO request_items (request_id, event_id, item_no, supplied_address)"
            " VALUES ('R1', 'Q1', ?, ?)",
            [n, address],
        )


def _verdicts(con: duckdb.DuckDBPyConnection) -> dict[str | None, tuple[bool, str]]:
    rows = con.execute(
        "SELECT i.supplied_address, v.usable, v.reason FROM request_items i"
        " LEFT JOIN address_verdicts v ON v.address_key = md5_number(i.supplied_address)"
    ).fetchall()
    return {address: (usable, reason) for address, usable, reason in rows}


def test_distinct_addresses_are_judged_once(con: duckdb.DuckDBPyConnection) -> None:
    vocabulary = AddressVocabulary.of(["unknown"])
    _items(con, ADDRESSES)
    assert refresh_address_verdicts(con, vocabulary) == 3  # distinct, non-null texts
    verdicts = _verdicts(con)
    assert verdicts["4512 Oak Ridge Dr, Houston, TX 77001"][0] is True
    assert verdicts["Unknown"] == (False, "a placeholder ('unknown'), not an address")
    assert verdicts["33101"] == (False, "no street number and street name; only a ZIP")
    assert verdicts[None] == (None, None)  # no text: dw_items reads it as blank
    # the store holds no copy of the text, only its hash
    columns = [c[0] for c in con.execute("DESCRIBE address_verdicts").fetchall()]
    assert "address" not in columns and "supplied_address" not in columns
    # a second run judges nothing new; a new address is judged alone
    assert refresh_address_verdicts(con, vocabulary) == 0
    _items(con, ["PO Box 7, Austin TX 78701"])
    assert refresh_address_verdicts(con, vocabulary) == 1
    assert con.execute("SELECT count(*) FROM address_verdicts").fetchone() == (4,)


def test_a_changed_vocabulary_judges_again(con: duckdb.DuckDBPyConnection) -> None:
    _items(con, ["123 Unknown, Miami FL 33101", "12 Elm St, Miami FL 33101"])
    refresh_address_verdicts(con, AddressVocabulary.of([]))
    assert _verdicts(con)["123 Unknown, Miami FL 33101"][0] is True
    assert refresh_address_verdicts(con, AddressVocabulary.of(["unknown"])) == 2
    assert _verdicts(con)["123 Unknown, Miami FL 33101"] == (
        False,
        "the street name is a placeholder ('unknown')",
    )
    assert con.execute("SELECT count(DISTINCT vocabulary) FROM address_verdicts").fetchone() == (1,)


def test_ingest_judges_the_addresses_it_loads(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    """Detect then only looks verdicts up: ingest parsed each new address once."""
    path = tmp_path / "items.csv"
    path.write_text(
        "request_id,event_id,item_no,taxpayer_tin,supplied_address\n"
        "r1,e1,1,900-70-0001,Failed to Provide\n"
        'r1,e1,2,900-70-0002,"45 Pending Ln, Reno NV 89501"\n'
        'r1,e1,3,900-70-0003,"45 Pending Ln, Reno NV 89501"\n'
    )
    [result] = ingest_paths(con, [path])
    assert result.rows_loaded == 3 and not result.warnings
    verdicts = _verdicts(con)
    assert verdicts["45 Pending Ln, Reno NV 89501"] == (
        True,
        "usable: house number, street and place",
    )
    assert verdicts["Failed to Provide"][0] is False
    assert refresh_address_verdicts(con, vocabulary_of(load_registry())) == 0
