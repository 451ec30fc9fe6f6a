"""Chinese text metrics, computed here because MLflow's ROUGE drops non-ASCII text.

Conventions (also in the README):
- tokenization: characters, after removing all whitespace; punctuation is kept;
- ROUGE-L: F1 (beta = 1) of the longest common subsequence of characters, per answer, averaged;
- BLEU-4: per answer, uniform weights over character 1- to 4-grams, clipped precisions with
  add-one smoothing for n >= 2 (Lin & Och 2004), times the brevity penalty; averaged.
"""

from __future__ import annotations

import math
from collections import Counter


def chars(text: str) -> list[str]:
    return [c for c in text if not c.isspace()]


def _lcs(a: list[str], b: list[str]) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(prediction: str, reference: str) -> float:
    p, r = chars(prediction), chars(reference)
    if not p or not r:
        return 0.0
    lcs = _lcs(p, r)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(p), lcs / len(r)
    return 2 * precision * recall / (precision + recall)


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


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0
