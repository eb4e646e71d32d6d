-- The accounting index made narrow (issue 18). Migration 0024's accounting_index copied 19
-- columns of every entry (the event's fields denormalised); its first build was the largest
-- single cost of a full run (38.5 CPU-s of 10M events). accounting_keys holds, per entry,
-- the integer key it is found by, the event's STABLE key (ingest_run_id, source_row: one
-- file per batch, source_row its row in that file; ingest keeps both unique) and a row-id
-- hint; the event's fields are read back when a lookup needs them, by row-id ranges, each
-- row checked to be the event it was found for (DuckDB renumbers rows when a checkpoint
-- compacts row groups emptied by deletes), by a join on the stable key for rows that moved
-- (dwatch.accounting.readback). Request-item rows keep the item's own fields here.
--
-- accounting_index stays as a view of the old columns, for analysts' queries. An upgraded
-- store's old index is dropped and rebuilt once by the next refresh (a pipeline run's
-- publish step, or dwatch accounting --refresh); until then lookups read every batch from
-- the canonical tables, as for batches not yet indexed.
DROP TABLE IF EXISTS accounting_index;
DELETE FROM accounting_index_runs;
UPDATE accounting_index_state SET sorted_entries = 0, compacted_at = NULL;
-- Where disclosure_events' last row lay when the hints were last written: a refresh that
-- finds another row there (a checkpoint renumbered rows) writes the index anew.
ALTER TABLE accounting_index_state ADD COLUMN hint_last_rowid BIGINT;
ALTER TABLE accounting_index_state ADD COLUMN hint_run_id VARCHAR;
ALTER TABLE accounting_index_state ADD COLUMN hint_source_row BIGINT;

CREATE TABLE IF NOT EXISTS accounting_keys (
    lookup_key BIGINT NOT NULL,          -- 60 bits of taxpayer_ref (event, request_item) or of md5(request_id) (request_chain)
    via VARCHAR NOT NULL CHECK (via IN ('event', 'request_item', 'request_chain')),
    ingest_run_id VARCHAR,               -- the event's batch      } the event, whatever row
    source_row BIGINT,                   -- its row in that file   } id it has now
    event_rowid BIGINT,                  -- the event's row id when indexed: a hint, checked
    request_id VARCHAR,                  -- request_item and request_chain rows (event rows: NULL)
    taxpayer_ref VARCHAR,                -- the item's pseudonym (request_item rows only)
    item_no BIGINT,                      -- the request item (request_item rows)
    match_method VARCHAR,                -- how the discloser matched the item (request_item rows)
    item_run_id VARCHAR                  -- the request item's batch (request_item rows)
);
COMMENT ON TABLE accounting_keys IS 'Where each taxpayer (pseudonym) is named, narrow: the lookup key, how (via), the event by its stable key (ingest_run_id, source_row) with a row-id hint, and the request item''s own fields. The view accounting_index gives the old columns; see dwatch/accounting.';

CREATE OR REPLACE VIEW accounting_index AS
SELECT k.lookup_key, k.via,
       CASE WHEN k.via = 'request_item' THEN k.taxpayer_ref ELSE e.taxpayer_ref END AS taxpayer_ref,
       e.source_system, e.event_id, e.request_id, k.item_no, e.occurred_at, e.event_type,
       e.disclosing_agency, e.recipient_agency, e.legal_authority, e.authority_id, e.purpose,
       e.data_elements, e.record_count, k.match_method, k.ingest_run_id, k.item_run_id
FROM accounting_keys k
JOIN disclosure_events e ON e.ingest_run_id = k.ingest_run_id AND e.source_row = k.source_row;
COMMENT ON VIEW accounting_index IS 'The accounting side table with migration 0024''s columns: accounting_keys joined to the events by their stable key (a join over the events; dwatch accounting reads them back by row id instead).';
