-- Duplicate checks of pseudonymised event ids by hash, not by range (issue 18).
--
-- An event id that carries a taxpayer-id shape is stored as its keyed pseudonym ('tp_' and
-- 32 hex digits: at 100M events every serial past 1,010,000 that SSA could issue). Its order
-- is random, so a run holding any such id has a key range (ingest_key_ranges, migration 0027)
-- reaching up to 'tp_fff...', which every later id of the same source overlaps: each new
-- batch of those logs read all their history's ids (100M, 1% run: 7.4 of 16.9 CPU-s).
--
-- Each (run, source) is now described by two classes of its ids (``hashed``: the
-- pseudonym's shape, a function of the stored id alone, so equal ids are in the same class):
-- the range of its other ("plain") ids, and the first 16 hex digits of each hashed id.
-- A new plain id is checked against the runs whose plain range overlaps, a new hashed id
-- against the runs holding its hash (dwatch.ingest.write._stored_rows); the rows of those
-- runs are then matched on the real keys, as before. ingest_key_ranges is kept as it was
-- (validation reads it); a (run, source) with no row here is checked by that range.
CREATE TABLE IF NOT EXISTS ingest_key_classes (
    ingest_run_id VARCHAR NOT NULL,
    source_system VARCHAR NOT NULL,
    first_plain_id VARCHAR,          -- the lowest and highest id that is not a pseudonym
    last_plain_id VARCHAR,           -- (NULL: every id of the run and source is one)
    hashed_ids BIGINT NOT NULL       -- how many ids are pseudonyms (their hashes below)
);
COMMENT ON TABLE ingest_key_classes IS 'Per ingest run and source system: the range of its event ids that are not pseudonyms, and how many are (those are in ingest_key_hashes); bounds the duplicate check of later loads.';
CREATE TABLE IF NOT EXISTS ingest_key_hashes (
    ingest_run_id VARCHAR NOT NULL,
    source_system VARCHAR NOT NULL,
    key_hash UBIGINT NOT NULL        -- the pseudonym's first 16 hex digits
);
COMMENT ON TABLE ingest_key_hashes IS 'Per ingest run and source system: the first 16 hex digits of each event id that is a pseudonym (tp_ and 32 hex digits); the duplicate check of later loads reads these instead of the ids.';
INSERT INTO ingest_key_classes
SELECT ingest_run_id, source_system,
       min(event_id) FILTER (WHERE NOT hashed), max(event_id) FILTER (WHERE NOT hashed),
       count(*) FILTER (WHERE hashed)
FROM (
    SELECT ingest_run_id, source_system, event_id,
           coalesce(starts_with(event_id, 'tp_') AND length(event_id) = 35
                    AND TRY_CAST('0x' || substr(event_id, 4, 16) AS UBIGINT) IS NOT NULL, false)
               AS hashed
    FROM disclosure_events
    WHERE ingest_run_id IS NOT NULL AND source_system IS NOT NULL AND event_id IS NOT NULL
)
GROUP BY ingest_run_id, source_system;
INSERT INTO ingest_key_hashes
SELECT ingest_run_id, source_system, TRY_CAST('0x' || substr(event_id, 4, 16) AS UBIGINT)
FROM disclosure_events
WHERE ingest_run_id IS NOT NULL AND source_system IS NOT NULL AND event_id IS NOT NULL
  AND starts_with(event_id, 'tp_') AND length(event_id) = 35
  AND TRY_CAST('0x' || substr(event_id, 4, 16) AS UBIGINT) IS NOT NULL;
