"""``make demo``: the main job end to end on the committed sample logs.

Uses the published demo pseudonymisation key unless DWATCH_PSEUDONYM_KEY is set, and says
so: the demo store is not for real data.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from dwatch.ingest import ingest_paths, summarise
from dwatch.pseudonym import ENV_KEY, resolve_key
from dwatch.store import connect, default_db_path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_logs"


def main() -> int:
    db = default_db_path()
    if not os.environ.get(ENV_KEY):
        print(
            f"note: {ENV_KEY} is not set; using the published demo key (never use it for real data)"
        )
    key = resolve_key(allow_demo=True)
    for suffix in ("", ".wal"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    con = connect(db)
    results = ingest_paths(con, [SAMPLE], key=key)
    print(summarise(results))
    print("\nrows by source:")
    for source, kind, n in con.execute(
        "SELECT source_system, 'events', count(*) FROM disclosure_events GROUP BY 1 "
        "UNION ALL SELECT coalesce(source_system, '(items)'), 'request_items', count(*) FROM request_items GROUP BY 1 "
        "ORDER BY 2, 1"
    ).fetchall():
        print(f"  {kind:14} {source:32} {n:>8,}")
    print("quarantined by reason:")
    rows = con.execute(
        "SELECT reason_code, count(*) FROM quarantine GROUP BY 1 ORDER BY 2 DESC"
    ).fetchall()
    for reason, n in rows or [("(none)", 0)]:
        print(f"  {reason:32} {n:>8,}")
    con.close()
    print(
        f'\nstore: {db}\nquery it: duckdb -readonly {db} "SELECT * FROM disclosure_events LIMIT 5"'
    )
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
