"""ML detectors: scikit-learn estimators over features aggregated in DuckDB.

``estimators`` holds the models and transformers (no DuckDB, no alerts); ``features``
builds the per-detector feature frames in SQL; ``detectors`` declares each detector
(its features, pipeline and explanation); ``adapter`` turns scores into alert rows;
``registry`` saves and loads fitted models (skops) and the ``models`` table.
"""
