import pytest

from pipeline.config import GateConfig, SplitConfig
from pipeline.register import decide
from pipeline.split import assign
from pipeline.textmetrics import bleu4, rouge_l

SPLIT = SplitConfig(seed=42, val_fraction=0.1, test_fraction=0.2, always_train=("感冒有什么症状？",))


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
    assert 0 < bleu4("多喝水", "多喝水注意休息") < bleu4("多喝水注意", "多喝水注意休息") < 1


GATE = GateConfig(min_rouge_l_gain=0.05, min_bleu4_gain=0.02, max_loss_ratio=0.9)
BASE = {"rouge_l": 0.20, "bleu4": 0.10, "answer_loss": 3.0}


def test_gate_refuses_an_adapter_that_does_not_beat_the_base():
    decision = decide({"base": BASE, "adapter": {"rouge_l": 0.21, "bleu4": 0.2, "answer_loss": 1.0}}, GATE)
    assert decision.promote is False
    assert [r.rule for r in decision.rules if not r.passed] == ["rouge_l_gain"]
    same = decide({"base": BASE, "adapter": dict(BASE)}, GATE)
    assert same.promote is False and not any(r.passed for r in same.rules)


def test_gate_promotes_a_clear_improvement():
    decision = decide({"base": BASE, "adapter": {"rouge_l": 0.5, "bleu4": 0.3, "answer_loss": 1.5}}, GATE)
    assert decision.promote and all(r.passed for r in decision.rules)
    assert decision.as_dict()["rules"][2] == {"rule": "loss_ratio", "value": 0.5, "threshold": 0.9, "passed": True}
