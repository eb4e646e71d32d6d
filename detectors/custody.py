"""Tables the reconciliation and retention rules read, built once per detect run.

``dw_reconciliation_pairs``: for every registry reconciliation, the sender's disclosures and
the recipients' receipts under the same key (the two agencies and the entry's ``match_on``
fields): a disclosure and a receipt pair when each is the other's nearest in time (the
receipt at or after the disclosure, allowing the clock skew) and they are no further apart
than a receipt may be missing; events left over pair again among themselves, and each
receipt log pairs on its own (a transfer system's delivery record and the recipient's
ledger both witness one receipt). A row with only one side is a transfer seen on one side
(a disclosure only when no receipt log received it).
Each row carries the other side's log coverage (first and last entry), so that a receipt
log that has not reached a disclosure's date yet, or began after it, is not read as silence.

``dw_custody``: every receipt under a retention term with its disposal deadline, the first
disposal of the same data by the same holder (same request, else same agreement, and the
same record count when the disposal states one), and how far the holder's log reaches
(``dw_custody_reach``); plus, for use-after-disposal, the uses made after a holder's data
under a request or agreement was all disposed of (``dw_custody_emptied``).

An entry whose ``outcome`` says the act did not take place (``NOT_DONE_OUTCOMES``) takes no
part: a failed transfer sent nothing and awaits no receipt, a failed disposal destroyed
nothing, a failed read used nothing, and a correction entry amends an earlier entry
without recording a new act (a ledger's amended line is not a second transfer).
"""

from __future__ import annotations

import duckdb

# Outcomes (canonical ``outcome``, lower-cased at ingest) saying that the logged act did not
# happen. Bound as $not_done_outcomes.
NOT_DONE_OUTCOMES = ["failure", "correction"]
_DONE = "NOT list_contains($not_done_outcomes, coalesce(e.outcome, ''))"
OUTCOMES = {"not_done_outcomes": NOT_DONE_OUTCOMES}  # what INPUTS bind

_KEY = """concat_ws('|', e.disclosing_code, e.recipient_code,
    CASE WHEN list_contains(rc.match_on, 'request_id') THEN coalesce(e.request_id, '') END,
    CASE WHEN list_contains(rc.match_on, 'agreement_id')
         THEN coalesce(e.agreement_ref, e.agreement_id, '') END,
    CASE WHEN list_contains(rc.match_on, 'data_elements')
         THEN coalesce(array_to_string(list_sort(e.data_elements), ','), '') END,
    CASE WHEN list_contains(rc.match_on, 'taxpayer_ref') THEN coalesce(e.taxpayer_ref, '') END)"""

_SIDE = """
SELECT rc.reconciliation_id, e.event_id, e.source_system, e.occurred_at, e.record_count,
       e.disclosing_code, e.recipient_code, e.request_id, e.taxpayer_ref, {key} AS match_key
FROM dw_events e
JOIN registry_reconciliations rc
  ON list_contains(rc.{types}, e.event_type)
 AND (len(rc.sender_agencies) = 0 OR list_contains(rc.sender_agencies, e.disclosing_code))
 AND (len(rc.recipient_agencies) = 0 OR list_contains(rc.recipient_agencies, e.recipient_code))
 AND (len(rc.{sources}) = 0 OR list_contains(rc.{sources}, e.source_system))
 AND e.occurred_at >= rc.effective_from
 AND (rc.effective_to IS NULL OR e.occurred_at < rc.effective_to)
 AND coalesce(e.record_count, 0) >= rc.min_record_count
WHERE {done}
"""

PAIRING_ROUNDS = 3


