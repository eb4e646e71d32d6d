-- Per-taxpayer accounting of disclosures (issue 17, items 1 and 2).
--
-- Answering "who received this taxpayer's data" by scanning taxpayer_ref (a 35-character
-- string) in disclosure_events and request_items took 1.4-2.5 s at 5M events. This side
-- table holds every place a taxpayer is named, with the event's accounting fields copied,
-- under an integer lookup_key (60 bits of the pseudonym). Each refresh appends its rows
-- sorted by lookup_key and the table is rewritten in lookup_key order when the unsorted
-- tail grows past half of the sorted part, so a lookup's min/max filter skips nearly every
-- row group. Kept by dwatch.accounting.index.refresh_index after each pipeline run's
-- validation (batches read by ingest_run_id); batches not yet indexed are read directly.
CREATE TABLE IF NOT EXISTS accounting_index (
    lookup_key BIGINT NOT NULL,          -- 60 bits of taxpayer_ref (event, request_item) or of md5(request_id) (request_chain)
    via VARCHAR NOT NULL CHECK (via IN ('event', 'request_item', 'request_chain')),
    taxpayer_ref VARCHAR,                -- the pseudonym; NULL on request_chain rows
    source_system VARCHAR NOT NULL,
    event_id VARCHAR NOT NULL,
    request_id VARCHAR,
    item_no BIGINT,                      -- the request item (via request_item)
    occurred_at TIMESTAMPTZ,
    event_type VARCHAR,
    disclosing_agency VARCHAR,
    recipient_agency VARCHAR,
    legal_authority VARCHAR,
    authority_id VARCHAR,
    purpose VARCHAR,
    data_elements VARCHAR[],
    record_count BIGINT,
    match_method VARCHAR,                -- how the discloser matched the item (via request_item)
    ingest_run_id VARCHAR,               -- the event's batch
    item_run_id VARCHAR                  -- the request item's batch (via request_item)
);
COMMENT ON TABLE accounting_index IS 'Where each taxpayer (pseudonym) is named: events naming them (via event), request items naming them with the event that carried the item (via request_item), and the pseudonym-less events of requests that carry items (via request_chain, keyed by request). Looked up by lookup_key; see dwatch/accounting.';

CREATE TABLE IF NOT EXISTS accounting_index_runs (
    ingest_run_id VARCHAR NOT NULL,
    indexed_at TIMESTAMPTZ NOT NULL,
    entries BIGINT NOT NULL
);
COMMENT ON TABLE accounting_index_runs IS 'Ingest batches whose rows accounting_index holds; batches not listed are read from the canonical tables at lookup time.';

CREATE TABLE IF NOT EXISTS accounting_index_state (
    sorted_entries BIGINT NOT NULL,      -- rows in lookup_key order at the start of the table
    compacted_at TIMESTAMPTZ,
    unattributed_disclosures BIGINT,     -- disclosures naming no taxpayer and carrying no request items
    unattributed_records BIGINT,         -- their record_count sum
    refreshed_at TIMESTAMPTZ
);
COMMENT ON TABLE accounting_index_state IS 'One row: how much of accounting_index is sorted, and what the accounting cannot attribute to any taxpayer (bulk disclosures without a list of taxpayers).';
