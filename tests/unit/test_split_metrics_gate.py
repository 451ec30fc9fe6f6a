import pytest

from pipeline.config import GateConfig, SplitConfig
from pipeline.gate import decide
from pipeline.split import assign
from pipeline.textmetrics import bleu4, repetition, rouge_l, rouge_n, words

SPLIT = SplitConfig(
    seed=42, val_fraction=0.1, test_fraction=0.2, always_train=("感冒有什么症状？",)
)


def test_split_is_deterministic_pinned_and_roughly_proportional():
    questions = [f"问题{i}？" for i in range(2000)]
    first = [assign(q, SPLIT) for q in questions]
    assert first == [assign(q, SPLIT) for q in questions]
    assert 0.15 < first.count("test") / 2000 < 0.25 and 0.06 < first.count("val") / 2000 < 0.14
    assert assign("感冒有什么症状？", SPLIT) == "train"
    other_seed = SplitConfig(**{**SPLIT.model_dump(), "seed": 7})
    assert first != [assign(q, other_seed) for q in questions]


def test_character_rouge_l_and_bleu4():
    assert rouge_l("流鼻涕和咳嗽", "流鼻涕和咳嗽") == pytest.approx(1.0)
    assert rouge_l("发烧", "咳嗽") == 0.0
    # LCS("感冒咳嗽", "感冒发烧咳嗽") = 4: precision 1, recall 4/6 -> F1 0.8
    assert rouge_l("感冒 咳嗽", "感冒发烧咳嗽") == pytest.approx(0.8)
    assert bleu4("多喝水注意休息", "多喝水注意休息") == pytest.approx(1.0)
    assert bleu4("发烧", "咳嗽") == 0.0
    # character bigrams: 2 shared of 3 predicted and 5 reference -> F1 0.5
    assert rouge_n("感冒咳嗽", "感冒发烧咳嗽", 2) == pytest.approx(0.5)
    assert words("感冒有什么症状？") == ["感冒", "有", "什么", "症状", "？"]
    assert rouge_l("感冒有什么症状", "感冒的症状", words) == pytest.approx(4 / 7)
    assert (
        repetition("的的的的的的的") == pytest.approx(0.75) and repetition("多喝水注意休息") == 0.0
    )
    assert 0 < bleu4("多喝水", "多喝水注意休息") < bleu4("多喝水注意", "多喝水注意休息") < 1


GATE = GateConfig(
    min_rouge_l_gain=0.05,
    min_bleu4_gain=0.02,
    max_loss_ratio=0.9,
    max_rouge_l_regression=0.02,
    min_stop_rate=0.9,
    max_template_leak_rate=0.0,
    max_identity_rate=0.0,
)
BEHAVED = {"stop_rate": 1.0, "template_leak_rate": 0.0, "identity_rate": 0.0}
BASE = {"rouge_l": 0.20, "bleu4": 0.10, "answer_loss": 3.0, **BEHAVED}


def _new(**kw):
    return {"rouge_l": 0.5, "bleu4": 0.3, "answer_loss": 1.5, **BEHAVED, **kw}


def test_gate_refuses_an_adapter_that_does_not_beat_the_base():
    decision = decide({"base": BASE, "challenger": _new(rouge_l=0.21)}, GATE)
    assert decision.promote is False and decision.failed == ["rouge_l_gain_over_base"]
    same = decide({"base": BASE, "challenger": dict(BASE)}, GATE)
    assert same.promote is False
    assert set(same.failed) == {
        "rouge_l_gain_over_base",
        "bleu4_gain_over_base",
        "loss_ratio_to_base",
    }


def test_gate_promotes_a_clear_improvement_and_records_each_rule():
    decision = decide({"base": BASE, "challenger": _new()}, GATE)
    assert decision.promote and not decision.failed
    rule = next(r for r in decision.as_dict()["rules"] if r["rule"] == "loss_ratio_to_base")
    assert rule == {
        "rule": "loss_ratio_to_base",
        "value": 0.5,
        "threshold": 0.9,
        "passed": True,
        "kind": "max",
    }


def test_gate_checks_behaviour_and_regression_against_the_champion():
    assert decide({"base": BASE, "challenger": _new(stop_rate=0.5)}, GATE).failed == ["stop_rate"]
    assert decide({"base": BASE, "challenger": _new(template_leak_rate=0.1)}, GATE).failed == [
        "template_leak_rate"
    ]
    assert decide({"base": BASE, "challenger": _new(identity_rate=0.05)}, GATE).failed == [
        "identity_rate"
    ]
    champion = _new(rouge_l=0.6)
    assert decide({"base": BASE, "champion": champion, "challenger": _new()}, GATE).failed == [
        "rouge_l_regression_vs_champion"
    ]
    assert decide(
        {"base": BASE, "champion": _new(rouge_l=0.51), "challenger": _new()}, GATE
    ).promote
