"""Medical correctness beyond n-gram overlap: is the answer about the condition that was asked?

A fluent answer about the wrong disease scores well on character ROUGE (the answers of one
question kind share their style), so the gate also asks two questions of every answer:

1. **Topic** (`topic`): which conditions do the question (its user turns, latest first) and the
   answer name? The term list `pipeline/resources/medical_terms.tsv` (written for this project:
   every condition name and alias of the default data's knowledge table, the conditions its
   training data declines to answer, and common conditions beyond both) maps each term to a
   canonical condition. Terms are found by longest match, left to right, without overlaps
   (jieba is not used here: it splits disease names it does not know, and matching the list
   directly is what the check needs). Two conditions are the same topic when one canonical name
   contains the other once a qualifier such as 小儿 / 婴儿 / 急性 / 慢性 is dropped
   (小儿腹泻 ~ 腹泻, 婴儿湿疹 ~ 湿疹). Verdicts:
   - `on_topic`: the answer names an asked condition first (others may follow in passing);
   - `wrong_topic`: the answer's first named condition is not asked, nor named by the reference
     answer when there is one;
   - `unnamed`: the answer names no condition (many right answers do not repeat the name);
   - `no_topic`: the question names no condition from the list (the check cannot judge).
2. **Fact** (`correct`, sets with a reference answer): the answer is correct when its topic is
   not `wrong_topic` AND its character ROUGE-L F1 against the reference is at least
   `FACT_THRESHOLD` (0.6). Measured on the default data's knowledge table: of the 33,300 pairs
   (condition A's answer given to condition B's question of the same kind) 82 reach 0.4, 10
   reach 0.5 and 4 reach 0.6, all four a 小儿 / 婴儿 variant of the same condition (腹泻 and
   小儿腹泻, 湿疹 and 婴儿湿疹). tests/unit/test_correctness.py gives every answer rotated to
   the next condition and checks it scores wrong, and checks that this metric agrees with the
   hand labels of real pipeline answers (tests/assets/labelled_answers.jsonl) on at least 90%.

3. **Recycled answers** (`TrainingAnswers`, when the training split is known): an answer that
   reproduces a training answer (character ROUGE-L >= `FACT_THRESHOLD` against the nearest one)
   whose training questions were about other conditions is `wrong_topic`, named or not ("常用
   抗甲状腺药物…" given for 干眼症 names no condition, yet it is 甲亢's answer). A training
   answer given for three or more different conditions is generic (a deferral such as "我这里
   没有足够可靠的资料…请到医院就诊") and is not held against anyone.

For a question without a reference (unseen topics, probes of your own) the right behaviour is
cautious: `cautious` is true when the answer sends the patient to a doctor (`REFER`) and names
no other condition first (topic `on_topic` or `unnamed`: "I have no reliable information about
this disease; see a doctor" is cautious without repeating the name).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

from pipeline.text import textmetrics

FACT_THRESHOLD = 0.6
QUALIFIERS = ("小儿", "婴儿", "幼儿", "宝宝", "孩子", "急性", "慢性", "哺乳期", "妊娠", "老年")
REFER = re.compile(r"就医|就诊|医院|医生|急诊|120|门诊|复诊|看病|专科")


@dataclass(frozen=True)
class Terms:
    by_term: dict[str, str]  # surface term -> canonical condition
    longest: int


@cache
def terms() -> Terms:
    text = resources.files("pipeline.resources").joinpath("medical_terms.tsv").read_text("utf-8")
    by_term: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        term, canonical, *_ = line.split("\t")
        by_term[term.strip()] = canonical.strip()
    return Terms(by_term, max(map(len, by_term)))


def conditions(text: str) -> list[str]:
    """Canonical conditions named in `text`, in order of first mention (longest match)."""
    t = terms()
    found: list[str] = []
    i = 0
    while i < len(text):
        for size in range(min(t.longest, len(text) - i), 0, -1):
            canonical = t.by_term.get(text[i : i + size])
            if canonical:
                if canonical not in found:
                    found.append(canonical)
                i += size
                break
        else:
            i += 1
    return found


def _core(name: str) -> str:
    for q in QUALIFIERS:
        if name.startswith(q) and len(name) > len(q) + 1:
            return name[len(q) :]
    return name


def same_topic(a: str, b: str) -> bool:
    ca, cb = _core(a), _core(b)
    return ca in cb or cb in ca


def asked_conditions(user_turns: list[str]) -> list[str]:
    """Conditions the question is about: the latest user turn that names one."""
    for text in reversed(user_turns):
        found = conditions(text)
        if found:
            return found
    return []


def topic(user_turns: list[str], answer: str, reference: str | None = None) -> str:
    """on_topic | wrong_topic | unnamed | no_topic (see the module docstring)."""
    asked = asked_conditions(user_turns)
    if not asked:
        return "no_topic"
    named = conditions(answer)
    if not named:
        return "unnamed"
    allowed = asked + (conditions(reference) if reference else [])
    first = named[0]
    if any(same_topic(first, a) for a in asked):
        return "on_topic"
    if any(same_topic(first, a) for a in allowed):
        # The reference's own first condition counts as on topic (a follow-up about a drug
        # class, a synonym the list maps elsewhere): the reference is the right answer.
        return "on_topic"
    return "wrong_topic"


GENERIC_AFTER = 3  # a training answer given for this many conditions is condition-free


def _bigrams(text: str) -> frozenset[str]:
    t = "".join(text.split())
    return frozenset(t[i : i + 2] for i in range(len(t) - 1))


@dataclass(frozen=True)
class TrainingAnswers:
    """Every distinct assistant answer of a training split, with the conditions asked about."""

    texts: tuple[str, ...]
    grams: tuple[frozenset[str], ...]
    topics: tuple[frozenset[str], ...]
    uses: tuple[int, ...] = ()  # conversations that give each answer

    @classmethod
    def from_rows(cls, rows: list[dict]) -> TrainingAnswers:
        topics: dict[str, set[str]] = {}
        uses: dict[str, int] = {}
        for row in rows:
            users: list[str] = []
            for turn in row["conversations"]:
                if turn["role"] == "user":
                    users.append(turn["content"])
                elif turn["role"] == "assistant":
                    topics.setdefault(turn["content"], set()).update(asked_conditions(users))
                    uses[turn["content"]] = uses.get(turn["content"], 0) + 1
        texts = tuple(sorted(topics))
        return cls(
            texts,
            tuple(map(_bigrams, texts)),
            tuple(frozenset(topics[t]) for t in texts),
            tuple(uses[t] for t in texts),
        )

    def templates(self, min_uses: int) -> frozenset[str]:
        """Training answers given by `min_uses` or more conversations (deferrals, the safety
        answers): templates, not facts."""
        return frozenset(t for t, n in zip(self.texts, self.uses, strict=True) if n >= min_uses)

    def nearest(self, text: str, min_uses: int = GENERIC_AFTER) -> str | None:
        """The training answer closest to `text` by character-bigram Jaccard, templates (given
        by `min_uses` or more conversations) left out; None when none shares a bigram."""
        grams = _bigrams(text)
        best, best_overlap = None, 0.0
        for t, g, n in zip(self.texts, self.grams, self.uses, strict=True):
            if n >= min_uses or not g:
                continue
            overlap = _jaccard(grams, g)
            if overlap > best_overlap:
                best, best_overlap = t, overlap
        return best

    def reaches(self, reference: str) -> bool:
        """A training answer (not a template) already scores correct against `reference`:
        character ROUGE-L >= FACT_THRESHOLD with the nearest one."""
        source = self.nearest(reference)
        return source is not None and textmetrics.rouge_l(source, reference) >= FACT_THRESHOLD

    def source(self, answer: str) -> frozenset[str] | None:
        """The conditions of the training answer this one reproduces; None when it reproduces
        none, or a generic one."""
        grams = _bigrams(answer)
        if not grams or not self.texts:
            return None
        overlap = [_jaccard(grams, g) for g in self.grams]
        best = max(range(len(overlap)), key=overlap.__getitem__)
        if overlap[best] < 0.3:  # far from every training answer: not a copy of one
            return None
        if textmetrics.rouge_l(answer, self.texts[best]) < FACT_THRESHOLD:
            return None
        found = self.topics[best]
        return None if len(found) >= GENERIC_AFTER or not found else found


def _jaccard(a: frozenset | set, b: frozenset | set) -> float:
    """|a & b| / |a | b| without building the union (0.0 for two empty sets)."""
    common = len(a & b)
    return common / ((len(a) + len(b) - common) or 1)


@dataclass(frozen=True)
class Judgement:
    topic: str
    rouge_l: float
    correct: bool | None  # None: no reference to judge a fact against
    cautious: bool


def judge(
    user_turns: list[str],
    answer: str,
    reference: str | None,
    training: TrainingAnswers | None = None,
) -> Judgement:
    verdict = topic(user_turns, answer, reference)
    if training is not None and verdict != "wrong_topic":
        asked = asked_conditions(user_turns)
        source = training.source(answer)
        if asked and source and not any(same_topic(a, b) for a in asked for b in source):
            verdict = "wrong_topic"  # another condition's training answer, named or not
    refers = bool(REFER.search(answer))
    if reference is None:
        return Judgement(verdict, 0.0, None, verdict in ("on_topic", "unnamed") and refers)
    rl = textmetrics.rouge_l(answer, reference)
    correct = verdict != "wrong_topic" and rl >= FACT_THRESHOLD
    return Judgement(verdict, rl, correct, verdict in ("on_topic", "unnamed") and refers)
