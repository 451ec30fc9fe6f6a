"""The report's coverage lines say something for every set they name."""

from __future__ import annotations

from pipeline.evaluation import report


def test_a_set_without_a_near_duplicate_note_gets_no_empty_line():
    # probe sets are not checked for near-duplicates (their note is ""): the report once
    # printed "Set `safety_independent`: ." for them
    ctx = report.Context(
        near_duplicates={"recall": "3 of 9 with a near-duplicate question", "safety": ""}
    )
    lines = report._coverage_lines(ctx)
    assert lines == ["Set `recall`: 3 of 9 with a near-duplicate question."]
    assert not [line for line in lines if line.rstrip(".").endswith(":")]
