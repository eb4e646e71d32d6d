-- The agency spellings the events hold, per ingest batch (issue 18).
--
-- ML scoring and training look each acting agency's time zone up in the registry, for
-- codes written any way (registry_recipient_resolution folds case, punctuation and
-- aliases). That view lists every agency spelling the events hold: two scans of every
-- event, in every run that scores (a 1% run at 100M read 200M values for about 80
-- spellings). This table keeps, per events batch, the distinct spellings of its
-- disclosing and recipient agencies (and one row with agency NULL, so a batch with none is
-- known to be read). A run reads only the batches not listed yet; a batch's rows removed
-- later (validation's quarantine) leave their spellings here, which is safe: the zone
-- lookup is joined on the events' own agency, so a spelling no event holds is never used.
-- Read only when the ledger accounts for every event (sum of rows_loaded of loaded events
-- batches = the events held); otherwise the view is read. Kept by detectors/ml/spellings.py.
CREATE TABLE IF NOT EXISTS ml_agency_spellings (
    ingest_run_id VARCHAR NOT NULL,
    agency VARCHAR
);
COMMENT ON TABLE ml_agency_spellings IS 'Per events batch, the distinct disclosing and recipient agency spellings its rows held when first read (agency NULL: the batch''s marker row); the ML time-zone lookup resolves these instead of reading every event.';
