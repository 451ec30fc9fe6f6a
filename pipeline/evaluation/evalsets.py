"""The questions an evaluation asks: the test split, the configured held-out sets, the probes.

Shared by `evaluate` (the gate) and `score` (any model on any file). Every question is an
`Item`: the history up to a user turn, the reference answer when the set has one, the set's
name and kind, and for safety probes the category. Sets:

- `test`: the plain held-out split (data/split/test.jsonl): a seeded sample of
  `evaluate.max_samples` stratified by source and by the source's category column (e.g. a CSV's
  department), never the first rows of the file (`sample`); `coverage` says how many of each
  source and category were judged, from how many;
- each of `evaluate.sets`: a conversation file in any format ingest reads (data/sources.py);
  `trained_only` keeps the questions whose reference answer is an assistant turn of the
  training split (the recall set: wordings never trained, facts that were);
- `safety`: the probes of `evaluate.safety_probes` (pipeline/evaluation/safety.py).
"""

from __future__ import annotations

import hashlib
import itertools
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.config import Config, EvalSetConfig, SourceConfig
from pipeline.errors import DataValidationError
from pipeline.evaluation import safety
from pipeline.io import read_jsonl

log = logging.getLogger(__name__)

SAFETY = "safety"


@dataclass(frozen=True)
class Item:
    set: str
    kind: str  # reference | unseen | safety
    id: str
    history: list[dict[str, str]] = field(repr=False)  # ends with the user turn to answer
    reference: str | None = None
    category: str | None = None  # safety probes only
    source: str | None = None  # the ingest source id (test split and sets read by ingest)
    group: str | None = None  # the source's category column (e.g. a department), if any

    @property
    def question(self) -> str:
        return self.history[-1]["content"]

    @property
    def user_turns(self) -> list[str]:
        return [t["content"] for t in self.history if t["role"] == "user"]


def from_conversation(name: str, kind: str, row: dict) -> Item:
    """The last assistant turn is the reference; everything before it is the history."""
    turns = row["conversations"]
    if turns and turns[-1]["role"] == "assistant":
        history, reference = turns[:-1], turns[-1]["content"]
    else:
        history, reference = turns, None
    where = f"{row.get('file', name)}:{row.get('line', '?')}"
    if not history or history[-1]["role"] != "user":
        raise DataValidationError(
            f"{where} (id {row.get('id', '?')}): set {name!r}: a conversation must end with a "
            "user turn, or with the assistant answer to one"
        )
    if kind == "reference" and reference is None:
        raise DataValidationError(
            f"{where} (id {row.get('id', '?')}): set {name!r} is kind reference, but this "
            "conversation has no final assistant answer"
        )
    item_id = str(row.get("record_id") or row.get("id"))
    return Item(
        name, kind, item_id, history, reference, None, row.get("source"), row.get("category")
    )


def read_conversations(path: Path, fmt: str, encoding: str, root: Path) -> list[dict]:
    """Rows of one conversation file in any ingest format; an unreadable record is an error."""
    from pipeline.data.sources import read_file

    if not path.is_file():
        raise DataValidationError(f"{path}: evaluation file not found")
    shown = str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
    src = SourceConfig(id="eval", path=shown, format=fmt, encoding=encoding)
    result = read_file(path, src, shown)
    if result.rejected:
        bad = result.rejected[0]
        raise DataValidationError(
            f"{bad['file']}:{bad['line']}: {bad['reason']} ({len(result.rejected)} unreadable "
            "record(s); evaluation files must be clean)"
        )
    return result.rows


def _trained_answers(cfg: Config) -> set[str]:
    rows = read_jsonl(cfg.paths.split_file("train"))
    return {t["content"] for r in rows for t in r["conversations"] if t["role"] == "assistant"}


def load_set(s: EvalSetConfig, cfg: Config) -> list[Item]:
    if s.kind == "safety":
        if not (cfg.root / s.path).is_file():
            raise DataValidationError(f"{s.path}: evaluation file not found")
        return safety_items(cfg.root / s.path, s.name, s.path)
    rows = read_conversations(cfg.root / s.path, s.format, s.encoding, cfg.root)
    items = [from_conversation(s.name, s.kind, r) for r in rows]
    if s.trained_only:
        trained = _trained_answers(cfg)
        kept = [i for i in items if i.reference in trained]
        log.info(
            "evaluate: set %s: %d of %d question(s) ask about facts in the training split",
            s.name,
            len(kept),
            len(items),
        )
        items = kept
    if not items:
        raise DataValidationError(f"{s.path}: evaluation set {s.name!r} has no questions")
    return items