def _pairing_rounds(rounds: int) -> str:
    """SQL CTEs ending in ``paired``: mutual nearest pairs, found again among the events
    earlier rounds left unpaired."""
    ctes = []
    for n in range(1, rounds + 1):
        if n == 1:
            s_from, r_from = "sent_x", "recv"
        else:
            s_from, r_from = f"sent_{n}", f"recv_{n}"
            done = " UNION ALL ".join(f"SELECT * FROM paired_{k}" for k in range(1, n))
            ctes.append(
                f"done_{n} AS ({done}),"
                f" sent_{n} AS (SELECT s.* FROM sent_x s ANTI JOIN done_{n} d"
                " ON d.reconciliation_id = s.reconciliation_id AND d.s_id = s.event_id"
                " AND d.s_src = s.source_system AND d.r_src = s.recv_log),"
                f" recv_{n} AS (SELECT r.* FROM recv r ANTI JOIN done_{n} d"
                " ON d.reconciliation_id = r.reconciliation_id AND d.r_id = r.event_id"
                " AND d.r_src = r.source_system),"
            )
        ctes.append(
            f"fwd_{n} AS (SELECT s.reconciliation_id, s.event_id AS s_id, s.source_system AS s_src,"
            " r.event_id AS r_id, r.source_system AS r_src"
            f" FROM {s_from} s ASOF JOIN {r_from} r"
            " ON r.reconciliation_id = s.reconciliation_id AND r.match_key = s.match_key"
            " AND r.source_system = s.recv_log AND r.t_adj >= s.occurred_at),"
            f" rev_{n} AS (SELECT r.reconciliation_id, r.event_id AS r_id, r.source_system AS r_src,"
            " s.event_id AS s_id, s.source_system AS s_src"
            f" FROM {r_from} r ASOF JOIN {s_from} s"
            " ON s.reconciliation_id = r.reconciliation_id AND s.match_key = r.match_key"
            " AND s.recv_log = r.source_system AND s.occurred_at <= r.t_adj),"
            f" paired_{n} AS (SELECT f.reconciliation_id, f.s_id, f.s_src, f.r_id, f.r_src"
            f" FROM fwd_{n} f JOIN rev_{n} v"
            " ON v.reconciliation_id = f.reconciliation_id AND v.r_id = f.r_id AND v.r_src = f.r_src"
            " AND v.s_id = f.s_id AND v.s_src = f.s_src),"
        )
    every = " UNION ALL ".join(f"SELECT * FROM paired_{k}" for k in range(1, rounds + 1))
    ctes.append(f"paired AS ({every}),")
    return "\n".join(ctes)


# Each side of every reconciliation, one row per event: what pairing reads (dw_recon_sent,
# dw_recon_received), built from dw_events or kept between runs (detectors.custody_state).
SENT_SIDE = _SIDE.format(
    key=_KEY, done=_DONE, types="disclosure_event_types", sources="sender_sources"
)
RECEIVED_SIDE = _SIDE.format(
    key=_KEY, done=_DONE, types="receipt_event_types", sources="receiver_sources"
)

RECONCILIATION_PAIRS = f"""
CREATE OR REPLACE TEMP TABLE dw_reconciliation_pairs AS
WITH sent AS (SELECT * FROM dw_recon_sent),
recv AS (
    SELECT r.*, r.occurred_at + to_microseconds(CAST(rc.clock_skew_hours * 3600e6 AS BIGINT)) AS t_adj
    FROM dw_recon_received r
    JOIN registry_reconciliations rc USING (reconciliation_id)
),
-- each disclosure's first receipt at or after it, and each receipt's last disclosure at or
-- before it (receipt times moved back by the allowed skew); a pair is mutual and no further
-- apart than a receipt may be missing, so a ledger correction or a lost file in a series
-- does not shift every later pair. Events left unpaired are paired again among themselves
-- (PAIRING_ROUNDS in all): two files sent under one request the same day and received
-- the next are both nearest to the same receipt in the first round, and pair in the second.
-- Each receipt log is paired on its own: a transfer system's delivery record and the
-- recipient's own ledger are two witnesses of one receipt, not two receipts.
sent_x AS (
    SELECT s.*, l.recv_log FROM sent s
    JOIN (SELECT DISTINCT reconciliation_id, recipient_code, source_system AS recv_log FROM recv) l
      ON l.reconciliation_id = s.reconciliation_id AND l.recipient_code = s.recipient_code
),
{_pairing_rounds(PAIRING_ROUNDS)}
joined AS (
    SELECT s.*, r.event_id AS recv_event_id, r.source_system AS recv_source,
           r.occurred_at AS recv_at, r.record_count AS recv_records
    FROM sent s
    JOIN paired p ON p.reconciliation_id = s.reconciliation_id
     AND p.s_id = s.event_id AND p.s_src = s.source_system
    JOIN recv r ON r.reconciliation_id = p.reconciliation_id
     AND r.event_id = p.r_id AND r.source_system = p.r_src
    JOIN registry_reconciliations rc ON rc.reconciliation_id = s.reconciliation_id
    WHERE r.occurred_at <= s.occurred_at
          + to_microseconds(CAST(rc.missing_after_hours * 3600e6 AS BIGINT))
),
rows AS (
    SELECT reconciliation_id, match_key, disclosing_code, recipient_code, request_id,
           event_id AS sent_event_id, source_system AS sent_source, occurred_at AS sent_at,
           record_count AS sent_records, recv_event_id, recv_source, recv_at, recv_records
    FROM joined
    UNION ALL
    SELECT s.reconciliation_id, s.match_key, s.disclosing_code, s.recipient_code, s.request_id,
           s.event_id, s.source_system, s.occurred_at, s.record_count, NULL, NULL, NULL, NULL
    FROM sent s ANTI JOIN joined j
      ON j.reconciliation_id = s.reconciliation_id AND j.event_id = s.event_id
     AND j.source_system = s.source_system
    UNION ALL
    SELECT r.reconciliation_id, r.match_key, r.disclosing_code, r.recipient_code, r.request_id,
           NULL, NULL, NULL, NULL, r.event_id, r.source_system, r.occurred_at, r.record_count
    FROM recv r ANTI JOIN joined j
      ON j.reconciliation_id = r.reconciliation_id AND j.recv_event_id = r.event_id
     AND j.recv_source = r.source_system
),
ledger_span AS (
    SELECT reconciliation_id, disclosing_code, min(occurred_at) AS first_at, max(occurred_at) AS last_at
    FROM sent GROUP BY ALL
),
receipt_span AS (
    SELECT reconciliation_id, recipient_code, min(occurred_at) AS first_at, max(occurred_at) AS last_at
    FROM recv GROUP BY ALL
)
SELECT x.*,
       date_diff('second', x.sent_at, x.recv_at) / 3600.0 AS lag_hours,
       ls.first_at AS ledger_first_at, ls.last_at AS ledger_last_at,
       rs.first_at AS receipts_first_at, rs.last_at AS receipts_last_at,
       rc.title AS reconciliation_title, rc.clock_skew_hours, rc.receipt_within_hours,
       rc.missing_after_hours, rc.record_count_tolerance, rc.record_count_tolerance_ratio,
       rc.match_on
FROM rows x
JOIN registry_reconciliations rc ON rc.reconciliation_id = x.reconciliation_id
LEFT JOIN ledger_span ls
  ON ls.reconciliation_id = x.reconciliation_id AND ls.disclosing_code = x.disclosing_code
LEFT JOIN receipt_span rs
  ON rs.reconciliation_id = x.reconciliation_id AND rs.recipient_code = x.recipient_code
"""

