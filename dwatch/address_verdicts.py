"""Address verdicts in the store: each distinct supplied address judged once.

``refresh_address_verdicts`` judges (``dwatch.address.judge_address``) every distinct
``request_items.supplied_address`` that ``address_verdicts`` (migration 0018) does not
hold under the current vocabulary, and forgets verdicts made under another one. Rules
read the verdicts through ``dw_items`` (a join on ``md5_number`` of the text), so the
parser never runs per row in SQL and a daily run parses only the addresses it has not
seen before.
"""

from __future__ import annotations

from collections.abc import Mapping

import duckdb
import pyarrow as pa

from dwatch.address import AddressVerdict, AddressVocabulary, judge_address

_NEW_ADDRESSES = """
WITH seen AS (
    SELECT DISTINCT supplied_address AS address FROM {items}
    WHERE supplied_address IS NOT NULL
)
SELECT s.address FROM seen s
WHERE NOT EXISTS (SELECT 1 FROM address_verdicts v WHERE v.address_key = md5_number(s.address))
"""


def refresh_address_verdicts(
    con: duckdb.DuckDBPyConnection,
    vocabulary: AddressVocabulary,
    *,
    items: str = "request_items",
    judged: Mapping[str, AddressVerdict] | None = None,
) -> int:
    """Judge the supplied addresses of ``items`` (a table or view of request items: the
    rules read verdicts only for the items they judge) not yet judged under ``vocabulary``;
    returns how many. ``judged``: verdicts already reached under ``vocabulary`` for some
    texts (ingest judges them beside the load, dwatch.ingest.addresses), used as they are."""
    con.execute(
        "DELETE FROM address_verdicts WHERE vocabulary <> $fingerprint",
        {"fingerprint": vocabulary.fingerprint},
    )
    addresses = [row[0] for row in con.execute(_NEW_ADDRESSES.format(items=items)).fetchall()]
    if not addresses:
        return 0
    known = judged or {}
    verdicts = [known.get(text) or judge_address(text, vocabulary) for text in addresses]
    judged = pa.table(
        {
            "address": addresses,
            "usable": [v.usable for v in verdicts],
            "form": [v.form for v in verdicts],
            "reason": [v.reason for v in verdicts],
        }
    )
    con.register("_judged_addresses", judged)
    try:
        con.execute(
            "INSERT INTO address_verdicts (address_key, vocabulary, usable, form, reason)"
            " SELECT md5_number(address), $fingerprint, usable, form, reason FROM _judged_addresses",
            {"fingerprint": vocabulary.fingerprint},
        )
    finally:
        con.unregister("_judged_addresses")
    return len(addresses)
