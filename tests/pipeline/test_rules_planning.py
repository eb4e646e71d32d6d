"""The plan for the rules: new batches and what they touch when nothing else changed,
all history (with the reason) when the rules, the registry or judged rows changed."""

from __future__ import annotations

from pathlib import Path

from pipeline_helpers import ledger_rows, write_events

from dwatch.pipeline import PipelineConfig, run_pipeline
from dwatch.store import connect


def _jan(days: range, start_seq: int = 1) -> list[dict[str, object]]:
    return ledger_rows(
        "ca-ftb-fti-log", [(f"2026-01-{d:02d}", 10) for d in days], start_seq=start_seq
    )


def _rules_detail(summary: object) -> dict[str, object]:
    step = summary.step("detect_rules")  # type: ignore[attr-defined]
    assert step is not None and step.status == "ok", step
    return dict(step.detail)


def test_new_batches_alone_are_judged_unless_the_rules_changed(
    tmp_path: Path, db_path: Path, config: PipelineConfig
) -> None:
    inbox = tmp_path / "inbox"
    write_events(inbox / "a.csv", _jan(range(1, 6)))
    first = run_pipeline(db_path, [inbox], config=config, trigger="test")
    assert _rules_detail(first)["why"] == "no earlier successful run"

    write_events(inbox / "b.csv", _jan(range(6, 9), start_seq=6))
    second = run_pipeline(db_path, [inbox], config=config, trigger="test")
    detail = _rules_detail(second)
    assert detail["judged"] == "new batches and what they touch", detail
    assert str(detail["revisits"][0]).startswith("new: 1 batch(es)")  # type: ignore[index]
    assert any("rules read new: 1 batch(es)" in note for note in second.notes)

    # A judgement under other rules (here: recorded so) makes the next run judge all history.
    con = connect(db_path)
    try:
        con.execute("UPDATE runs SET rules_version = 'other-rules'")
    finally:
        con.close()
    write_events(inbox / "c.csv", _jan(range(9, 11), start_seq=9))
    third = run_pipeline(db_path, [inbox], config=config, trigger="test")
    detail = _rules_detail(third)
    assert detail["judged"] == "all history"
    assert detail["why"] == "the rules changed since the last judgement"
