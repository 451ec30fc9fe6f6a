"""Near-duplicate detection on the real corpus: speed, pair counts, and what the split does.

    python benchmarks/neardup.py [--corpus PATH] [--threshold 0.7] [--recall 300]

Reads the shared CSV (GB18030, question = title + "\\n" + ask), drops exact repeats as
`validate` does, then times indexing + clustering of all first questions and all first answers
(text/neardup.py), counts near-duplicate pairs, and counts the test questions / answers with
a near-duplicate in train under the exact-only split and under the near-duplicate split. With
--recall N it checks the LSH against brute-force Jaccard for N random queries. Nothing is
written. Exits with a message when the corpus is absent.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT = REPO.parent / "shared" / "data" / "cmd_internal_medicine.csv"


def load(corpus: Path) -> list[dict]:
    from pipeline.config import SourceConfig
    from pipeline.data import sources

    src = SourceConfig(
        id="cmd",
        path="-",
        format="csv",
        encoding="gb18030",
        question_columns=("title", "ask"),
        answer_column="answer",
    )
    seen, rows = set(), []
    for row in sources.read_file(corpus, src, corpus.name).rows:
        if (key := repr(row["conversations"])) not in seen:
            seen.add(key)
            rows.append(row)
    return rows


def crossing(parts: dict[str, list[dict]], threshold: float) -> tuple[int, int]:
    """Test questions / non-template test answers with a near-duplicate in train."""
    from pipeline.text import neardup
    from pipeline.text.neardup import first_answer, first_question

    train, test = parts["train"], parts["test"]
    everything = train + test + parts["val"]
    skip = neardup.templates(
        [first_question(r) for r in everything], [first_answer(r) for r in everything], threshold
    )
    asked = neardup.questions([first_question(r) for r in train], threshold)
    answered = neardup.index([first_answer(r) for r in train], threshold)
    q = sum(bool(asked.matches(first_question(r))) for r in test)
    a = sum(
        any(j not in skip for j, _ in answered.matches(first_answer(r)))
        for k, r in enumerate(test)
        if len(train) + k not in skip
    )
    return q, a


def recall(texts: list[str], threshold: float, n: int) -> str:
    from pipeline.text import neardup

    ix = neardup.index(texts, threshold)
    sets = [neardup.shingles(t) for t in texts]
    found = missed = 0
    for i in random.Random(0).sample(range(len(texts)), min(n, len(texts))):
        truth = {
            j for j, s in enumerate(sets) if j != i and neardup.jaccard(sets[i], s) >= threshold
        }
        got = {j for j, _ in ix.matches(texts[i]) if j != i}
        found, missed = found + len(truth & got), missed + len(truth - got)
    return f"{found} of {found + missed} true matches (self excepted) found"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--corpus", type=Path, default=Path(os.environ.get("CMD_CORPUS", DEFAULT)))
    parser.add_argument("--threshold", type=float, default=0.7)
    parser.add_argument("--recall", type=int, default=0, help="brute-force check of N queries")
    args = parser.parse_args()
    if not args.corpus.exists():
        sys.exit(f"{args.corpus}: not found (the shared real corpus; --corpus PATH)")
    sys.path.insert(0, str(REPO))
    from pipeline.config import load_config
    from pipeline.data import partition
    from pipeline.text import neardup

    rows = load(args.corpus)
    th = args.threshold
    print(f"{len(rows)} conversations (exact repeats dropped), threshold {th}")
    for name, get in (("questions", neardup.first_question), ("answers", neardup.first_answer)):
        texts = [get(r) for r in rows]
        w0, c0 = time.perf_counter(), time.process_time()
        pairs = neardup.index(texts, th).pairs()
        groups = neardup.components(len(texts), [(i, j) for i, j, _ in pairs])
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        largest = max(Counter(groups).values())
        print(
            f"{name}: {len(pairs)} pairs, largest cluster {largest}; {wall:.2f} s ({cpu:.2f} s CPU)"
        )
        if args.recall:
            print(f"  recall vs brute force: {recall(texts, th, args.recall)}")
    cfg = load_config(REPO / "params.yaml").split
    for label, value in (("exact-only split", None), ("near-duplicate split", th)):
        w0 = time.perf_counter()
        parts, moved = partition.partition(
            rows, cfg.model_copy(update={"near_duplicate_threshold": value})
        )
        wall = time.perf_counter() - w0
        q, a = crossing(parts, th)
        print(
            f"{label}: test {len(parts['test'])}, moved {moved}, {wall:.2f} s; test questions "
            f"with a near-duplicate in train {q}, test answers (templates excepted) {a}"
        )


if __name__ == "__main__":
    main()
