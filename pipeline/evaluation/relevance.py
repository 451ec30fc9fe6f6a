"""Relevance, not style: what an answer owes to its own question, and which metrics can tell.

A similarity metric rewards an answer in the data's style whatever it answers: on free-text
doctors' answers, a model that cannot know the questions scores a character ROUGE-L against
its own references no higher than against other questions' references. So every metric of
every reference set is scored twice per answer:

- **own**: against the question's own reference (the usual score);
- **rotated**: against another question's reference of the same set, by a seeded rotation
  (`rotation`: a derangement that never pairs a question with a reference of the same text).

The **relevance gap** (own minus rotated, per answer, with its 95% paired bootstrap interval)
is what the metric credits the answer for answering *this* question. A stock reply, a constant
answer, or a fluent answer about nothing in particular has a gap of about 0.

**Can the metric judge this set?** Checked on the references alone, before any model:
- similarity metrics (rouge_l, rouge1, bleu4): each reference's first half scored against its
  own second half and against the rotated reference's second half. When even a reference's
  own halves score no higher than another's (the interval's lower bound is not above 0), no
  answer can show relevance through this metric on this set: it cannot judge it;
- semantic (`evaluate.semantic`: multilingual-e5-small cosine, evaluation/semantic.py): the same
  halves check, with embeddings;
- correctness (ROUGE-L >= 0.6 on the right condition, pipeline/text/medterms.py) is a threshold a
  right answer reaches only by reproducing its reference closely, so it can judge a set only
  when references can be reached: at least `MIN_REACHABLE` of them (and `MIN_REACHABLE_COUNT`)
  have a training answer that scores correct against them (not a template: a training answer
  shared by several conversations). The default data's recall set asks about trained answers
  (all reachable); a test split of free-text doctors' answers has none.

A metric that cannot judge a set is reported so and not counted by the gate (evaluation/gate.py).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from pipeline.evaluation.stats import Interval, paired_bootstrap
from pipeline.text import medterms, textmetrics

METRICS = ("correctness", "rouge_l", "rouge1", "bleu4")
SIMILARITY = ("rouge_l", "rouge1", "bleu4")
SEMANTIC = "semantic"  # with `evaluate.semantic` (pipeline/evaluation/semantic.py)
MIN_REACHABLE = 0.1  # share of references a training answer reaches, for correctness to judge
MIN_REACHABLE_COUNT = 3


def rotation(references: list[str], seed: int) -> list[int]:
    """For each position, another position whose reference differs in text (a seeded
    derangement); a position without any such partner keeps itself (and scores a gap of 0)."""
    n = len(references)
    order = list(range(n))
    random.Random(seed).shuffle(order)
    # Each element of the shuffled order points at the next one: one cycle, no fixed points.
    target = [0] * n
    for k, i in enumerate(order):
        target[i] = order[(k + 1) % n]
    for i in range(n):
        if references[target[i]] == references[i]:
            other = next((j for j in order if references[j] != references[i]), i)
            target[i] = other
    return target


def similarity(metric: str, answer: str, reference: str) -> float:
    if metric == "rouge_l":
        return textmetrics.rouge_l(answer, reference)
    if metric == "rouge1":
        return textmetrics.rouge_n(answer, reference, 1)
    if metric == "bleu4":
        return textmetrics.bleu4(answer, reference)
    if metric == SEMANTIC:
        from pipeline.evaluation import semantic

        return semantic.cosine(answer, reference)
    raise ValueError(f"not a similarity metric: {metric}")


def correct(user_turns: list[str], answer: str, reference: str, training=None) -> float:
    return float(bool(medterms.judge(user_turns, answer, reference, training).correct))


def rotated_scores(
    user_turns: list[list[str]],
    answers: list[str],
    references: list[str],
    credited: list[bool],
    target: list[int],
    training: medterms.TrainingAnswers | None = None,
    metrics: tuple[str, ...] = METRICS,
) -> dict[str, list[float]]:
    """Each answer scored against its rotated reference; an answer that earns no credit (a
    stock reply) scores 0 here too."""
    out: dict[str, list[float]] = {m: [] for m in metrics}
    for i, answer in enumerate(answers):
        other = references[target[i]]
        for m in metrics:
            if not credited[i]:
                value = 0.0
            elif m == "correctness":
                value = correct(user_turns[i], answer, other, training)
            else:
                value = similarity(m, answer, other)
            out[m].append(round(value, 5))
    return out


@dataclass(frozen=True)
class Judgeability:
    metric: str
    can_judge: bool
    evidence: str  # in words: what was measured
    interval: Interval | None = None  # similarity metrics: own halves minus rotated halves

    def as_dict(self) -> dict:
        iv = self.interval.as_dict() if self.interval else None
        return {"can_judge": self.can_judge, "evidence": self.evidence, "interval": iv}


def _halves(text: str) -> tuple[str, str]:
    compact = "".join(text.split())
    mid = len(compact) // 2
    return compact[:mid], compact[mid:]


def _reachable(references: list[str], training: medterms.TrainingAnswers | None) -> int:
    """References that some non-template training answer scores correct against."""
    if training is None or not training.texts:
        return 0
    return sum(training.reaches(ref) for ref in references)


def judgeability(
    references: list[str],
    training: medterms.TrainingAnswers | None,
    resamples: int,
    seed: int,
    metrics: tuple[str, ...] = METRICS,
) -> dict[str, Judgeability]:
    """Which metrics can judge a set with these references (see the module docstring)."""
    target = rotation(references, seed)
    halves = [_halves(r) for r in references]
    if SEMANTIC in metrics:
        from pipeline.evaluation import semantic

        semantic.prime([h for pair in halves for h in pair])
    out: dict[str, Judgeability] = {}
    for m in [m for m in metrics if m in SIMILARITY or m == SEMANTIC]:
        own = [similarity(m, a, b) for a, b in halves]
        rot = [similarity(m, a, halves[target[i]][1]) for i, (a, _) in enumerate(halves)]
        iv = paired_bootstrap(own, rot, resamples, seed)
        out[m] = Judgeability(
            m,
            iv.low > 0,
            f"reference halves: own {textmetrics.mean(own):.4f} vs another's "
            f"{textmetrics.mean(rot):.4f}, gap {iv}",
            iv,
        )
    reached = _reachable(references, training)
    share = reached / len(references) if references else 0.0
    out["correctness"] = Judgeability(
        "correctness",
        reached >= MIN_REACHABLE_COUNT and share >= MIN_REACHABLE,
        f"{reached} of {len(references)} references reachable by a training answer "
        f"(needs {MIN_REACHABLE:.0%} and {MIN_REACHABLE_COUNT})",
    )
    return out


def gaps(
    own: dict[str, list[float]], rotated: dict[str, list[float]], resamples: int, seed: int
) -> dict[str, Interval]:
    """Own minus rotated, per metric, paired over the set's answers."""
    return {m: paired_bootstrap(own[m], rotated[m], resamples, seed) for m in rotated}


