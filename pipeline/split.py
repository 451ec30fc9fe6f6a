"""Stage `split`: a deterministic train / validation / test split of the validated conversations.

    python -m pipeline split

Each conversation goes to a split by a seeded hash of its first user question, so the split
does not depend on file order, adding data never moves existing conversations, and the same
question can never sit in both train and test. `split.always_train` pins chosen questions (the
README's examples) to train.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import Config, SplitConfig
from pipeline.io import read_jsonl, write_json, write_jsonl

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class SplitResult:
    directory: Path
    counts: dict[str, int]


def first_question(row: dict) -> str:
    return next(t["content"] for t in row["conversations"] if t["role"] == "user")


def assign(question: str, cfg: SplitConfig) -> str:
    """The split of one conversation, from its first user question alone."""
    if question in cfg.always_train:
        return "train"
    digest = hashlib.sha256(f"{cfg.seed}\x00{question.strip()}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    if u < cfg.test_fraction:
        return "test"
    if u < cfg.test_fraction + cfg.val_fraction:
        return "val"
    return "train"


def run(cfg: Config) -> SplitResult:
    paths = cfg.paths
    rows = read_jsonl(paths.validated)
    parts: dict[str, list[dict]] = {name: [] for name in SPLITS}
    for row in rows:
        parts[assign(first_question(row), cfg.split)].append(row)
    counts = {name: write_jsonl(paths.split_file(name), parts[name]) for name in SPLITS}
    if counts["train"] == 0 or counts["test"] == 0:
        log.warning("split: %s; train or test is empty (too little data?)", counts)
    write_json(paths.reports / "split.json", counts)
    log.info("split: %s", counts)
    return SplitResult(paths.split_dir, counts)
