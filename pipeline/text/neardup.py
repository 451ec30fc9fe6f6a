"""Near-duplicate texts: character-trigram Jaccard similarity, found with MinHash LSH.

The exact rules (`checks.normalize_text`: NFKC, case, punctuation, whitespace) miss a question
asked again with one word changed, or a doctor's answer pasted again with a greeting added.
Here a text is the set of character 3-grams ("shingles") of its normalized form, and two texts
are near-duplicates when the Jaccard similarity of those sets (shared / all) reaches a
threshold: with 0.7, one character changed in a 20-character question (18 trigrams, 3 of them
replaced: 15 shared of 21) is a near-duplicate, one changed in a 10-character one is not.

Comparing every pair costs n^2 (25 M pairs for 7k texts). A seeded MinHash (`NUM_PERM`
permutations, datasketch) of each text goes into a banded LSH index instead; the bands are
chosen so that a pair AT the threshold is missed with probability below `MAX_MISS` (higher
similarities even less), and every candidate the index returns is verified with the exact
trigram Jaccard: a reported figure is exact and false candidates are dropped.

Questions of one form about different conditions ("胃炎是什么原因引起的" and "咽炎是什么原因
引起的": 0.78) are near-duplicates by characters, not by meaning: on the default data they
chained 17 conversations about 8 conditions into one cluster. `questions()` indexes questions
so that a pair naming different conditions (pipeline/text/medterms.py's term list, same topic as
there: 小儿腹泻 ~ 腹泻) is not a match; a question naming no listed condition is never vetoed.

Texts shorter than 3 characters once normalized have no trigram: they are never near-duplicates
of anything (the exact rules still apply to them).

Templates. An answer shared verbatim (normalized) by `TEMPLATE_AFTER` or more conversations is
a template (a deferral, a safety answer), not a fact. Its near-duplicates are templates too:
deferrals naming the condition ("关于痛风我没有可靠的信息，请咨询医生") differ in a word and would
otherwise chain every deferral into one cluster. The rule: a near-duplicate cluster of answers
given to `TEMPLATE_AFTER` or more distinct (normalized) questions is a template. A fact is
asked in one or two wordings; an answer given to three different questions is boilerplate.
So a non-template answer cluster spans at most two distinct questions.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

from pipeline.data.checks import normalize_text
from pipeline.errors import ConfigError

SHINGLE = 3  # characters per shingle
NUM_PERM = 128  # MinHash permutations
SEED = 1  # MinHash seed: the same texts always give the same candidates
MAX_MISS = 0.001  # LSH miss probability for a pair exactly at the threshold
TEMPLATE_AFTER = 3  # conversations sharing one answer (or distinct questions of a near cluster)


def first_question(row: dict) -> str:
    return next(t["content"] for t in row["conversations"] if t["role"] == "user")


def first_answer(row: dict) -> str:
    return next((t["content"] for t in row["conversations"] if t["role"] == "assistant"), "")


def shingles(text: str) -> frozenset[str]:
    """The character trigrams of `normalize_text(text)`; empty below 3 characters."""
    t = normalize_text(text)
    return frozenset(t[i : i + SHINGLE] for i in range(len(t) - SHINGLE + 1))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    """Exact Jaccard similarity of two shingle sets (0.0 when either is empty)."""
    if not a or not b:
        return 0.0
    shared = len(a & b)
    return shared / (len(a) + len(b) - shared)


def _check(threshold: float) -> None:
    if not 0 < threshold <= 1:
        raise ConfigError(f"near-duplicate threshold must be in (0, 1], got {threshold}")


def bands(threshold: float) -> tuple[int, int]:
    """(bands, rows per band) for the LSH: the most rows per band (fewest false candidates)
    whose chance of missing a pair at `threshold`, (1 - t^r)^b, stays below `MAX_MISS`."""
    _check(threshold)
    best = (NUM_PERM, 1)
    for r in range(1, NUM_PERM + 1):
        b = NUM_PERM // r
        if (1 - threshold**r) ** b <= MAX_MISS:
            best = (b, r)
    return best


class NearDuplicates:
    """An immutable index of texts: which of them are near-duplicates of a query.

    `matches(query)` gives (index, exact Jaccard) of every indexed text at or above the
    threshold, best first; `pairs()` the near-duplicate pairs within the indexed texts."""

    def __init__(
        self,
        texts: Sequence[str],
        threshold: float,
        accept: Callable[[str, str], bool] | None = None,
    ) -> None:
        from datasketch import MinHashLSH

        b, r = bands(threshold)
        self.threshold = threshold
        self._texts = list(texts)
        self._accept = accept  # (query, indexed text) -> still a match after the Jaccard check
        self._sets = [shingles(t) for t in texts]
        self._hashes = _minhashes(self._sets)
        self._lsh = MinHashLSH(num_perm=NUM_PERM, params=(b, r))
        with self._lsh.insertion_session() as session:
            for i, m in enumerate(self._hashes):
                if m is not None:
                    session.insert(i, m, check_duplication=False)

    def __len__(self) -> int:
        return len(self._sets)

    def _verified(self, text: str, query: frozenset[str], candidates) -> list[tuple[int, float]]:
        scored = ((j, jaccard(query, self._sets[j])) for j in candidates)
        found = [(j, s) for j, s in scored if s >= self.threshold]
        if self._accept is not None:
            found = [(j, s) for j, s in found if self._accept(text, self._texts[j])]
        return sorted(found, key=lambda x: (-x[1], x[0]))

    def matches(self, query: str) -> list[tuple[int, float]]:
        """Indexed texts whose trigram Jaccard with `query` is >= the threshold, best first."""
        q = shingles(query)
        if not q:
            return []
        (m,) = _minhashes([q])
        return self._verified(query, q, self._lsh.query(m))

    def pairs(self) -> list[tuple[int, int, float]]:
        """Every near-duplicate pair (i < j, exact Jaccard) among the indexed texts."""
        found = []
        for i, m in enumerate(self._hashes):
            if m is None:
                continue
            candidates = [j for j in self._lsh.query(m) if j > i]
            found += [
                (i, j, s) for j, s in self._verified(self._texts[i], self._sets[i], candidates)
            ]
        return sorted(found)


def _minhashes(sets: Sequence[frozenset[str]]) -> list:
    """A seeded MinHash per shingle set (None for an empty one), sharing one permutation."""
    from datasketch import LeanMinHash, MinHash

    present = [sorted(s) for s in sets if s]
    made = iter(
        LeanMinHash(m)
        for m in MinHash.generator(
            ([x.encode("utf-8") for x in s] for s in present), num_perm=NUM_PERM, seed=SEED
        )
    )
    return [next(made) if s else None for s in sets]


def index(texts: Sequence[str], threshold: float) -> NearDuplicates:
    """Index `texts` for near-duplicate queries at `threshold` (trigram Jaccard)."""
    return NearDuplicates(texts, threshold)


def same_subject(a: str, b: str) -> bool:
    """False when `a` and `b` both name conditions and none of one's is the other's topic."""
    from pipeline.text.medterms import conditions, same_topic

    ca, cb = conditions(a), conditions(b)
    return not ca or not cb or any(same_topic(x, y) for x in ca for y in cb)


def questions(texts: Sequence[str], threshold: float) -> NearDuplicates:
    """Index questions: near-duplicates at `threshold` that do not name different conditions."""
    return NearDuplicates(texts, threshold, accept=same_subject)


def components(n: int, links: Sequence[tuple[int, int]]) -> list[int]:
    """Union-find: a group id per item (the smallest item of its group), items 0..n-1."""
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in links:
        a, b = find(i), find(j)
        if a != b:
            parent[max(a, b)] = min(a, b)
    return [find(i) for i in range(n)]


def clusters(texts: Sequence[str], threshold: float) -> list[int]:
    """A cluster id per text (its smallest member's index): texts linked by near-duplicate
    pairs, transitively. A text with no near-duplicate is its own cluster."""
    return components(len(texts), [(i, j) for i, j, _ in index(texts, threshold).pairs()])


def templates(
    questions: Sequence[str],
    answers: Sequence[str],
    threshold: float,
    pairs: Sequence[tuple[int, int, float]] | None = None,
) -> set[int]:
    """Indices of the answers that are templates, one (question, answer) per conversation:
    an answer given verbatim (normalized) in `TEMPLATE_AFTER`+ conversations, or one in a
    near-duplicate answer cluster given to `TEMPLATE_AFTER`+ distinct questions. `pairs`:
    the answers' near-duplicate pairs when the caller has them (`index(answers).pairs()`)."""
    norm = [normalize_text(a) for a in answers]
    shared = Counter(norm)
    found = {i for i, a in enumerate(norm) if a and shared[a] >= TEMPLATE_AFTER}
    if pairs is None:
        pairs = index(answers, threshold).pairs()
    groups = components(len(answers), [(i, j) for i, j, _ in pairs])
    asked: dict[int, set[str]] = {}
    for g, q in zip(groups, questions, strict=True):
        asked.setdefault(g, set()).add(normalize_text(q))
    return found | {i for i, g in enumerate(groups) if len(asked[g]) >= TEMPLATE_AFTER}


def _answered(rows: Sequence[dict]) -> list[tuple[str, str]]:
    """(question, answer) for every assistant turn, each answer once per conversation."""
    out: list[tuple[str, str]] = []
    for row in rows:
        seen: set[str] = set()
        asked = ""
        for turn in row["conversations"]:
            if turn["role"] == "user":
                asked = turn["content"]
            elif turn["role"] == "assistant" and normalize_text(turn["content"]) not in seen:
                seen.add(normalize_text(turn["content"]))
                out.append((asked, turn["content"]))
    return out


def flag_held_out(
    train_rows: Sequence[dict],
    items_questions: Sequence[str],
    items_answers: Sequence[str],
    threshold: float,
    check_answers: bool,
) -> dict[int, tuple[str, float]]:
    """Held-out items that are near-duplicates of training data: item index -> ("question" or
    "answer", exact Jaccard) of its best match among the training conversations' first
    questions (not naming other conditions, see `questions`) and (with `check_answers`) their
    assistant answers, template answers excepted.
    A question match wins a tie. Exact (normalized) copies count too, with Jaccard 1.0."""
    _check(threshold)
    asked = questions([first_question(r) for r in train_rows], threshold)
    flagged: dict[int, tuple[str, float]] = {}
    for k, q in enumerate(items_questions):
        if found := asked.matches(q):
            flagged[k] = ("question", found[0][1])
    if not check_answers:
        return flagged
    answered = _answered(train_rows)
    answers = index([a for _, a in answered], threshold)
    skip = templates([q for q, _ in answered], [a for _, a in answered], threshold, answers.pairs())
    for k, a in enumerate(items_answers):
        best = next((s for j, s in answers.matches(a) if j not in skip), None)
        if best is not None and best > flagged.get(k, ("", -1.0))[1]:
            flagged[k] = ("answer", best)
    return flagged
