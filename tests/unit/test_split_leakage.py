"""A question never sits in train and test, not even in a slightly different spelling."""

from __future__ import annotations

import json

from pipeline.config import load_config
from pipeline.data import partition, split
from pipeline.data.checks import normalize_text
from pipeline.io import write_jsonl


def _row(question: str, answer: str = "多休息。") -> dict:
    turns = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return {"id": question, "conversations": turns}


def test_near_identical_questions_share_a_split(project):
    cfg = load_config(project / "params.yaml")
    # Spellings of one question whose raw hashes disagree: one lands in test, another in train.
    variants = [f"感冒{' ' * i}怎么办{'？' if j else '?'}" for i in range(8) for j in (0, 1)]
    by_split = {v: partition.assign(v, cfg.split) for v in variants}
    test_q = next(v for v, s in by_split.items() if s == "test")
    train_q = next(v for v, s in by_split.items() if s == "train")
    rows = [_row(test_q, "答一"), _row(train_q, "答二"), _row("胃疼吃什么药？")]
    write_jsonl(cfg.paths.validated, rows)
    split.run(cfg)
    parts = {
        name: [json.loads(x) for x in cfg.paths.split_file(name).read_text().splitlines()]
        for name in split.SPLITS
    }
    assert [r["id"] for r in parts["train"]][:2] == [test_q, train_q]  # together, in train
    assert partition.leakage(parts, cfg.split.near_duplicate_threshold) == []
    # Without the grouping the raw hashes would have leaked the question into test:
    raw = {
        name: [r for r in rows if partition.assign(r["id"], cfg.split) == name]
        for name in split.SPLITS
    }
    assert partition.leakage(raw, None) == [normalize_text(test_q)]
