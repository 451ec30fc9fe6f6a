"""Near-duplicates (pipeline/text/neardup.py): exact trigram Jaccard behind MinHash LSH, clusters,
templates, the held-out check, and the split keeping near-duplicates on one side."""

from __future__ import annotations

import random
from itertools import combinations

import pytest

from pipeline.config import load_config
from pipeline.data import partition
from pipeline.text import neardup
from tests.conftest import REAL_CSV, REPO, real_corpus_rows

REAL = REAL_CSV
# Hand-written rewordings of one question (greeting, ending); one hashes to test, one to train.
BASE_Q = "我最近三个月经常在晚上睡觉的时候突然胸口发闷还出很多汗"
Q_TRAIN = BASE_Q + "，怎么办？"  # Jaccard 0.74 with Q_TEST
Q_TEST = "医生你好，" + BASE_Q + "，该怎么办？"
# A doctor's answer pasted again with a greeting and one word changed (Jaccard 0.875).
ANSWER = (
    "这种情况多与长期姿势不良和肌肉疲劳有关，建议每坐一小时起身活动五分钟，睡硬板床，注意腰部"
    "保暖，疼痛持续两周以上或伴腿麻请到骨科就诊。"
)
ANSWER_AGAIN = "你好，" + ANSWER.replace("五分钟", "几分钟")
A_TRAIN_Q, A_TEST_Q = "孩子晚上总是磨牙是缺什么吗", "老人走路不稳容易摔倒要查什么"
# A deferral naming the condition: each differs in a word, none is a fact.
DEFERRAL = "关于{}，我这里没有足够可靠的资料，不能给出具体的诊断和用药建议，请到医院就诊。"
DEFERRED = ["痛风", "甲亢", "银屑病", "带状疱疹"]


def _row(question: str, answer: str, *more: str) -> dict:
    texts = [question, answer, *more]
    roles = ["user", "assistant"] * len(texts)
    return {
        "conversations": [{"role": r, "content": t} for r, t in zip(roles, texts, strict=False)]
    }


def _j(a: str, b: str) -> float:
    return neardup.jaccard(neardup.shingles(a), neardup.shingles(b))


def test_jaccard_is_exact_on_normalized_trigrams():
    assert neardup.shingles("感冒，怎么办?") == {"感冒怎", "冒怎么", "怎么办"}
    assert _j("感冒怎么办", "感冒 怎么办？") == 1.0
    assert _j("感冒了发烧怎么办", "感冒了发烧该怎么办") == pytest.approx(4 / 9)
    assert _j(Q_TRAIN, Q_TEST) == pytest.approx(0.74, abs=0.01)


def test_short_texts_are_never_near_duplicates():
    ix = neardup.index(["胃疼", "胃疼", "头痛怎么办"], 0.7)
    assert ix.matches("胃疼") == [] and ix.matches("胃 疼!") == []
    assert ix.pairs() == []
    assert neardup.clusters(["胃疼", "胃疼", "a"], 0.7) == [0, 1, 2]


def test_matches_are_exact_and_complete_against_brute_force():
    rng = random.Random(0)
    alphabet = "感冒发烧头痛咳嗽胃疼腹泻失眠高血压糖尿病怎么办吃什么药需要去医院吗孩子老人"
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(2, 40))) for _ in range(150)]
    for t in list(texts[:60]):  # near-duplicates of varying similarity
        i = rng.randrange(len(t) + 1)
        texts.append(t[:i] + rng.choice(alphabet) + t[i:])
    for threshold in (0.5, 0.7, 0.9):
        truth = {
            (i, j, _j(a, b))
            for (i, a), (j, b) in combinations(enumerate(texts), 2)
            if _j(a, b) >= threshold
        }
        ix = neardup.index(texts, threshold)
        assert set(ix.pairs()) == truth and truth
        i, j, score = max(truth, key=lambda x: (x[2] < 1, x[2]))
        assert (j, score) in ix.matches(texts[i])


def test_clusters_are_transitive():
    a = "我家孩子三岁了最近一个星期一直咳嗽晚上咳得更厉害"
    b = a.replace("三岁", "四岁")  # one character changed
    c = b.replace("更", "很")  # and another, further on
    assert _j(a, c) < 0.7 <= min(_j(a, b), _j(b, c))
    assert neardup.clusters([c, "完全不同的另一句话在这里", a, b], 0.7) == [0, 1, 0, 0]


def test_templates_exact_and_near():
    qs = [f"问题{i}：我这个病{i}该怎么治疗" for i in range(8)]
    deferrals = [DEFERRAL.format(x) for x in DEFERRED]
    assert min(_j(deferrals[0], d) for d in deferrals) >= 0.7
    answers = deferrals[:3] + [ANSWER, ANSWER_AGAIN] + ["多喝水。"] * 3
    # near cluster of 3 distinct questions; a near pair of 2; an exact answer in 3 conversations
    assert neardup.templates(qs, answers, 0.7) == {0, 1, 2, 5, 6, 7}
    # the same answer twice to one question, once to another: 2 distinct questions, a fact
    assert neardup.templates(["问一", "问一", "问二"], deferrals[:3], 0.7) == set()


