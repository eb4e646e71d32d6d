"""What ``dwatch evaluate`` prints and writes: the measured figures as tables and JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl


@dataclass
class Evaluation:
    params: dict[str, Any]
    scenarios: pl.DataFrame  # one row per scenario
    detectors: pl.DataFrame  # one row per detector (rules, each ML detector, combined)
    pr_auc: pl.DataFrame  # scenario x ML detector
    notes: list[str] = field(default_factory=list)
    # findings on lawful rows: rule alerts touching no scenario by rule, validation gaps
    lawful: dict[str, Any] = field(default_factory=dict)

    def render(self) -> str:
        def table(frame: pl.DataFrame) -> str:
            cols = frame.columns
            rows = [[_cell(v) for v in r] for r in frame.iter_rows()]
            widths = [
                max(len(c), *(len(r[i]) for r in rows)) if rows else len(c)
                for i, c in enumerate(cols)
            ]

            def line(vals: list[str]) -> str:
                return (
                    "| " + " | ".join(v.ljust(w) for v, w in zip(vals, widths, strict=True)) + " |"
                )

            return "\n".join(
                [line(cols), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)]
            )

        p = self.params
        head = (
            f"Detection quality on generated logs: {p['events']:,} events requested "
            f"({p['events_loaded']:,} loaded), seed {p['seed']}, alert budget {p['budget']}, "
            f"legitimate bulk = transfers of >= {p['bulk_min_records']:,} records "
            f"({p['legit_bulk_events']:,} events). ML scored by time-split cross-fitting "
            f"(train {p['folds'][0]}, score the other half; and the reverse)."
        )
        parts = [
            head,
            "",
            "Per scenario",
            table(self.scenarios),
            "",
            "Per detector",
            table(self.detectors),
            "",
            "PR-AUC per scenario and ML detector (rows of other scenarios excluded)",
            table(self.pr_auc),
        ]
        if self.lawful:
            parts += ["", self.lawful["summary"]]
            parts += ["rule alerts touching no scenario, by rule:"]
            parts += [f"  {d}: {n}" for d, n in self.lawful["rules_false_by_detector"].items()]
            parts += ["highest-scored ML alerts touching no scenario:"]
            parts += [
                f"  {d}: {x['score']} (floor {x['threshold']}) {x['entity']} {x['events']}"
                for d, examples in self.lawful.get("ml_false_examples", {}).items()
                for x in examples[:3]
            ] or ["  none"]
            parts += ["coverage gaps per source (on lawful rows):"]
            parts += [
                f"  {g['source_system']}: {g['expectation']} x{g['gaps']} ({g['on_lawful_rows']})"
                for g in self.lawful["coverage"]
            ] or ["  none"]
        if self.notes:
            parts += ["", *(f"note: {n}" for n in self.notes)]
        return "\n".join(parts)

    def to_json(self) -> str:
        return json.dumps(
            {
                "params": self.params,
                "scenarios": self.scenarios.to_dicts(),
                "detectors": self.detectors.to_dicts(),
                "pr_auc": self.pr_auc.to_dicts(),
                "notes": self.notes,
                "lawful": self.lawful,
            },
            indent=2,
            default=str,
        )


def _cell(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return "n/a" if np.isnan(value) else f"{value:.3f}"
    return str(value)
