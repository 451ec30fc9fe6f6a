"""Typed evaluation results (pipeline/evaluation/results.py) and the MLflow names built from
them (pipeline/evaluation/keys.py): rules decide their own status, reports/gate.json keeps its
shape and reads back, and a name is read the way it was written."""

from __future__ import annotations

import json
import pickle

import pytest

from pipeline.errors import DataValidationError
from pipeline.evaluation import keys
from pipeline.evaluation.results import (
    Candidate,
    EvalMetrics,
    GateDecision,
    GateRecord,
    GateRule,
    Metric,
    RuleKind,
    RuleStatus,
)
from pipeline.evaluation.stats import Interval


def _iv(low: float, high: float) -> Interval:
    return Interval((low + high) / 2, low, high, 40, 1000)


def test_each_constructor_decides_the_status_a_wrong_value_fails():
    assert GateRule.check("stop_rate", 0.95, 0.9, RuleKind.MIN).status is RuleStatus.PASS
    # known wrong: looping answers above the ceiling, a stop rate under the floor
    loops = GateRule.check("repetition_rate", 0.4, 0.1, RuleKind.MAX)
    assert (loops.status, loops.passed) == (RuleStatus.FAIL, False)
    assert not GateRule.check("stop_rate", 0.2, 0.9, "min").passed  # the old spelling still works
    assert GateRule.gain("g", _iv(0.35, 0.6), 0.3).status is RuleStatus.PASS
    assert GateRule.gain("g", _iv(0.0, 0.2), 0.3).status is RuleStatus.FAIL
    unsure = GateRule.gain("g", _iv(0.2, 0.4), 0.3)
    assert unsure.status is RuleStatus.INSUFFICIENT and not unsure.passed
    assert GateRule.drop("d", _iv(-0.1, 0.0), 0.05).status is RuleStatus.PASS
    assert GateRule.drop("d", _iv(0.1, 0.3), 0.05).status is RuleStatus.FAIL
    aside = GateRule.not_judged("rouge_l_gain_over_base", 0.03, RuleKind.MIN, "free text")
    assert aside.passed and aside.status.label == "not counted"
    with pytest.raises(ValueError):
        GateRule("x", 1.0, 1.0, "above", "pass")  # not a kind


def test_a_decision_promotes_only_when_every_rule_passes_and_names_the_failures():
    rules = [GateRule.gain("g", _iv(0.2, 0.4), 0.3), GateRule.check("s", 1.0, 0.9, RuleKind.MIN)]
    d = GateDecision.of(rules)
    assert not d.promote and d.failed == ["g (not enough evidence)"]
    assert GateDecision.of(rules[1:]).promote
    assert d.rule("s") is rules[1]


def test_gate_json_keeps_its_shape_and_reads_back(tmp_path):
    rules = (
        GateRule.gain("correctness_gain_over_base", _iv(0.2, 0.4), 0.3, "recall: 40 answers"),
        GateRule.check("stop_rate", 0.95, 0.9, RuleKind.MIN),
    )
    record = GateRecord(GateDecision.of(rules, ["few questions"]), "3", "recall")
    path = tmp_path / "gate.json"
    path.write_text(json.dumps(record.to_dict()))
    data = json.loads(path.read_text())
    assert list(data["rules"][0]) == [
        "rule",
        "value",
        "threshold",
        "passed",
        "kind",
        "status",
        "interval",
        "evidence",
    ]
    assert data["rules"][0]["status"] == "insufficient" and data["rules"][0]["passed"] is False
    assert data["rules"][0]["interval"] == {
        "mean": 0.3,
        "low": 0.2,
        "high": 0.4,
        "n": 40,
        "resamples": 1000,
    }
    assert GateRecord.read(path) == record
    assert rules[0].tag() == "0.3 [0.2, 0.4] (fail: not enough evidence; >= 0.3)"
    assert rules[1].tag() == "0.95 (pass; >= 0.9)"


def test_a_gate_file_of_another_shape_names_the_file(tmp_path):
    path = tmp_path / "gate.json"
    path.write_text(json.dumps({"promote": True, "rules": [{"rule": "x", "value": 1}]}))
    with pytest.raises(DataValidationError, match=rf"{path}: not a gate decision.*threshold"):
        GateRecord.read(path)


def test_metrics_are_read_only_pickle_and_keep_the_json_shape():
    tree = {"challenger": {"recall": {"correctness": 0.8, "n": 40}}}
    m = EvalMetrics(tree)
    assert m.value(Candidate.CHALLENGER, "recall", Metric.CORRECTNESS) == 0.8
    assert m.value(Candidate.CHAMPION, "recall", Metric.CORRECTNESS) is None
    assert m["challenger"]["recall"]["n"] == 40 and m.as_dict() == tree
    with pytest.raises(TypeError):
        m["challenger"]["recall"]["correctness"] = 1.0  # type: ignore[index]
    assert pickle.loads(pickle.dumps(m)).as_dict() == tree


def test_registry_reads_back_the_names_evaluate_logs():
    metrics = {
        "base": {"recall": {"correctness": 0.1, "rouge_l": 0.2}},
        "challenger": {
            "recall": {"correctness": 0.8, "rouge_l": 0.7},
            "test": {"correctness": 0.3, "rouge_l": 0.4},
            "safety": {"pass_rate": 0.9},
        },
    }
    logged = keys.flat_metrics(metrics)
    assert logged[keys.metric(Candidate.CHALLENGER, "recall", Metric.ROUGE_L)] == 0.7
    tags = {keys.PRIMARY_SET_TAG: "test"}
    assert keys.summary(logged, tags, "recall") == keys.Summary("test", 0.3, 0.4, 0.9)
    # a run logged before the primary set was tagged: the configured one
    assert keys.summary(logged, {}, "recall") == keys.Summary("recall", 0.8, 0.7, 0.9)
    # names spelled another way (the old `registry list` read these) are not numbers
    old = {"eval/challenger/rouge_l": 0.7, "eval/challenger/correctness": 0.8}
    assert keys.summary(old, {}, "recall") == keys.Summary("recall", None, None, None)
    assert keys.gate_interval("stop_rate", "low") == "gate/stop_rate/low"
    with pytest.raises(ValueError):
        keys.gate_interval("stop_rate", "median")