# The holder of data an event touches: the recipient, except for a passing-on logged with the
# holder as the discloser. Disposal and use are matched on the request, else the agreement.
_HOLDER = (
    "CASE WHEN e.is_use AND NOT e.is_disclosure AND e.event_type = 'redisclosure'"
    " THEN e.disclosing_code ELSE e.recipient_code END"
)

# Every event custody is judged on (receipts, disposals, uses) with its holder.
CUSTODY_EVENTS = f"""
SELECT e.event_id, e.source_system, e.event_type, e.occurred_at, e.record_count, e.actor_id,
       e.disclosing_code, e.recipient_code, e.recipient_category, e.agreement_ref,
       e.request_id, e.taxpayer_ref, e.is_use,
       {_HOLDER} AS holder_code,
       coalesce(e.request_id, e.agreement_ref) AS custody_key
FROM dw_events e
WHERE (e.event_type IN ('receipt', 'disposal') OR e.is_use) AND {_DONE}
"""

# A use is nearly every event, and custody reads uses for two things only: how far each
# holder's log reaches (the latest of its receipts, disposals and uses: :data:`REACH`) and
# the uses made after a key's data was emptied (a handful). So the kept state holds the
# receipts and disposals (few) and each holder's reach; the uses after an emptying are read
# back from the store through their request or agreement (:data:`STORED_USES`).
# The kept rows' filter is on the raw event type, so the scan skips uses before any is
# resolved. {rows}: custody rows (CUSTODY_EVENTS over some events).
CUSTODY_ROWS, KEPT_ROWS = (
    "(e.event_type IN ('receipt', 'disposal') OR e.is_use)",
    # the range, implied by the list, is a filter DuckDB applies in the scan: the other
    # columns of the uses around them are not read (10M events: 0.47 -> 0.22 CPU-s)
    "e.event_type BETWEEN 'disposal' AND 'receipt' AND e.event_type IN ('receipt', 'disposal')",
)
assert CUSTODY_EVENTS.count(CUSTODY_ROWS) == 1
KEPT_CUSTODY_EVENTS = CUSTODY_EVENTS.replace(CUSTODY_ROWS, KEPT_ROWS)
REACH = "SELECT holder_code, max(occurred_at) AS log_last_at FROM ({rows}) c GROUP BY ALL"

