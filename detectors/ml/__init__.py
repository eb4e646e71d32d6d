"""ML detectors: scikit-learn estimators over features aggregated in DuckDB.

``estimators`` holds the models and feature transformers (no DuckDB, no alerts);
``features`` builds the per-detector feature frames in SQL and hands them over as Arrow;
``detectors`` declares each detector (its features, pipeline and explanations) and the
adapter that turns scores into alert rows; ``registry`` saves and loads fitted models
(skops), the ``models`` table and the ML config; ``run`` trains and scores
(``train_models``, ``score_models``). Alert scores read *higher = more anomalous*.
"""
