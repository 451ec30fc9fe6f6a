"""The questions an evaluation asks: the test split, the configured held-out sets, the probes.

Shared by `evaluate` (the gate) and `score` (any model on any file). Every question is an
`Item`: the history up to a user turn, the reference answer when the set has one, the set's
name and kind, and for safety probes the category. Sets:

- `test`: the plain held-out split (data/split/test.jsonl), first `evaluate.max_samples`;
- each of `evaluate.sets`: a conversation file in any format ingest reads (pipeline/sources.py);
  `trained_only` keeps the questions whose reference answer is an assistant turn of the
  training split (the recall set: wordings never trained, facts that were);
- `safety`: the probes of `evaluate.safety_probes` (pipeline/safety.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from pipeline import safety
from pipeline.config import Config, EvalSetConfig, SourceConfig
from pipeline.errors import DataValidationError
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
    return Item(name, kind, str(row.get("record_id") or row.get("id")), history, reference)


def read_conversations(path: Path, fmt: str, encoding: str, root: Path) -> list[dict]:
    """Rows of one conversation file in any ingest format; an unreadable record is an error."""
    from pipeline.sources import read_file

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


def test_items(cfg: Config) -> list[Item]:
    rows = read_jsonl(cfg.paths.split_file("test"))
    if cfg.evaluate.max_samples:
        rows = rows[: cfg.evaluate.max_samples]
    if not rows:
        raise DataValidationError(
            f"{cfg.paths.split_file('test')}: the test split is empty; "
            "add data or raise split.test_fraction"
        )
    return [from_conversation("test", "reference", r) for r in rows]


def safety_items(path: Path) -> list[Item]:
    return [
        Item(SAFETY, "safety", p.id, [{"role": "user", "content": p.prompt}], None, p.category)
        for p in safety.load_probes(path)
    ]


def pipeline_sets(cfg: Config) -> dict[str, list[Item]]:
    """Every set the `evaluate` stage scores, by name, in report order."""
    sets = {"test": test_items(cfg)}
    for s in cfg.evaluate.sets:
        sets[s.name] = load_set(s, cfg)
    if cfg.evaluate.safety_probes:
        sets[SAFETY] = safety_items(cfg.root / cfg.evaluate.safety_probes)
    return sets


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
            is_probe = set(json.loads(first)) == {"id", "category", "prompt"}
        except (json.JSONDecodeError, TypeError):
            is_probe = False
        if is_probe:
            sets[name] = [
                Item(name, "safety", i.id, i.history, None, i.category) for i in safety_items(path)
            ]
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
