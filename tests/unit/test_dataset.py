"""The default data: committed files equal the generator's output, and the held-out sets hold
out what they claim to (unseen wordings of trained facts; conditions absent from training)."""

from __future__ import annotations

import json
import subprocess
import sys

from pipeline.text import medterms
from tests.conftest import REPO

sys.dont_write_bytecode = True
sys.path.insert(0, str(REPO / "data"))
import make_dataset  # noqa: E402
from knowledge import CONDITIONS  # noqa: E402

EVAL = REPO / "data" / "eval"


def _rows(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def test_committed_data_is_the_generators_output(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            str(REPO / "data" / "make_dataset.py"),
            "--out",
            str(tmp_path / "train.jsonl"),
            "--eval-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "wrote" in out.stdout
    assert (tmp_path / "train.jsonl").read_bytes() == (
        REPO / "data" / "raw" / "medical_dialogues.jsonl"
    ).read_bytes()
    for name in ("recall", "unseen_topics", "safety_probes"):
        assert (tmp_path / f"{name}.jsonl").read_bytes() == (EVAL / f"{name}.jsonl").read_bytes()


def test_recall_asks_trained_facts_in_wordings_never_trained():
    train = _rows(REPO / "data" / "raw" / "medical_dialogues.jsonl")
    asked = {t["content"] for r in train for t in r["conversations"] if t["role"] == "user"}
    answers = {t["content"] for r in train for t in r["conversations"] if t["role"] == "assistant"}
    first_q = {r["conversations"][0]["content"] for r in train}
    recall = _rows(EVAL / "recall.jsonl")
    assert len(recall) >= 90
    for row in recall:
        turns = row["conversations"]
        assert turns[-1]["content"] in answers, row["id"]  # the fact is trained
        if len(turns) == 2:
            assert turns[0]["content"] not in asked, row["id"]  # the wording is not
        else:  # a follow-up: the opening was trained, the follow-up wording was not with it
            assert turns[0]["content"] in first_q
            pairs = {
                (r["conversations"][0]["content"], t["content"])
                for r in train
                for t in r["conversations"][2::2]
            }
            assert (turns[0]["content"], turns[2]["content"]) not in pairs, row["id"]
    assert sum(len(r["conversations"]) > 2 for r in recall) >= 20


def test_unseen_topics_are_absent_from_training_and_every_condition_is_a_known_term():
    train_text = (REPO / "data" / "raw" / "medical_dialogues.jsonl").read_text(encoding="utf-8")
    unseen = _rows(EVAL / "unseen_topics.jsonl")
    names = {r["id"].split(":")[1] for r in unseen}
    assert names == set(make_dataset.UNSEEN_TOPICS)
    for row in unseen:
        answer = row["conversations"][-1]["content"]
        assert answer not in train_text, row["id"]
    for entry in CONDITIONS:
        assert medterms.conditions(entry["name"]) == [entry["name"]], entry["name"]
        if entry.get("q"):
            assert medterms.conditions(entry["q"]) == [entry["name"]], entry["q"]


def test_emergencies_are_taught_as_situations_in_every_form_patients_use():
    """Issue 18: the red-flag chats cover many emergency situations, each in several forms (a
    question, a statement without a question, a story, a follow-up turn, pinyin slips); a
    situation the model never saw gets the deferral of an unknown condition, not 120."""
    from knowledge import emergencies

    urgent = make_dataset.SAFETY_ANSWERS["red_flag"]
    train = [r["conversations"] for r in make_dataset.build()["train"]]
    red = [c for c in train if c[-1]["content"] == urgent]
    situations = emergencies.SITUATIONS
    assert len(situations) >= 40 and sum(len(s.signs) for s in situations) >= 100
    for s in situations:
        asked = [c for c in red for sign in s.signs if sign in c[-2]["content"]]
        assert len(asked) >= len(s.signs) * 2, s.name
        assert any(len(c) > 2 for c in asked), f"{s.name}: never in a follow-up turn"
        assert any(not c[-2]["content"].endswith(("？", "吗", "啊")) for c in asked), s.name
    slips = set(emergencies.TYPOS.values())
    typed = [c for c in red if any(ch in slips for ch in c[-2]["content"])]
    assert len(typed) >= 40
    stories = [c for c in red if len(c[-2]["content"]) >= 45]
    assert len(stories) >= 40
