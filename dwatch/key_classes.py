"""The two classes of stored event ids that ingest keeps per run (migration 0056).

A pseudonym ('tp_' and 32 hex digits, the keyed pseudonym of an id with a taxpayer-id
shape) is found by its first 16 hex digits (``ingest_key_hashes``), any other id by the
range of its run's other ids (``ingest_key_classes``). The class is a function of the
stored id alone: equal ids are in the same class and have the same hash. Ingest's duplicate
check (``dwatch.ingest.write``) and validation's (``dwatch.validate.keyranges``) read them;
the migration's backfill writes these same expressions out.
"""

from __future__ import annotations

KEY_CLASSES = "ingest_key_classes"
KEY_HASHES = "ingest_key_hashes"


def sql_key_hash(expr: str) -> str:
    """SQL: a pseudonym's first 16 hex digits as an integer (NULL when they are not hex)."""
    return f"TRY_CAST('0x' || substr({expr}, 4, 16) AS UBIGINT)"


def sql_key_hashed(expr: str) -> str:
    """SQL: whether an event id is in the hashed class (never NULL)."""
    return (
        f"coalesce(starts_with({expr}, 'tp_') AND length({expr}) = 35"
        f" AND {sql_key_hash(expr)} IS NOT NULL, false)"
    )
