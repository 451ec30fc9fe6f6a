"""Stage `split`: a deterministic train / validation / test split of the validated conversations.

    python -m pipeline split

Each conversation goes to a split by a seeded hash of its first user question, so the split
does not depend on file order, adding data never moves existing conversations, and the same
question can never sit in both train and test. Near-identical questions (the same text once
NFKC, case, punctuation and whitespace are ignored: "感冒怎么办？" and "感冒 怎么办?") are kept
together too: such a group goes to the split its smallest question hashes to, so a question
never leaks from train into test in a slightly different spelling (checked here).
Conversations that share a first answer are kept together the same way (one answer asked in
several wordings is one fact: a fact in train must not be scored as "unseen" in test), unless
`TEMPLATE_AFTER` or more conversations share it: such an answer is a template (a deferral such
as "I have no reliable information; see a doctor", a safety answer), not a fact, and linking
its conversations would put every one of them in a single split.
`split.always_train` pins chosen questions (the README's examples) to train.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from pipeline import SPLITS
from pipeline.checks import normalize_text
from pipeline.config import Config, SplitConfig
from pipeline.errors import PipelineError
from pipeline.io import read_jsonl, write_json, write_jsonl

log = logging.getLogger(__name__)

TEMPLATE_AFTER = 3  # conversations sharing one first answer: from here on it is a template


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


def first_answer(row: dict) -> str:
    return next((t["content"] for t in row["conversations"] if t["role"] == "assistant"), "")


def leakage(parts: dict[str, list[dict]]) -> list[str]:
    """Normalized first questions or first answers found in both train and test (must be none)."""

    everything = [r for rows in parts.values() for r in rows]
    shared = Counter(normalize_text(first_answer(r)) for r in everything if first_answer(r))

    def keys(rows: list[dict]) -> set[str]:
        answers = {normalize_text(first_answer(r)) for r in rows if first_answer(r)}
        return {normalize_text(first_question(r)) for r in rows} | {
            "A:" + a for a in answers if shared[a] < TEMPLATE_AFTER
        }

    return sorted(keys(parts["train"]) & keys(parts["test"]))


def _groups(rows: list[dict]) -> list[int]:
    """A group number per row: rows linked by a normalized first question or first answer."""
    parent = list(range(len(rows)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    seen: dict[str, int] = {}
    shared = Counter(normalize_text(first_answer(r)) for r in rows if first_answer(r))
    for i, row in enumerate(rows):
        answer = normalize_text(first_answer(row))
        keys = [normalize_text(first_question(row))]
        keys += ["A:" + answer] if answer and shared[answer] < TEMPLATE_AFTER else []
        for key in keys:
            if key in seen:
                parent[find(i)] = find(seen[key])
            else:
                seen[key] = i
    return [find(i) for i in range(len(rows))]


def run(cfg: Config) -> SplitResult:
    paths = cfg.paths
    rows = read_jsonl(paths.validated)
    groups = _groups(rows)
    own = [assign(first_question(row), cfg.split) for row in rows]
    # A group's split is drawn once, from its smallest question (so a fact asked in several
    # wordings is as likely to be held out as one asked once); a pinned question pins its group.
    first: dict[int, str] = {}
    for g, row in zip(groups, rows, strict=True):
        first[g] = min(first.get(g, first_question(row)), first_question(row))
    group = {g: assign(q, cfg.split) for g, q in first.items()}
    for g, row in zip(groups, rows, strict=True):
        if first_question(row) in cfg.split.always_train:
            group[g] = "train"
    parts: dict[str, list[dict]] = {name: [] for name in SPLITS}
    for g, row in zip(groups, rows, strict=True):
        parts[group[g]].append(row)
    moved = sum(group[g] != name for g, name in zip(groups, own, strict=True))
    if moved:
        log.info(
            "split: %d conversation(s) joined the split of a near-identical question or a "
            "shared answer",
            moved,
        )
    leaked = leakage(parts)
    if leaked:
        raise PipelineError(f"split: questions or answers in both train and test: {leaked[:5]}")
    counts = {name: write_jsonl(paths.split_file(name), parts[name]) for name in SPLITS}
    if counts["train"] == 0 or counts["test"] == 0:
        log.warning("split: %s; train or test is empty (too little data?)", counts)
    write_json(paths.reports / "split.json", counts)
    log.info("split: %s", counts)
    return SplitResult(paths.split_dir, counts)
