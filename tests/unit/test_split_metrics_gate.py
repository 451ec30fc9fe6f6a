import pytest

from pipeline.config import SplitConfig
from pipeline.data.partition import assign
from pipeline.text.textmetrics import bleu4, repetition, rouge_l, rouge_n, words
from tests.conftest import REPO

SPLIT = SplitConfig(
    seed=42,
    val_fraction=0.1,
    test_fraction=0.2,
    always_train=("感冒有什么症状？",),
    near_duplicate_threshold=0.7,
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


def _lcs_table(a: str, b: str) -> int:
    """The textbook dynamic programme: the reference for the bit-parallel LCS."""
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def test_the_bit_parallel_lcs_equals_the_dynamic_programme():
    import random

    from pipeline.text.textmetrics import _lcs

    rng = random.Random(7)
    for _ in range(2000):  # few symbols: many repeats and ties, where a wrong update shows
        a = "".join(rng.choice("血压高低头痛") for _ in range(rng.randint(0, 40)))
        b = "".join(rng.choice("血压高低头痛") for _ in range(rng.randint(0, 90)))
        assert _lcs(list(a), list(b)) == _lcs_table(a, b), (a, b)
    assert _lcs(list("ABCBDAB"), list("BDCABA")) == 4 and _lcs(list("abc"), list("xyz")) == 0


def test_looping_flags_loops_and_not_the_hand_written_answers():
    import json

    from pipeline.text.textmetrics import looping

    assert looping("血压高，血压高，血压高，血压高")  # the real-corpus loop
    assert looping("注意休息，多喝水。多喝水。多喝水。")  # a tail that repeats
    assert looping("的的的的的的的的的的")
    assert not looping("感冒常见症状有流鼻涕、鼻塞、打喷嚏、喉咙痛和咳嗽，一般一周左右自愈。")
    raw = (REPO / "data" / "raw" / "medical_dialogues.jsonl").read_text(encoding="utf-8")
    answers = {
        t["content"]
        for line in raw.splitlines()
        for t in json.loads(line)["conversations"]
        if t["role"] == "assistant"
    }
    assert not [a for a in answers if looping(a)]
