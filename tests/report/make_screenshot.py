"""Take the README screenshot: a report built from generated-looking data, opened in Chromium.

    .venv/bin/python tests/report/make_screenshot.py docs/report-screenshot.png

Uses the same seed data as the tests (tests/report/report_seed.py): monthly bulk flows to
SSA and state tax agencies, the August bulk address transfer with 42,695 violations, uses of
the data after a court order, model alerts, a log-integrity gap and a suppression.
"""

from __future__ import annotations

import os
import sys
import tempfile
from datetime import date, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1]))

from browser import screenshot  # noqa: E402
from report_seed import seed_store, stand_in_registry  # noqa: E402

from dwatch.report.citations import directory_from_registry  # noqa: E402
from dwatch.report.render import build_report, render_html  # noqa: E402
from dwatch.report.suppressions import add_suppression  # noqa: E402
from dwatch.report.triage import record_decision  # noqa: E402
from dwatch.store import connect  # noqa: E402


def main(out: Path) -> None:
    os.environ.setdefault("DWATCH_PSEUDONYM_KEY", "screenshot-key-not-secret-0123456789")
    with tempfile.TemporaryDirectory(prefix="dwatch-shot-") as tmp:
        con = connect(Path(tmp) / "store.duckdb")
        seed_store(con)
        add_suppression(
            con,
            criteria={"detector_id": "iforest_recipient_mix", "recipient_agency": "CA-FTB"},
            reason="annual re-extract agreed with the state (ticket 4411)",
            owner="compliance.lead",
            expires_on=date.today() + timedelta(days=60),
        )
        directory = directory_from_registry(stand_in_registry(), source="policy registry")
        first = build_report(con, Path(tmp) / "reports", formats=["html"], directory=directory)
        ssa_case = next(c.case_id for c in first.data.cases if c.recipient_agency == "SSA")
        record_decision(
            con, ssa_case, "acknowledged", decided_by="a.analyst", note="checking the January file"
        )
        result = build_report(con, Path(tmp) / "reports", formats=["html"], directory=directory)
        # The second run sees no new cases; show the first run's "new" marks as an analyst would.
        for case in result.data.cases:
            case.is_new = case.case_id in first.cases.new_case_ids
        result.data.summary["cases_new"] = len(first.cases.new_case_ids)
        assert result.html_path is not None
        result.html_path.write_text(render_html(result.data), encoding="utf-8")
        out.parent.mkdir(parents=True, exist_ok=True)
        screenshot(result.html_path, out, width=1280, height=1700)
        con.close()
    print(f"wrote {out}")


if __name__ == "__main__":
    main(
        Path(sys.argv[1])
        if len(sys.argv) > 1
        else HERE.parents[1] / "docs" / "report-screenshot.png"
    )