CUSTODY = """
CREATE OR REPLACE TEMP TABLE dw_custody AS
WITH terms AS (
    SELECT c.*, t.term_id, t.title AS term_title, t.court_orders AS term_orders,
           t.agreements AS term_agreements, t.dispose_within_days, t.dispose_by,
           least(c.occurred_at + to_days(t.dispose_within_days), t.dispose_by) AS deadline
    FROM dw_custody_events c
    JOIN registry_retention_terms t
      ON (list_contains(t.agreements, c.agreement_ref)
          OR list_contains(t.recipient_agencies, c.recipient_code)
          OR list_contains(t.recipient_categories, c.recipient_category))
     AND c.occurred_at >= t.effective_from
     AND (t.effective_to IS NULL OR c.occurred_at < t.effective_to)
    WHERE c.event_type = 'receipt'
)
SELECT t.*, h.log_last_at,
       (SELECT min(d.occurred_at) FROM dw_custody_events d
        WHERE d.event_type = 'disposal' AND d.holder_code = t.holder_code
          AND d.custody_key IS NOT DISTINCT FROM t.custody_key
          AND d.occurred_at >= t.occurred_at
          -- a disposal that states a quantity destroys the batch of that size (a standing
          -- request delivers many batches under one request id)
          AND (d.record_count IS NULL OR d.record_count = t.record_count)) AS disposed_at
FROM terms t LEFT JOIN dw_custody_reach h USING (holder_code)
"""


# The uses made when the holder had logged as many disposals of the data (request, else
# agreement) as receipts of it, each with the counts and the disposal in force before it:
# what use_after_disposal judges. The running counts are taken over receipts and disposals
# only (few, dw_custody_marks); a use before the first time its key was emptied finds no
# emptied count (dw_custody_emptied_keys), so only later uses are read (dw_custody_uses),
# and each finds the count in force before it with an as-of join.
MARKS = """
CREATE OR REPLACE TEMP TABLE dw_custody_marks AS
SELECT holder_code, custody_key, occurred_at, event_id,
       sum(CASE WHEN event_type = 'receipt' THEN 1 ELSE 0 END) OVER w AS received,
       sum(CASE WHEN event_type = 'disposal' THEN 1 ELSE 0 END) OVER w AS disposed,
       max(CASE WHEN event_type = 'disposal' THEN occurred_at END) OVER w AS disposed_at,
       arg_max(CASE WHEN event_type = 'disposal' THEN event_id END,
               CASE WHEN event_type = 'disposal' THEN occurred_at END) OVER w AS disposal_event_id
FROM dw_custody_events
WHERE event_type IN ('receipt', 'disposal') AND custody_key IS NOT NULL
WINDOW w AS (PARTITION BY holder_code, custody_key ORDER BY occurred_at, event_type
             ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
"""
EMPTIED_KEYS = """
CREATE OR REPLACE TEMP TABLE dw_custody_emptied_keys AS
SELECT holder_code, custody_key, min(occurred_at) AS first_emptied_at
FROM dw_custody_marks WHERE disposed > 0 AND disposed >= received GROUP BY ALL
"""
# The uses after their key was first emptied, from {uses} (custody rows with uses).
_USES = """
CREATE OR REPLACE TEMP TABLE dw_custody_uses AS
SELECT u.* FROM ({uses}) u
JOIN dw_custody_emptied_keys k ON k.holder_code = u.holder_code AND k.custody_key = u.custody_key
WHERE u.is_use AND u.occurred_at > k.first_emptied_at
"""
USES = _USES.format(uses="SELECT * FROM dw_custody_events")
# ...read back from the store (the kept state holds no uses): the rows under an emptied
# request, or with no request under an emptied agreement (its id folded as dw_events folds
# it), after that key was first emptied, resolved; the join above then keeps exactly the
# emptied keys' uses. $after, the first emptying of all, is a constant zone maps compare
# (ingest keeps each log's rows in its order), so older row groups are skipped.
STORED_CANDIDATES = """
CREATE OR REPLACE TEMP TABLE dw_custody_candidates AS
SELECT e.rowid AS event_row FROM disclosure_events e
JOIN dw_custody_emptied_keys k
  ON k.custody_key = e.request_id AND e.occurred_at > k.first_emptied_at
WHERE e.occurred_at > $after
UNION
SELECT e.rowid FROM disclosure_events e
JOIN (SELECT a.agreement_key, min(k.first_emptied_at) AS first_emptied_at
      FROM dw_custody_emptied_keys k JOIN dw_agreement_keys a ON a.agreement_id = k.custody_key
      GROUP BY ALL) k
  ON k.agreement_key = regexp_replace(upper(e.agreement_id), '[^A-Z0-9]+', '', 'g')
 AND e.occurred_at > k.first_emptied_at
WHERE e.occurred_at > $after AND e.request_id IS NULL AND e.agreement_id IS NOT NULL
"""
STORED_USES = _USES.format(
    uses=CUSTODY_EVENTS.replace("FROM dw_events e", "FROM dw_custody_stored e")
)
EMPTIED = """
CREATE OR REPLACE TEMP TABLE dw_custody_emptied AS
SELECT u.*, m.received, m.disposed, m.disposed_at, m.disposal_event_id
FROM dw_custody_uses u
ASOF JOIN dw_custody_marks m
  ON m.holder_code = u.holder_code AND m.custody_key = u.custody_key
 AND m.occurred_at < u.occurred_at
WHERE m.disposed > 0 AND m.disposed >= m.received
"""

