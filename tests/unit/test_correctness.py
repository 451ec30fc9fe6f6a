"""The correctness metric (pipeline/text/medterms.py) against answers known to be right or wrong:
every knowledge-table answer given to its own question, every answer rotated to the next
condition's question, and a fixture of real pipeline answers labelled by hand."""

from __future__ import annotations

import json
import sys

import pytest

from pipeline.text import medterms
from tests.conftest import ASSETS, REPO

sys.dont_write_bytecode = True
sys.path.insert(0, str(REPO / "data"))
import make_dataset  # noqa: E402
from knowledge import CONDITIONS  # noqa: E402

FIXTURE = ASSETS / "labelled_answers.jsonl"


def _question(entry: dict, kind: str) -> str:
    return make_dataset.TEMPLATES[kind][0].format(c=entry.get("q", entry["name"]))


@pytest.mark.parametrize("kind", make_dataset.KINDS)
def test_right_answers_score_right_and_rotated_answers_score_wrong(kind):
    n = len(CONDITIONS)
    for i, entry in enumerate(CONDITIONS):
        other = CONDITIONS[(i + 1) % n]
        q = _question(entry, kind)
        assert medterms.judge([q], entry[kind], entry[kind]).correct, entry["name"]
        wrong = medterms.judge([q], other[kind], entry[kind])
        assert not wrong.correct, (entry["name"], other["name"], wrong)


def test_a_wrong_condition_answer_is_flagged_off_topic():
    j = medterms.judge(["痔疮有什么症状？"], "鼻窦炎常见鼻塞、流脓鼻涕。", None)
    assert j.topic == "wrong_topic" and not j.cautious
    j = medterms.judge(["甲沟炎吃什么药？"], "关于白癜风，我这里没有可靠资料，请到医院就诊。", None)
    assert j.topic == "wrong_topic" and not j.cautious
    j = medterms.judge(["甲沟炎吃什么药？"], "关于甲沟炎，我这里没有可靠资料，请到医院就诊。", None)
    assert j.topic == "on_topic" and j.cautious
    # A qualified name is the same topic; a follow-up takes its topic from the opening question.
    assert medterms.topic(["宝宝拉肚子有什么症状？"], "腹泻表现为排便次数增多。") == "on_topic"
    assert medterms.topic(["感冒怎么办？", "一般多久能好？"], "流感一般一周好转。") == "wrong_topic"
    assert medterms.topic(["一般多久能好？"], "感冒一般一周好转。") == "no_topic"


def _fixture() -> list[dict]:
    return [json.loads(x) for x in FIXTURE.read_text(encoding="utf-8").splitlines() if x]


def test_the_labelled_fixture_is_real_and_balanced_enough_to_mean_something():
    rows = _fixture()
    assert len(rows) >= 50
    assert all(r["label"] in ("right", "wrong") and len(r["reason"]) > 10 for r in rows)
    assert sum(r["label"] == "right" for r in rows) >= 15
    assert sum(r["label"] == "wrong" for r in rows) >= 15
    assert len({r["id"] for r in rows}) == len(rows)


def test_the_metric_agrees_with_the_hand_labels_on_at_least_90_percent():
    """As evaluate scores them: with the training answers known (here: the default data)."""
    rows = _fixture()
    raw = REPO / "data" / "raw" / "medical_dialogues.jsonl"
    training = medterms.TrainingAnswers.from_rows(
        [json.loads(x) for x in raw.read_text(encoding="utf-8").splitlines() if x]
    )
    disagree = []
    for r in rows:
        turns = ([r["context"]] if r.get("context") else []) + [r["question"]]
        j = medterms.judge(turns, r["answer"], r["reference"], training)
        verdict = j.cautious if r.get("kind") == "unseen" else j.correct
        if bool(verdict) != (r["label"] == "right"):
            disagree.append((r["id"], r["label"], j.topic, round(j.rouge_l, 2), r["reason"]))
    agreement = 1 - len(disagree) / len(rows)
    assert agreement >= 0.9, disagree