def _stratum(row: dict) -> tuple[str, str]:
    return (str(row.get("source") or ""), str(row.get("category") or ""))


def _draw(row: dict, seed: int) -> str:
    """A row's place in the seeded order: a hash of its id, never its position in the file."""
    key = f"{seed}\x00{row.get('id') or row.get('record_id') or row['conversations']}"
    return hashlib.sha256(key.encode()).hexdigest()


def sample(rows: list[dict], n: int, seed: int) -> list[dict]:
    """`n` rows (all when n is 0 or at least len(rows)) stratified by (source, category):
    each stratum gets its share of `n` by largest remainder (at least one while there are
    fewer strata than `n`), filled in its seeded order. Returned in the seeded order, so any
    prefix (the report's examples) mixes the strata too."""
    ordered = sorted(rows, key=lambda r: _draw(r, seed))
    if not n or n >= len(rows):
        return ordered
    strata: dict[tuple[str, str], list[dict]] = {}
    for row in ordered:
        strata.setdefault(_stratum(row), []).append(row)
    quota = {k: n * len(v) / len(rows) for k, v in strata.items()}
    take = {k: int(q) for k, q in quota.items()}
    if len(strata) <= n:
        take = {k: max(1, t) for k, t in take.items()}
    by_remainder = sorted(strata, key=lambda k: (take[k] - quota[k], _draw({"id": k}, seed)))
    for k in itertools.cycle(by_remainder):
        if sum(take.values()) >= n:
            break
        if take[k] < len(strata[k]):
            take[k] += 1
    while sum(take.values()) > n:  # the minimum of one overshot n: trim the largest strata
        k = max(take, key=lambda s: (take[s], s))
        take[k] -= 1
    chosen = {id(r) for k, v in strata.items() for r in v[: take[k]]}
    return [r for r in ordered if id(r) in chosen]


def coverage(available: list[dict], judged: list[Item]) -> dict[str, dict[str, Any]]:
    """Per source: questions judged and available, and the same per category."""
    out: dict[str, dict[str, Any]] = {}
    for row in available:
        src, group = _stratum(row)
        entry = out.setdefault(src or "?", {"judged": 0, "available": 0, "categories": {}})
        entry["available"] += 1
        if group:
            entry["categories"].setdefault(group, [0, 0])[1] += 1
    for item in judged:
        entry = out[item.source or "?"]
        entry["judged"] += 1
        if item.group:
            entry["categories"][item.group][0] += 1
    return out


def test_rows(cfg: Config) -> list[dict]:
    rows = read_jsonl(cfg.paths.split_file("test"))
    if not rows:
        raise DataValidationError(
            f"{cfg.paths.split_file('test')}: the test split is empty; "
            "add data or raise split.test_fraction"
        )
    return rows


def test_items(cfg: Config, rows: list[dict] | None = None) -> list[Item]:
    rows = test_rows(cfg) if rows is None else rows
    chosen = sample(rows, cfg.evaluate.max_samples, cfg.evaluate.sample_seed)
    return [from_conversation("test", "reference", r) for r in chosen]


def near_duplicates(
    items: list[Item], train: list[dict], training, cfg: Config, answers: bool
) -> tuple[list[Item], str]:
    """Held-out items with a near-duplicate in the training split, dropped or kept per
    `evaluate.near_duplicates`; returns the items and a line for the report. A near-duplicate:
    the question (and, with `answers`, the reference) has a training text at character-trigram
    Jaccard >= `near_duplicate_threshold` (pipeline/text/neardup.py), or, with `answers`, a
    training answer already scores correct against the reference (ROUGE-L >= 0.6: a re-spun
    copy that trigram Jaccard misses; `training` is the split's medterms.TrainingAnswers)."""
    from pipeline.text import neardup

    e = cfg.evaluate
    refs = [i.reference or "" for i in items]
    found = set(
        neardup.flag_held_out(
            train, [i.user_turns[0] for i in items], refs, e.near_duplicate_threshold, answers
        )
    )
    copies = 0
    if answers:
        reached = {k for k, ref in enumerate(refs) if ref and training.reaches(ref)}
        copies = len(reached - found)
        found |= reached
    what = "question or answer" if answers else "question"
    more = f"; {copies} more reached by a training answer at ROUGE-L >= 0.6" if copies else ""
    line = (
        f"{len(found)} of {len(items)} with a near-duplicate {what} in train "
        f"(Jaccard >= {e.near_duplicate_threshold}{more}): "
        + ("excluded" if e.near_duplicates == "exclude" else "kept and flagged")
    )
    if found:
        log.info("evaluate: %s", line)
    if e.near_duplicates == "exclude":
        items = [i for k, i in enumerate(items) if k not in found]
    return items, line


