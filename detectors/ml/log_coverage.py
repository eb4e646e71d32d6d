"""``ml.log_coverage``: a log silent for a flow that other logs go on recording.

The features (one row per log, flow and day on which *other* logs recorded the flow) are
built here in one DuckDB query; the model is :class:`detectors.ml.coverage.LogCoverageSurprise`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import duckdb
import numpy as np
import polars as pl
from numpy.typing import NDArray
from sklearn.pipeline import Pipeline

from detectors.ml import features
from detectors.ml.base import MAX_EVENT_IDS, MLDetector, ModelContext, _day, _fmt_int
from detectors.ml.coverage import LogCoverageSurprise

# Days a log may take to record a transfer other logs recorded (a receipt after midnight),
# read beyond the window's edges; the store's last days wait this long to be judged.
MARGIN_DAYS = 2

# Days are the sending agency's local days when the registry or config knows its zone,
# else UTC: never the log's own zone, so two logs of one flow cut days the same way.
# A log may record only some of a flow's transfers (a receipt log writes the secure file
# transfers, not the one-record API answers the ledger also lists), so a row is a flow
# *over one channel* as the other logs wrote it, and each channel's days are learned on
# their own. The day counts as recorded here when this log has the flow within a day,
# over any channel (logs spell channels their own way, or not at all), read beyond the
# window's edges (a receipt just after the window covers a disclosure just before its end).
_SQL = """
WITH ev AS (
    SELECT e.source_system, e.event_id, e.occurred_at, e.disclosing_agency, e.recipient_agency,
           coalesce(e.channel, 'unknown') AS channel,
           CAST(timezone(coalesce(az.tz, 'UTC'), e.occurred_at) AS DATE) AS day,
           ($from::TIMESTAMPTZ IS NULL OR e.occurred_at >= $from::TIMESTAMPTZ)
           AND ($to::TIMESTAMPTZ IS NULL OR e.occurred_at < $to::TIMESTAMPTZ) AS in_window
    FROM disclosure_events e
    LEFT JOIN _ZONE_TABLE az ON az.agency = e.disclosing_agency
    WHERE e.event_type IN (SELECT unnest($event_types::VARCHAR[]))
      AND e.disclosing_agency IS NOT NULL AND e.recipient_agency IS NOT NULL
      AND ($flows::VARCHAR[] IS NULL
           OR e.disclosing_agency || chr(31) || e.recipient_agency IN (SELECT unnest($flows)))
      AND ($from::TIMESTAMPTZ IS NULL
           OR e.occurred_at >= $from::TIMESTAMPTZ - to_days(CAST($margin_days AS INTEGER)))
      AND ($to::TIMESTAMPTZ IS NULL OR e.occurred_at < $to::TIMESTAMPTZ + to_days(CAST($margin_days AS INTEGER)))
),
-- A day is judged once every log has had a day to record it: days within margin_days of
-- the newest event in the store wait for the next run (their receipts may not be loaded).
newest AS (
    SELECT CAST(max(occurred_at) AS DATE) - CAST($margin_days AS INTEGER) AS last_day
    FROM disclosure_events WHERE event_type IN (SELECT unnest($event_types::VARCHAR[]))
),
here_days AS (
    SELECT source_system, disclosing_agency, recipient_agency, day, count(*) AS n
    FROM ev GROUP BY ALL
),
log_days AS (
    SELECT source_system, disclosing_agency, recipient_agency, channel, day, count(*) AS n,
           min(occurred_at) AS first_at, max(occurred_at) AS last_at,
           list({'source_system': source_system, 'event_id': event_id}
                ORDER BY occurred_at, event_id) AS events
    FROM ev WHERE in_window AND day <= (SELECT last_day FROM newest) GROUP BY ALL
),
-- Every log that ever recorded the flow (the whole store, not only the window): a log
-- silent for the whole window still has its rows.
logs AS (
    SELECT DISTINCT source_system, disclosing_agency, recipient_agency
    FROM disclosure_events
    WHERE event_type IN (SELECT unnest($event_types::VARCHAR[]))
      AND disclosing_agency IS NOT NULL AND recipient_agency IS NOT NULL
      AND ($flows::VARCHAR[] IS NULL
           OR disclosing_agency || chr(31) || recipient_agency IN (SELECT unnest($flows)))
),
other_days AS (
    SELECT l.source_system, l.disclosing_agency, l.recipient_agency, o.channel, o.day,
           sum(o.n) AS logged_elsewhere,
           list(DISTINCT o.source_system ORDER BY o.source_system) AS other_logs,
           min(o.first_at) AS first_at, max(o.last_at) AS last_at,
           flatten(list(o.events)) AS events_elsewhere
    FROM logs l
    JOIN log_days o
      ON o.disclosing_agency = l.disclosing_agency AND o.recipient_agency = l.recipient_agency
     AND o.source_system <> l.source_system
    GROUP BY l.source_system, l.disclosing_agency, l.recipient_agency, o.channel, o.day
),
-- Logs of one transfer record it at different times (a receipt hours after the
-- disclosure, past midnight): the day counts as recorded here if this log has the flow
-- within a day of it.
rows AS (
    SELECT d.*,
           coalesce((SELECT sum(h.n) FROM here_days h
                     WHERE h.source_system = d.source_system
                       AND h.disclosing_agency = d.disclosing_agency
                       AND h.recipient_agency = d.recipient_agency
                       AND h.day BETWEEN d.day - 1 AND d.day + 1), 0) AS logged_here
    FROM other_days d
),
runs AS (
    SELECT *,
           count(*) FILTER (WHERE logged_here > 0) OVER w AS logged_before
    FROM rows
    WINDOW w AS (PARTITION BY source_system, disclosing_agency, recipient_agency, channel
                 ORDER BY day ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
)
SELECT *,
       list_transform(events_elsewhere, lambda x: x.event_id) AS event_ids,
       hash(source_system || '|' || disclosing_agency || '|' || recipient_agency || '|'
            || channel) AS log_flow_code,
       CAST(logged_here AS UBIGINT) AS logged_here_n,
       -- Each partition is a logged day (none before the first) and the days missed after it.
       CAST(CASE WHEN logged_here > 0 THEN 0
                 ELSE row_number() OVER r - CASE WHEN logged_before > 0 THEN 1 ELSE 0 END
            END AS UBIGINT) AS missed_in_a_row,
       coalesce(min(day) FILTER (WHERE logged_here = 0) OVER r, day) AS run_start
FROM runs
WINDOW r AS (PARTITION BY source_system, disclosing_agency, recipient_agency, channel,
             logged_before ORDER BY day)
ORDER BY source_system, disclosing_agency, recipient_agency, channel, day
""".replace("_ZONE_TABLE", features._ZONE_TABLE)


class LogCoverage(MLDetector):
    """A log that recorded a flow on nearly every day other logs recorded it, silent for a
    run of them (:mod:`detectors.ml.coverage`)."""

    detector_id = "ml.log_coverage"
    title = "Log silent for a flow other logs still record"
    entity_type = "source"
    event_unit = "flow-days"
    # Measured at 1M events (23k flow-days): frame 287 B, fit peak 131 B a row.
    train_row_bytes = 1024
    feature_columns = ("log_flow_code", "logged_here_n", "missed_in_a_row")
    key_columns = ("source_system", "disclosing_agency", "recipient_agency", "channel", "day")
    # One alert per run of missed days, whichever day of it scored highest: a longer run
    # found on a later rescoring updates the same alert.
    # Channels of one flow share the alert: a log that stops recording a flow stops on all.
    run_columns = ("source_system", "disclosing_agency", "recipient_agency", "run_start")
    alert_key_columns = run_columns
    # A run of missed days is counted within the rows scored: scoring a window also reads
    # this many days before it, so a silence that began before the window keeps its length.
    rescore_days = 31
    # The events of each row (most of the query's cost): built for the flagged rows only.
    evidence_columns = ("other_logs", "events_elsewhere", "event_ids")

    def scoring_frame(
        self,
        con: duckdb.DuckDBPyConnection,
        window_from: datetime | None,
        window_to: datetime | None,
        flows: list[str] | None = None,
    ) -> pl.DataFrame:
        return features._frame(
            con,
            _SQL,
            {
                "event_types": self.event_types,
                "from": window_from,
                "to": window_to,
                "margin_days": MARGIN_DAYS,
                "flows": flows,
            },
        )

    def flagged_rows(
        self,
        con: duckdb.DuckDBPyConnection,
        flagged: pl.DataFrame,
        window_from: datetime | None,
        window_to: datetime | None,
    ) -> pl.DataFrame:
        """The whole rows of ``flagged``'s flows: a row reads only its own flow's events
        (and the store's newest day), so reading those flows alone builds them as the
        whole query does."""
        flows = (flagged["disclosing_agency"] + chr(31) + flagged["recipient_agency"]).unique()
        return self.scoring_frame(con, window_from, window_to, sorted(flows.to_list()))

    def build_pipeline(self) -> Pipeline:
        return Pipeline([("model", LogCoverageSurprise(**self.settings.params))])

    def alert_rows(
        self, flagged: pl.DataFrame, scores: NDArray[np.float64], model: Pipeline, ctx: ModelContext
    ) -> pl.DataFrame:
        """One alert per run of missed days: its latest (strongest) day, keyed by the run."""
        if flagged.height:
            ranked = flagged.with_columns(pl.Series("_score", scores)).with_row_index("_i")
            keep = (
                ranked.sort("_score", descending=True, maintain_order=True)
                .unique(list(self.run_columns), keep="first", maintain_order=True)
                .sort("_i")
            )
            flagged = keep.drop("_i", "_score")
            scores = keep["_score"].to_numpy()
        return super().alert_rows(flagged, scores, model, ctx)

    def explain(
        self, flagged: pl.DataFrame, scores: NDArray[np.float64], model: Pipeline, ctx: ModelContext
    ) -> tuple[list[str], list[dict[str, Any]]]:
        if flagged.height == 0:
            return [], []
        est: LogCoverageSurprise = model[-1]
        cov = est.coverage(flagged.select(self.feature_columns))
        texts, evidence = [], []
        for i, row in enumerate(flagged.iter_rows(named=True)):
            missed = int(row["missed_in_a_row"])
            others = ", ".join(row["other_logs"])
            a, b = float(cov["a"][i]), float(cov["b"][i])
            n_days = _fmt_int(cov["n_days"][i])
            texts.append(
                f"{row['source_system']} recorded none of {row['disclosing_agency']}'s transfers to "
                f"{row['recipient_agency']} on {missed} day(s) in a row on which other logs "
                f"({others}) recorded that flow over {row['channel']}, from "
                f"{_day(row['run_start'])} to {_day(row['day'])} "
                f"({_fmt_int(row['logged_elsewhere'])} event(s) elsewhere on the last of them). "
                f"In its training window it recorded this flow on "
                f"{_fmt_int(cov['logged_days'][i])} of the {n_days} days other logs recorded it "
                f"over {row['channel']}, missing about {a:.1%} of the days after a recorded one "
                f"and {b:.1%} of those after a missed one, so a run of {missed} is expected "
                f"about {float(cov['expected_runs'][i]):.2g} time(s) in {n_days} such days "
                f"({float(cov['surprise'][i]):.1f} nats of surprise). "
                f"{ctx.floor_words(scores[i])}"
            )
            evidence.append(
                {
                    "missed_days_in_a_row": missed,
                    "run_start": _day(row["run_start"]),
                    "other_logs": list(row["other_logs"]),
                    "channel": row["channel"],
                    "events_elsewhere": int(row["logged_elsewhere"]),
                    # The flow's events that day, each with its own log (ids repeat).
                    "events": row["events_elsewhere"][:MAX_EVENT_IDS],
                    "baseline": {
                        "compared_with": "this log's own record of the flow in training",
                        "days_flow_recorded_elsewhere": int(cov["n_days"][i]),
                        "days_this_log_recorded_it": int(cov["logged_days"][i]),
                        "miss_after_recorded_day": round(a, 4),
                        "miss_after_missed_day": round(b, 4),
                        "runs_this_long_expected": float(f"{float(cov['expected_runs'][i]):.3g}"),
                    },
                    "unusual_features": [
                        {
                            "feature": "missed_days_in_a_row",
                            "surprise_nats": round(float(cov["surprise"][i]), 2),
                        }
                    ],
                }
            )
        return texts, evidence

    def alert_columns(self, flagged: pl.DataFrame) -> pl.DataFrame:
        return flagged.select(
            pl.col("source_system").alias("entity_id"),
            "disclosing_agency",
            "recipient_agency",
            pl.lit(None, dtype=pl.String).alias("request_id"),
            pl.lit(None, dtype=pl.String).alias("actor_id"),
            "source_system",
            pl.col("run_start").cast(pl.Datetime("us", "UTC")).alias("window_start"),
            pl.col("last_at").alias("window_end"),
            pl.col("event_ids").list.head(MAX_EVENT_IDS),
            pl.col("events_elsewhere").list.len().cast(pl.Int64).alias("event_count"),
            pl.lit(None, dtype=pl.Int64).alias("subjects_affected"),
            pl.lit(None, dtype=pl.Int64).alias("records_affected"),
            pl.lit([], dtype=pl.List(pl.String)).alias("citations"),
        )
