-- The events that can link a request chain, kept between runs (issue 18): every request,
-- disclosure and receipt with a request id, narrow, with its recipient as a registry code.
-- A finding's chain joins these instead of every event. A run judging new batches appends
-- theirs (each row is derived from its own event alone); the rule_state ledger and the
-- 'chain' family's registry and code version decide when it is rebuilt from all history
-- (detectors.chain_state). Values only, no row ids: DuckDB renumbering rows cannot move it.
CREATE TABLE IF NOT EXISTS rule_chain_rows (
    request_id VARCHAR,
    recipient_code VARCHAR,              -- the recipient as the registry resolves it
    source_system VARCHAR,
    event_id VARCHAR,
    event_type VARCHAR,
    taxpayer_ref VARCHAR                 -- the pseudonym; raw identifiers are never stored
);
COMMENT ON TABLE rule_chain_rows IS 'Requests, disclosures and receipts with a request id (narrow, recipient resolved under the registry version in rule_state family chain): the links of the request chains findings name; appended from new batches, rebuilt when the ledger or registry says so.';