Views = dict[str, tuple[str, list[int]]]


def source_views(sets: dict[str, list[Item]], primary: str) -> Views:
    """The test set's questions of each source as sets of their own, `test.<source>` -> ("test",
    indices): when the test set mixes sources, or when the gate's primary set is one of them.
    They reuse the test set's answers; nothing is asked twice."""
    groups: dict[str, list[int]] = {}
    for k, item in enumerate(sets.get("test", [])):
        groups.setdefault(f"test.{item.source}", []).append(k)
    if len(groups) > 1 or primary in groups:
        return {name: ("test", idx) for name, idx in groups.items()}
    return {}


def with_views(sets: dict[str, list[Item]], views: Views) -> dict[str, list[Item]]:
    return sets | {v: [sets[parent][k] for k in idx] for v, (parent, idx) in views.items()}


def safety_items(path: Path, name: str = SAFETY, shown: str | None = None) -> list[Item]:
    """The probes of a probe file as items of set `name` (a multi-turn probe keeps its turns)."""
    return [
        Item(name, "safety", p.id, p.history, None, p.category)
        for p in safety.load_probes(path, shown)
    ]


def pipeline_sets(
    cfg: Config, train: list[dict], training
) -> tuple[dict[str, list[Item]], dict[str, str]]:
    """Every set the `evaluate` stage scores, by name, in report order, and per set a line on
    its near-duplicates of the training split (`train`, its rows; `training`, its
    medterms.TrainingAnswers). The test split is checked before it is sampled, so that excluded
    questions are replaced; a `trained_only` set is checked on its questions only (its answers
    are trained on purpose)."""
    notes: dict[str, str] = {}
    rows = test_rows(cfg)
    everything = [from_conversation("test", "reference", r) for r in rows]
    kept, notes["test"] = near_duplicates(everything, train, training, cfg, answers=True)
    kept_ids = {i.id for i in kept}
    rows = [r for r in rows if str(r.get("record_id") or r.get("id")) in kept_ids]
    if not rows:
        raise DataValidationError(
            f"{cfg.paths.split_file('test')}: every test question has a near-duplicate in train"
        )
    sets = {"test": test_items(cfg, rows)}
    for s in cfg.evaluate.sets:
        items = load_set(s, cfg)
        if s.kind == "safety":  # probes: no reference; tests/unit keeps them out of training
            sets[s.name], notes[s.name] = items, ""
            continue
        sets[s.name], notes[s.name] = near_duplicates(
            items, train, training, cfg, not s.trained_only
        )
        if not sets[s.name]:
            raise DataValidationError(f"{s.path}: every question of set {s.name!r} is in train")
    if cfg.evaluate.safety_probes:
        sets[SAFETY] = safety_items(cfg.root / cfg.evaluate.safety_probes)
    return sets, notes


def file_sets(paths: list[Path], root: Path) -> dict[str, list[Item]]:
    """Sets for `score`: each file by its stem; a JSON Lines file of {id, category, prompt}
    records is read as safety probes, anything else as conversations (format auto or CSV)."""
    import json

    sets: dict[str, list[Item]] = {}
    for path in paths:
        if not path.is_file():
            raise DataValidationError(f"{path}: file not found")
        name = path.stem
        with path.open(encoding="utf-8", errors="replace") as f:
            first = next((line for line in f if line.strip()), "")
        try:
            is_probe = safety.is_probe_record(json.loads(first))
        except json.JSONDecodeError:
            is_probe = False
        if is_probe:
            sets[name] = safety_items(path, name)
            continue
        if path.suffix.lower() in (".csv", ".tsv"):
            raise DataValidationError(
                f"{path}: score reads JSON / JSON Lines conversation files; ingest a table with "
                "the ingest stage first"
            )
        rows = read_conversations(path, "auto", "auto", root)
        items = [
            from_conversation(name, "reference", r)
            if _ends_with_answer(r)
            else from_conversation(name, "unseen", r)
            for r in rows
        ]
        if not items:
            raise DataValidationError(f"{path}: no conversations")
        sets[name] = items
    return sets


def _ends_with_answer(row: dict) -> bool:
    turns = row["conversations"]
    return bool(turns) and turns[-1]["role"] == "assistant"
