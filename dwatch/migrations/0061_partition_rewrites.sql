-- What lets a publish know a partitioned table's old rows unchanged without reading them
-- (issue 18; dwatch.snapshot_parts).
--
-- A publish compared the count and the hash sum of every row up to the previous publish's
-- last row id with what that publish recorded (100M, 1% run: the accounting index 1.9-2.3
-- CPU-s, the events 0.8). Deletions and moves (a checkpoint compacting row groups that
-- deletes emptied: later rows take lower row ids, in order) change how many rows lie at or
-- below that row id or which row lies at it; in-place updates (the events' authority_id)
-- change a narrow hash of those columns. One way is left that neither sees: rows deleted
-- and added again in another order, then moved back by a checkpoint, which the accounting
-- index does when it rewrites itself in key order, drops stale batches or starts afresh.
-- Each such step adds one here; a publish that finds the count it recorded reads no old row.
CREATE TABLE IF NOT EXISTS partition_rewrites (
    table_name VARCHAR PRIMARY KEY,
    rewrites BIGINT NOT NULL
);
COMMENT ON TABLE partition_rewrites IS 'Per partitioned table, how many times a step deleted rows it may add again in another order (the accounting index: stale batches, a rewrite in key order, emptied); a snapshot publish that finds the number it recorded, and the same rows at or below its last row id, does not read the old rows.';