# The taxpayers those uses name: use_after_disposal's reads (detectors/scoped.py) need only
# the deliveries naming them.
AFTER_DISPOSAL = """
CREATE OR REPLACE TEMP TABLE dw_custody_after_disposal AS
SELECT DISTINCT taxpayer_ref FROM dw_custody_emptied WHERE taxpayer_ref IS NOT NULL
"""

# What pairing and custody read, each built from dw_events by the SELECT beside it.
INPUTS = {
    "dw_recon_sent": SENT_SIDE,
    "dw_recon_received": RECEIVED_SIDE,
    "dw_custody_events": CUSTODY_EVENTS,
}


def replace_temp(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """Drop the temp table or view ``name`` (a run may hold either under one name)."""
    row = con.execute(
        "SELECT (SELECT count(*) FROM duckdb_tables() WHERE temporary AND table_name = $n),"
        " (SELECT count(*) FROM duckdb_views() WHERE temporary AND view_name = $n)",
        {"n": name},
    ).fetchone()
    if row and row[0]:
        con.execute(f"DROP TABLE temp.{name}")
    if row and row[1]:
        con.execute(f"DROP VIEW temp.{name}")


def pair_and_hold(con: duckdb.DuckDBPyConnection, *, stored_uses: bool = False) -> None:
    """Pair the sides and judge custody from the INPUTS tables (or views) in place, with
    ``dw_custody_reach``. ``stored_uses``: ``dw_custody_events`` holds no uses (the kept
    state), so the uses after an emptying are read back from the store."""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE dw_custody_outcomes AS SELECT $not_done_outcomes AS not_done",
        OUTCOMES,
    )  # for rules that look past these tables (use_after_disposal's later deliveries)
    con.execute(RECONCILIATION_PAIRS)
    con.execute(CUSTODY)
    con.execute(MARKS)
    con.execute(EMPTIED_KEYS)
    if stored_uses:
        _stored_uses(con)
    else:
        con.execute(USES)
    con.execute(EMPTIED)
    con.execute(AFTER_DISPOSAL)
    for name in ("dw_custody_uses", "dw_custody_emptied_keys", "dw_custody_marks"):
        con.execute(f"DROP TABLE {name}")


def _stored_uses(con: duckdb.DuckDBPyConnection) -> None:
    """``dw_custody_uses`` from ``disclosure_events``: nothing is read when no key was
    emptied (the usual case), else the rows after the first emptying under its keys."""
    from detectors.engine import located_events_sql  # (the engine builds on this module)

    row = con.execute("SELECT min(first_emptied_at) FROM dw_custody_emptied_keys").fetchone()
    after = row[0] if row else None
    if after is None:
        where = "false"
    else:
        con.execute(STORED_CANDIDATES, {"after": after})
        where = "rowid IN (SELECT event_row FROM dw_custody_candidates)"
    con.execute(located_events_sql("dw_custody_stored", where))
    con.execute(STORED_USES, OUTCOMES)
    con.execute("DROP VIEW dw_custody_stored")
    con.execute("DROP TABLE IF EXISTS dw_custody_candidates")


def prepare_custody(con: duckdb.DuckDBPyConnection) -> None:
    """Build the tables the reconciliation and retention rules read, from dw_events, with
    their inputs held as temporary tables: for a store without the state tables (a full
    judgement otherwise writes them there, :func:`detectors.custody_state.prepare_custody`)."""
    for name, select in INPUTS.items():
        replace_temp(con, name)
        con.execute(f"CREATE TEMP TABLE {name} AS {select}", OUTCOMES)
    con.execute(
        "CREATE OR REPLACE TEMP VIEW dw_custody_reach AS SELECT holder_code,"
        " max(occurred_at) AS log_last_at FROM dw_custody_events GROUP BY ALL"
    )
    pair_and_hold(con)
