"""A stage's result crosses the process boundary intact (pipeline/results.py): what `run`
returned comes back as the same frozen dataclass, a typed error as the same type, and a file
that does not fit its stage's result class is refused with the field it did not expect."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline import results
from pipeline.errors import DataValidationError, IngestError, RegistryError


def _round_trip(tmp_path: Path, stage: str, result):
    path = tmp_path / f"{stage}.json"
    results.write_result(path, result)
    return results.decode(stage, results.read(path, stage))


def test_results_come_back_as_the_dataclasses_the_stages_returned(tmp_path):
    from pipeline.data.split import SplitResult
    from pipeline.evaluation.evaluate import EvaluateResult
    from pipeline.evaluation.results import (
        EvalMetrics,
        GateDecision,
        GateRecord,
        GateRule,
        RuleKind,
    )
    from pipeline.evaluation.stats import Interval
    from pipeline.registry.register import RegisterResult
    from pipeline.training.base import BaseResult

    rule = GateRule.gain("correctness_gain", Interval(0.31, 0.2, 0.4, 75, 1000), 0.1)
    decision = GateDecision.of([rule, GateRule.check("stop_rate", 0.9, 0.8, RuleKind.MIN)], ["w"])
    metrics = EvalMetrics({"challenger": {"test": {"rouge_l": 0.5}}})
    evaluated = EvaluateResult(metrics, decision, Path("r.html"))
    record = GateRecord(decision, "2", "test", {"test": {"n": 8}})
    registered = RegisterResult("m", 3, "run", ["challenger", "champion"], False, record)
    for stage, result in [
        ("split", SplitResult(Path("data/split"), {"train": 8, "val": 1, "test": 1})),
        ("base", BaseResult(Path("models/base"), True, 700, 1234, 0.25, 9.5, 40, 3.0)),
        ("evaluate", evaluated),
        ("register", registered),
    ]:
        back = _round_trip(tmp_path, stage, result)
        assert back == result and type(back) is type(result)
    assert _round_trip(tmp_path, "register", registered).promoted  # a real RegisterResult
    back = _round_trip(tmp_path, "evaluate", evaluated)
    assert isinstance(back.decision.rules, tuple) and back.decision.rules[0].interval.n == 75
    assert back.metrics.value("challenger", "test", "rouge_l") == 0.5
    assert isinstance(back.report, Path)


def test_a_result_of_another_shape_is_refused_with_the_field(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"result": {"directory": "d", "counts": {}, "accuracy": 1}}))
    with pytest.raises(results.StageFailed, match=r"SplitResult has no field\(s\) \['accuracy'\]"):
        results.decode("split", results.read(path, "split"))


@pytest.mark.parametrize(
    "name, code, expected, exit_code",
    [
        ("DataValidationError", 3, DataValidationError, 3),
        ("MlflowException", 5, RegistryError, 5),  # the CLI's registry code
        ("ZeroDivisionError", 70, results.StageFailed, 70),  # unexpected: the code is kept
    ],
)
def test_a_stage_error_is_raised_again_as_its_type(tmp_path, name, code, expected, exit_code):
    path = tmp_path / "r.json"
    results.write_error(path, code, name, "what went wrong\nthe report")
    with pytest.raises(expected, match="what went wrong") as caught:
        results.read(path, "validate")
    assert type(caught.value) is expected and caught.value.exit_code == exit_code


def test_an_unreadable_result_says_which_file(tmp_path):
    path = tmp_path / "r.json"
    path.write_text('{"result": ')
    with pytest.raises(results.StageFailed, match=f"stage train: no readable result in {path}"):
        results.read(path, "train")


def test_the_cli_reports_a_stages_result_or_error_to_the_named_file(project, monkeypatch):
    from pipeline.__main__ import main
    from pipeline.data.ingest import IngestResult

    path = project / "result.json"
    monkeypatch.setenv(results.ENV, str(path))
    main(["-p", str(project / "params.yaml"), "ingest"])
    back = results.decode("ingest", results.read(path, "ingest"))
    assert isinstance(back, IngestResult) and back.conversations > 0
    report = json.loads((project / "data" / "reports" / "ingest.json").read_text())
    assert back == IngestResult(**report)  # what the stage returned (and wrote) itself

    for raw in (project / "data" / "raw").glob("*.jsonl"):
        raw.write_bytes(b"\xff\xfe\x00garbage")  # not UTF-8: the source cannot be read
    with pytest.raises(SystemExit) as exit_:
        main(["-p", str(project / "params.yaml"), "ingest"])
    with pytest.raises(IngestError) as caught:
        results.read(path, "ingest")
    assert exit_.value.code == IngestError.exit_code and ".jsonl" in str(caught.value)
