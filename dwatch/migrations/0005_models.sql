-- The ML model registry: every fitted model `dwatch train` saved, with what it was fitted
-- on. `dwatch detect` scores with the latest model per detector (max created_at) and never
-- retrains; alerts name the model version in detector_version.
CREATE TABLE IF NOT EXISTS models (
    model_id VARCHAR PRIMARY KEY,        -- '<detector_id>@<version>'
    detector_id VARCHAR NOT NULL,        -- e.g. ml.actor_peers (alerts.detector_id)
    version VARCHAR NOT NULL,            -- UTC fit time + short hash of the training data
    train_from TIMESTAMPTZ,              -- training window [train_from, train_to)
    train_to TIMESTAMPTZ,
    training_rows BIGINT,                -- feature rows the model was fitted on
    features VARCHAR[],                  -- input feature columns, in order
    parameters JSON,                     -- estimator parameters (Pipeline.get_params, scalars only)
    training_data_sha256 VARCHAR,        -- hash of the training feature frame (Arrow IPC)
    threshold DOUBLE,                    -- anomaly score at/above which an alert is raised (higher = more anomalous)
    threshold_percentile DOUBLE,         -- the percentile of training scores it came from (NULL when not percentile-based)
    metadata JSON,                       -- baselines used in explanations, library versions
    path VARCHAR NOT NULL,               -- the saved model (skops)
    file_sha256 VARCHAR NOT NULL,        -- checked before loading
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
COMMENT ON TABLE models IS 'Fitted ML models: version, training window, features, parameters, training-data hash, threshold and file. Scoring uses the latest per detector.';
