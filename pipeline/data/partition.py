"""The split's rules (stage `split`, pipeline/data/split.py, says why): the split of one
question (`assign`), the rows of each split with linked conversations kept together
(`partition`), and the questions or answers found in both train and test (`leakage`)."""

from __future__ import annotations

import hashlib
import logging
from collections import Counter

from pipeline import SPLITS
from pipeline.config import SplitConfig
from pipeline.data.checks import normalize_text
from pipeline.text import neardup
from pipeline.text.neardup import TEMPLATE_AFTER, first_answer, first_question

log = logging.getLogger(__name__)


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


def leakage(parts: dict[str, list[dict]], threshold: float | None) -> list[str]:
    """First questions or first answers found in both train and test (must be none): the same
    once normalized, or (`threshold` not None) near-duplicates, template answers excepted."""

    everything = [r for rows in parts.values() for r in rows]
    shared = Counter(normalize_text(first_answer(r)) for r in everything if first_answer(r))

    def keys(rows: list[dict]) -> set[str]:
        answers = {normalize_text(first_answer(r)) for r in rows if first_answer(r)}
        return {normalize_text(first_question(r)) for r in rows} | {
            "A:" + a for a in answers if shared[a] < TEMPLATE_AFTER
        }

    exact = sorted(keys(parts["train"]) & keys(parts["test"]))
    if threshold is None:
        return exact
    return exact + _near_leakage(parts, threshold)


def _near_leakage(parts: dict[str, list[dict]], threshold: float) -> list[str]:
    """'~Q:' / '~A:' test text '~' train text (Jaccard) for each near-duplicate (not exact)
    first question or non-template first answer of test found in train."""
    train, test = parts["train"], parts["test"]
    rest = [r for name, rows in parts.items() if name not in ("train", "test") for r in rows]
    everything = train + test + rest
    template = neardup.templates(
        [first_question(r) for r in everything], [first_answer(r) for r in everything], threshold
    )
    found = []
    for tag, text, skip, make in (
        ("Q", first_question, set(), neardup.questions),
        ("A", first_answer, template, neardup.index),
    ):
        seen = make([text(r) for r in train], threshold)
        for k, row in enumerate(test):
            if len(train) + k in skip:
                continue
            mine = normalize_text(text(row))
            for j, score in seen.matches(text(row)):
                other = normalize_text(text(train[j]))
                if j not in skip and other != mine:
                    found.append(f"~{tag}:{mine[:40]} ~ {other[:40]} ({score:.2f})")
                    break
    return sorted(found)


def _links(rows: list[dict], threshold: float | None) -> list[tuple[int, int]]:
    """Rows to keep together: the same normalized first question or (non-template) first
    answer, and (`threshold` not None) near-duplicate first questions or first answers."""
    links = []
    seen: dict[str, int] = {}
    shared = Counter(normalize_text(first_answer(r)) for r in rows if first_answer(r))
    for i, row in enumerate(rows):
        answer = normalize_text(first_answer(row))
        keys = [normalize_text(first_question(row))]
        keys += ["A:" + answer] if answer and shared[answer] < TEMPLATE_AFTER else []
        for key in keys:
            if key in seen:
                links.append((seen[key], i))
            else:
                seen[key] = i
    if threshold is None:
        return links
    questions = [first_question(r) for r in rows]
    answers = [first_answer(r) for r in rows]
    links += [(i, j) for i, j, _ in neardup.questions(questions, threshold).pairs()]
    pairs = neardup.index(answers, threshold).pairs()
    template = neardup.templates(questions, answers, threshold, pairs)
    return links + [(i, j) for i, j, _ in pairs if i not in template and j not in template]


def _groups(rows: list[dict], threshold: float | None) -> list[int]:
    """A group number per row (union-find over `_links`)."""
    return neardup.components(len(rows), _links(rows, threshold))


def partition(rows: list[dict], cfg: SplitConfig) -> tuple[dict[str, list[dict]], int]:
    """The rows of each split, and how many rows joined another row's split (their group's)."""
    groups = _groups(rows, cfg.near_duplicate_threshold)
    own = [assign(first_question(row), cfg) for row in rows]
    # A group's split is drawn once, from its smallest question (so a fact asked in several
    # wordings is as likely to be held out as one asked once); a pinned question pins its group.
    first: dict[int, str] = {}
    for g, row in zip(groups, rows, strict=True):
        first[g] = min(first.get(g, first_question(row)), first_question(row))
    group = {g: assign(q, cfg) for g, q in first.items()}
    for g, row in zip(groups, rows, strict=True):
        if first_question(row) in cfg.always_train:
            group[g] = "train"
    parts: dict[str, list[dict]] = {name: [] for name in SPLITS}
    for g, row in zip(groups, rows, strict=True):
        parts[group[g]].append(row)
    moved = sum(group[g] != name for g, name in zip(groups, own, strict=True))
    sizes = Counter(groups)
    log.info(
        "split: %d group(s) of conversations kept together, the largest of %d",
        sum(n > 1 for n in sizes.values()),
        max(sizes.values(), default=0),
    )
    return parts, moved
