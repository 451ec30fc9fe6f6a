"""Chinese text metrics, computed here because MLflow's ROUGE drops non-ASCII text.

Conventions (also in the README and the evaluation report):
- character tokens: every non-whitespace character, punctuation kept;
- word tokens: jieba's default (accurate-mode) segmentation, whitespace tokens dropped, as
  LLaMA-Factory reports ROUGE for Chinese;
- ROUGE-N / ROUGE-L: F1 (beta = 1) of n-gram overlap / of the longest common subsequence,
  per answer, averaged over answers (no stemming, no stop words);
- BLEU-4: per answer, uniform weights over character 1- to 4-grams, clipped precisions with
  add-one smoothing for n >= 2 (Lin & Och 2004), times the brevity penalty; averaged.
- repetition: per answer, the share of character 4-grams that repeat an earlier one;
- looping: an answer whose repetition is at least 0.3, or that ends in the same 2-12 character
  unit three or more times in a row ("血压高，血压高，血压高…"). Hand-written answers of the
  default data score 0.0-0.05 repetition; a loop of three copies already scores 0.4+.
"""

from __future__ import annotations

import math
import re
from collections import Counter


def chars(text: str) -> list[str]:
    return [c for c in text if not c.isspace()]


def words(text: str) -> list[str]:
    import logging

    import jieba

    jieba.setLogLevel(logging.WARNING)
    return [w for w in jieba.lcut(text) if w.strip()]


def _lcs(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence, bit-parallel (Hyyrö 2004): one integer of
    len(b) bits per row instead of a row of len(b) cells, the same number as the textbook
    dynamic programme (tests/unit/test_split_metrics_gate.py checks it against one) at a tenth
    of its time or less: evaluate computes it for every answer and every relevance rotation."""
    if not a or not b:
        return 0
    match: dict[str, int] = {}
    for i, y in enumerate(b):
        match[y] = match.get(y, 0) | (1 << i)
    full = (1 << len(b)) - 1
    v = full  # a 0 bit at i: row i of the table gained one over the row above
    for x in a:
        u = v & match.get(x, 0)
        v = ((v + u) | (v - u)) & full
    return len(b) - v.bit_count()


def _f1(match: int, n_pred: int, n_ref: int) -> float:
    if match == 0:
        return 0.0
    precision, recall = match / n_pred, match / n_ref
    return 2 * precision * recall / (precision + recall)


def rouge_n(prediction: str, reference: str, n: int, tokenize=chars) -> float:
    p, r = _ngrams(tokenize(prediction), n), _ngrams(tokenize(reference), n)
    if not p or not r:
        return 0.0
    return _f1(sum((p & r).values()), sum(p.values()), sum(r.values()))


def rouge_l(prediction: str, reference: str, tokenize=chars) -> float:
    p, r = tokenize(prediction), tokenize(reference)
    if not p or not r:
        return 0.0
    return _f1(_lcs(p, r), len(p), len(r))


def _ngrams(tokens: list[str], n: int) -> Counter:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def bleu4(prediction: str, reference: str) -> float:
    p, r = chars(prediction), chars(reference)
    if not p or not r:
        return 0.0
    log_sum = 0.0
    for n in range(1, 5):
        pred, ref = _ngrams(p, n), _ngrams(r, n)
        match = sum(min(c, ref[g]) for g, c in pred.items())
        total = sum(pred.values())
        if n == 1:
            if match == 0:
                return 0.0
            log_sum += math.log(match / total)
        else:
            log_sum += math.log((match + 1) / (total + 1))
    brevity = 1.0 if len(p) > len(r) else math.exp(1 - len(r) / len(p))
    return brevity * math.exp(log_sum / 4)


def repetition(text: str, n: int = 4) -> float:
    grams = [tuple(text[i : i + n]) for i in range(len(text) - n + 1)]
    return 1 - len(set(grams)) / len(grams) if grams else 0.0


_TAIL_LOOP = re.compile(r"(.{2,12}?)\1{2,}[^\S]*.{0,12}$", re.S)


def looping(text: str) -> bool:
    """True for an answer that loops (see the module docstring)."""
    compact = "".join(text.split())
    return repetition(compact) >= 0.3 or bool(_TAIL_LOOP.search(compact))


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0
