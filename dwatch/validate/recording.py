"""Recording results in Great Expectations: its own records and its Data Docs.

Every outcome is already a ``validation_results`` row (``report.write_outcomes``). For Great
Expectations, each suite of the run is stored as a GX ExpectationSuite and the run's
verdicts as one GX ExpectationSuiteValidationResult per suite (counts summed over the
batches, each batch's own counts in validation_results), from which GX renders the
Data Docs; the pages are then made to open offline (``docs``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import great_expectations as gx
from great_expectations.core import (
    ExpectationSuiteValidationResult,
    ExpectationValidationResult,
)
from great_expectations.core.run_identifier import RunIdentifier
from great_expectations.data_context.types.resource_identifiers import (
    ExpectationSuiteIdentifier,
    ValidationResultIdentifier,
)

from dwatch.errors import DWatchError
from dwatch.validate.gx_duckdb import make_context
from dwatch.validate.report import Outcome, ValidationReport
from dwatch.validate.suites import Check


def start_gx(docs_dir: Path) -> Any:
    """GX's in-memory context, or a DWatchError saying GX could not start."""
    try:
        return make_context(docs_dir)
    except DWatchError:
        raise
    except Exception as exc:
        raise DWatchError(
            f"Great Expectations could not start: {exc}",
            where="dwatch.validate.gx_duckdb.make_context",
            fix="check the great-expectations installation (make install)",
        ) from exc


def record_in_gx(
    context: Any,
    suites: dict[str, list[Check]],
    report: ValidationReport,
) -> None:
    """Each suite as a GX suite, and the run's verdicts on it as one GX validation result."""
    outcomes = [o for batch in report.all_batches for o in batch.outcomes]
    record_outcomes(context, suites, outcomes, len(report.batches), report.validation_run_id)


def record_outcomes(
    context: Any,
    suites: dict[str, list[Check]],
    outcomes: list[Outcome],
    batch_count: int,
    validation_run_id: str,
) -> None:
    """``record_in_gx`` from the outcomes alone (what a Data Docs job reads back)."""
    run_id = RunIdentifier(run_name=validation_run_id, run_time=datetime.now(UTC))
    by_suite: dict[str, dict[str, list[Outcome]]] = {}
    for o in outcomes:
        by_suite.setdefault(o.suite, {}).setdefault(o.expectation, []).append(o)
    batches = f"{batch_count}_batches"
    for name, checks in suites.items():
        suite = context.suites.add_or_update(
            gx.ExpectationSuite(name=name, expectations=[c.build() for c in checks])
        )
        found = by_suite.get(name, {})
        results = [
            _expectation_result(check, expectation, found.get(check.name, []))
            for check, expectation in zip(checks, suite.expectations, strict=True)
        ]
        suite_result = ExpectationSuiteValidationResult(
            success=all(r.success for r in results),
            results=results,
            suite_name=name,
            statistics={
                "evaluated_expectations": len(results),
                "successful_expectations": sum(r.success for r in results),
                "unsuccessful_expectations": sum(not r.success for r in results),
                "success_percent": 100.0 * sum(r.success for r in results) / max(len(results), 1),
            },
            meta={"run_id": run_id, "validation_time": run_id.run_time, "dwatch": batches},
            batch_id=batches,
        )
        suite_id = ExpectationSuiteIdentifier(name=name)
        context.validation_results_store.store_validation_results(
            suite_validation_result=suite_result,
            suite_validation_result_identifier=ValidationResultIdentifier(
                expectation_suite_identifier=suite_id, run_id=run_id, batch_identifier=batches
            ),
            expectation_suite_identifier=suite_id,
        )


def _expectation_result(
    check: Check, expectation: Any, outcomes: list[Outcome]
) -> ExpectationValidationResult:
    """One expectation's verdict over every batch it ran on (passed when all passed), in
    the shape GX's own results have (its Data Docs renderers read these keys)."""
    unexpected = sum(o.unexpected_count or 0 for o in outcomes if not o.success)
    per_cell = {(o.ingest_run_id, o.source_system): o for o in outcomes}
    elements = sum(o.element_count or 0 for o in per_cell.values())
    failed = sorted({str(o.ingest_run_id or "store") for o in outcomes if not o.success})
    result: dict[str, Any]
    if check.scope == "row":
        share = 100.0 * unexpected / elements if elements else 0.0
        result = {
            "element_count": elements,
            "unexpected_count": unexpected,
            "unexpected_percent": share,
            "unexpected_percent_total": share,
            "unexpected_percent_nonmissing": share,
            "missing_count": 0,
            "missing_percent": 0.0,
            "partial_unexpected_list": [],  # counts only: no values copied into the pages
        }
    else:
        result = {"observed_value": unexpected}
    return ExpectationValidationResult(
        success=bool(outcomes) and all(o.success for o in outcomes),
        expectation_config=expectation.configuration,
        result=result,
        meta={"batches": len({o.ingest_run_id for o in outcomes}), "failed_batches": failed[:50]},
    )
