-- Pipeline runs and watermarks (issue 8, written by dwatch.pipeline and dwatch.watermark).
-- A run is one pass of ingest -> validate -> detect -> report -> notify -> publish. The
-- watermark tables make runs incremental (only new files, only the event-time windows new
-- data touches) and gap-free (work a failed run left behind is picked up by the next).

CREATE TABLE IF NOT EXISTS runs (
    run_id VARCHAR PRIMARY KEY,              -- run_<UTC yyyymmddThhmmss>_<8 hex>
    trigger VARCHAR NOT NULL,                -- cli | prefect | schedule | demo | test
    flow_run_id VARCHAR,                     -- the Prefect flow run, when run by Prefect
    status VARCHAR NOT NULL,                 -- running | succeeded | partial | failed | abandoned
    started_at TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ,
    duration_seconds DOUBLE,
    inputs VARCHAR[],                        -- paths/globs the run was asked to read
    files_seen BIGINT,                       -- files found under the inputs
    files_new BIGINT,                        -- files read (new or changed since the last run)
    files_unchanged BIGINT,                  -- files skipped by the watermark without reading
    files_failed BIGINT,
    events_loaded BIGINT,
    items_loaded BIGINT,
    rows_quarantined BIGINT,
    late_events BIGINT,                      -- new events older than their source's watermark
    batches_processed BIGINT,                -- ingest batches this run validated and detected
    windows_processed BIGINT,                -- event-time windows re-judged (new, late, gap, backfill)
    gaps_filled BIGINT,                      -- windows left open by earlier failed or skipped runs
    missed_schedules BIGINT,                 -- scheduled fire times with no successful run
    backfill_from TIMESTAMPTZ,
    backfill_to TIMESTAMPTZ,
    rules_version VARCHAR,                   -- hash of detectors/rules/*
    registry_version VARCHAR,
    model_versions JSON,                     -- {detector_id: version}
    validation_incomplete BOOLEAN,           -- validation could not judge every batch this run
    coverage_gaps BIGINT,                    -- open coverage gaps after validation
    alerts_new BIGINT,
    alerts_updated BIGINT,
    alerts_reopened BIGINT,
    alerts_retracted BIGINT,
    alerts_open BIGINT,                      -- open alerts after the run
    report_path VARCHAR,
    data_docs_path VARCHAR,
    snapshot_path VARCHAR,
    steps JSON,                              -- [{step, status, seconds, message, detail}] in order
    error VARCHAR,                           -- what stopped a failed run
    notes VARCHAR[]                          -- what the run noticed (gaps, late events, missing steps)
);
COMMENT ON TABLE runs IS 'One row per pipeline run: inputs, counts, versions of rules/models/registry, alerts new and retracted, duration, status and each step''s result.';

-- Every file the pipeline has read, so unchanged files are skipped without reading them.
CREATE TABLE IF NOT EXISTS source_files (
    path VARCHAR PRIMARY KEY,                -- absolute path
    size_bytes BIGINT NOT NULL,
    mtime_ns BIGINT NOT NULL,
    content_sha256 VARCHAR,
    ingest_run_id VARCHAR,                   -- the batch that loaded this content (ingest_runs.run_id)
    status VARCHAR NOT NULL,                 -- loaded | duplicate_content | failed
    first_seen_run_id VARCHAR,
    last_read_run_id VARCHAR,
    last_read_at TIMESTAMPTZ
);
COMMENT ON TABLE source_files IS 'Files the pipeline has read (path, size, mtime, content hash). A file whose size and mtime are unchanged is not read again.';

-- Which pipeline run took each ingest batch into detection. A batch with no row here is
-- pending: loaded (by the pipeline or by `dwatch ingest`) but not yet detected.
CREATE TABLE IF NOT EXISTS run_batches (
    ingest_run_id VARCHAR PRIMARY KEY,
    claimed_by_run_id VARCHAR NOT NULL,
    claimed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    judged_by_run_id VARCHAR             -- the run that finished judging it (watermark advanced)
);

-- Event-time windows (whole UTC days per source) that must be judged again: opened when new
-- or late events land in them, by a backfill, or left open by a run that failed; closed by
-- the run that judged them. Open windows are the gaps the next run fills.
CREATE SEQUENCE IF NOT EXISTS run_window_seq START 1;
CREATE TABLE IF NOT EXISTS run_windows (
    window_no BIGINT PRIMARY KEY DEFAULT nextval('run_window_seq'),
    source_system VARCHAR NOT NULL,          -- '*' for a backfill over every source
    window_start TIMESTAMPTZ NOT NULL,       -- inclusive
    window_end TIMESTAMPTZ NOT NULL,         -- exclusive
    reason VARCHAR NOT NULL,                 -- new_events | late_events | backfill
    events BIGINT,
    opened_by_run_id VARCHAR NOT NULL,
    opened_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    closed_by_run_id VARCHAR,
    closed_at TIMESTAMPTZ
);
COMMENT ON TABLE run_windows IS 'Event-time windows to (re)judge: new, late or backfilled data. closed_by_run_id IS NULL = still to do (a gap the next run fills).';

-- The watermark per source: how far in event time the pipeline has judged it.
CREATE TABLE IF NOT EXISTS source_watermarks (
    source_system VARCHAR PRIMARY KEY,
    events_through TIMESTAMPTZ,              -- latest occurred_at judged; later arrivals before it are late
    events_judged BIGINT,
    last_run_id VARCHAR,
    updated_at TIMESTAMPTZ
);
COMMENT ON TABLE source_watermarks IS 'Per source: the latest event time judged by a successful run. New events older than this are late and re-open their windows.';

-- Latest run at a glance.
CREATE OR REPLACE VIEW run_history AS
SELECT run_id, status, trigger, started_at, round(duration_seconds, 1) AS seconds,
       files_new, events_loaded, rows_quarantined, late_events, windows_processed, gaps_filled,
       alerts_new, alerts_retracted, alerts_open, validation_incomplete, registry_version,
       rules_version, error
FROM runs
ORDER BY started_at DESC;
COMMENT ON VIEW run_history IS 'Pipeline runs, newest first, with their main counts.';

-- Disclosures by recipient and day (UTC): events, records and distinct subjects.
CREATE OR REPLACE VIEW disclosures_by_recipient_day AS
SELECT recipient_agency,
       CAST(occurred_at AS DATE) AS day,
       event_type,
       count(*) AS events,
       sum(record_count) AS records,
       count(DISTINCT taxpayer_ref) AS subjects_named,
       count(DISTINCT source_system) AS sources
FROM disclosure_events
WHERE event_type IN ('disclosure', 'redisclosure')
GROUP BY ALL;
COMMENT ON VIEW disclosures_by_recipient_day IS 'Disclosure and redisclosure events per recipient agency and UTC day: events, records, distinct single-subject taxpayer refs, sources.';