def test_questions_naming_different_conditions_are_not_near_duplicates():
    a, b = "胃炎是什么原因引起的", "咽炎是什么原因引起的"
    assert _j(a, b) >= 0.7
    assert neardup.index([a], 0.7).matches(b) == [(0, pytest.approx(_j(a, b)))]
    assert neardup.questions([a], 0.7).matches(b) == []
    assert neardup.questions([a], 0.7).matches("胃炎是什么原因引起的呢") != []


def test_flag_held_out():
    train = [
        _row(Q_TRAIN, "多休息，必要时做心电图。"),
        _row("腰疼两个月了", "先拍片看看。", "拍了片说没事", ANSWER),
        *[_row(f"我得了{x}怎么办", DEFERRAL.format(x)) for x in DEFERRED],
        _row("胃炎是什么原因引起的", "常与幽门螺杆菌感染、饮食不规律有关。"),
    ]
    items_q = [
        Q_TEST,
        "完全无关的一个问题呀",
        "坐久了腰很疼",
        "我得了哮喘怎么办呀",
        "咽炎是什么原因引起的",
    ]
    items_a = ["", "", ANSWER_AGAIN, DEFERRAL.format("哮喘"), ""]
    flagged = neardup.flag_held_out(train, items_q, items_a, 0.7, check_answers=True)
    assert flagged == {
        0: ("question", pytest.approx(_j(Q_TRAIN, Q_TEST))),
        2: ("answer", pytest.approx(_j(ANSWER, ANSWER_AGAIN))),  # a later turn's answer
    }
    assert neardup.flag_held_out(train, items_q, items_a, 0.7, check_answers=False) == {
        0: flagged[0]
    }


def _parts(rows: list[dict], threshold: float | None) -> dict[str, list[dict]]:
    cfg = load_config(REPO / "params.yaml", {"split.near_duplicate_threshold": threshold})
    return partition.partition(rows, cfg.split)[0]


def _side(parts: dict[str, list[dict]], question: str) -> str:
    return next(
        name
        for name, rows in parts.items()
        for r in rows
        if r["conversations"][0]["content"] == question
    )


def test_split_keeps_near_duplicates_together():
    cfg = load_config(REPO / "params.yaml").split
    assert (partition.assign(Q_TRAIN, cfg), partition.assign(Q_TEST, cfg)) == ("train", "test")
    assert (partition.assign(A_TRAIN_Q, cfg), partition.assign(A_TEST_Q, cfg)) == ("train", "test")
    rows = [
        _row(Q_TRAIN, "多休息，必要时做心电图检查一下。"),
        _row(Q_TEST, "建议尽快去心内科做检查，排除冠心病。"),
        _row(A_TRAIN_Q, ANSWER),
        _row(A_TEST_Q, ANSWER_AGAIN),
    ]
    exact = _parts(rows, None)  # the exact rules alone: both pairs leak
    assert [_side(exact, r["conversations"][0]["content"]) for r in rows] == [
        "train",
        "test",
        "train",
        "test",
    ]
    assert partition.leakage(exact, None) == []
    leaks = partition.leakage(exact, 0.7)
    assert len(leaks) == 2 and leaks[0].startswith("~A:") and leaks[1].startswith("~Q:")
    near = _parts(rows, 0.7)
    assert _side(near, Q_TRAIN) == _side(near, Q_TEST)
    assert _side(near, A_TRAIN_Q) == _side(near, A_TEST_Q)
    assert partition.leakage(near, 0.7) == []


def test_split_does_not_chain_templated_answers():
    rows = [_row(f"我得了{x}怎么办", DEFERRAL.format(x)) for x in DEFERRED]
    assert len(set(partition._groups(rows, 0.7))) == len(rows)
    parts = {"train": rows[:2], "val": [], "test": rows[2:]}
    assert partition.leakage(parts, 0.7) == []


@pytest.mark.skipif(not REAL.exists(), reason=f"{REAL} not present (the shared real corpus)")
def test_real_corpus_split_has_no_near_duplicates_across_train_and_test():
    seen, rows = set(), []
    for row in real_corpus_rows()[:3000]:
        key = repr(row["conversations"])  # validate drops exact repeats
        if key not in seen:
            seen.add(key)
            rows.append(row)
    assert any(x.startswith("~") for x in partition.leakage(_parts(rows, None), 0.7))
    assert partition.leakage(_parts(rows, 0.7), 0.7) == []