@dataclass(frozen=True)
class Relevance:
    """What the gate and the report need: per set, which metrics can judge it; per candidate,
    set and metric, the relevance gap."""

    judge: dict[str, dict[str, Judgeability]]
    gaps: dict[str, dict[str, dict[str, Interval]]]

    def can_judge(self, set_name: str, metric: str) -> bool:
        j = self.judge.get(set_name, {}).get(metric)
        return j is None or j.can_judge

    def as_dict(self) -> dict:
        return {
            "judgeable": {
                s: {m: j.as_dict() for m, j in by_metric.items()}
                for s, by_metric in self.judge.items()
            },
            "gaps": {
                who: {s: {m: iv.as_dict() for m, iv in ms.items()} for s, ms in sets.items()}
                for who, sets in self.gaps.items()
            },
        }


def measure(
    sets: dict, scores: dict, training, resamples: int, seed: int, with_semantic: bool = False
) -> Relevance:
    """Judgeability of every reference set and the relevance gaps of every candidate on it.
    `sets[name]` are the items (pipeline/evaluation/evalsets.py), `scores[candidate][name]` their
    ItemScores (pipeline/evaluation/scoring.py); `with_semantic` adds the embedding metric."""
    metrics = METRICS + ((SEMANTIC,) if with_semantic else ())
    from pipeline.evaluation.scoring import per_item

    judge: dict[str, dict[str, Judgeability]] = {}
    found: dict[str, dict[str, dict[str, Interval]]] = {}
    for name, items in sets.items():
        if not items or items[0].kind != "reference":
            continue
        refs = [i.reference or "" for i in items]
        judge[name] = judgeability(refs, training, resamples, seed, metrics)
        target = rotation(refs, seed)
        turns = [i.user_turns for i in items]
        for who, by_set in scores.items():
            got = by_set[name]
            own = {m: per_item(got, m) for m in metrics}
            credited = [not x.stock for x in got]
            answers = [x.answer for x in got]
            rot = rotated_scores(turns, answers, refs, credited, target, training, metrics)
            found.setdefault(who, {})[name] = gaps(own, rot, resamples, seed)
    return Relevance(judge, found)
