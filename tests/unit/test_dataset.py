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
