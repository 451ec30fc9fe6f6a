"""Stage `split`: a deterministic train / validation / test split of the validated conversations.

    python -m pipeline split

Each conversation goes to a split by a seeded hash of its first user question, so the split
does not depend on file order, adding data never moves existing conversations, and the same
question can never sit in both train and test. Near-identical questions (the same text once
NFKC, case, punctuation and whitespace are ignored: "感冒怎么办？" and "感冒 怎么办?") are kept
together too: such a group goes to the most train-ward split any of its questions hashes to, so
a question never leaks from train into test in a slightly different spelling (checked here).
`split.always_train` pins chosen questions (the README's examples) to train.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

from pipeline.checks import normalize_text
from pipeline.config import Config, SplitConfig
from pipeline.errors import PipelineError
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


def leakage(parts: dict[str, list[dict]]) -> list[str]:
    """Normalized first questions found in both train and test (must be none)."""
    train = {normalize_text(first_question(r)) for r in parts["train"]}
    return sorted(train & {normalize_text(first_question(r)) for r in parts["test"]})


def run(cfg: Config) -> SplitResult:
    paths = cfg.paths
    rows = read_jsonl(paths.validated)
    keys = [normalize_text(first_question(row)) for row in rows]
    group: dict[str, str] = {}  # normalized question -> split
    for key, row in zip(keys, rows, strict=True):
        name = assign(first_question(row), cfg.split)
        group[key] = min(group.get(key, name), name, key=SPLITS.index)
    parts: dict[str, list[dict]] = {name: [] for name in SPLITS}
    for key, row in zip(keys, rows, strict=True):
        parts[group[key]].append(row)
    moved = sum(
        group[k] != assign(first_question(r), cfg.split) for k, r in zip(keys, rows, strict=True)
    )
    if moved:
        log.info("split: %d conversation(s) joined a near-identical question's split", moved)
    leaked = leakage(parts)
    if leaked:
        raise PipelineError(f"split: questions in both train and test: {leaked[:5]}")
    counts = {name: write_jsonl(paths.split_file(name), parts[name]) for name in SPLITS}
    if counts["train"] == 0 or counts["test"] == 0:
        log.warning("split: %s; train or test is empty (too little data?)", counts)
    write_json(paths.reports / "split.json", counts)
    log.info("split: %s", counts)
    return SplitResult(paths.split_dir, counts)
