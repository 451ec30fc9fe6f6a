"""Generate the synthetic Chinese medical dialogue corpus used for fine-tuning.

The knowledge table (data/knowledge/*.py) holds short, conservative, hand-written
answers about common conditions across departments. This script turns every
condition into single-turn and multi-turn conversations and writes them as JSON
Lines, one {"conversations": [...]} object per line. Output is deterministic:
two runs produce byte-identical files.

Regenerate from the repository root with:

    python3 data/make_dataset.py            # writes data/raw/medical_dialogues.jsonl
    python3 data/make_dataset.py --out PATH # writes somewhere else
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent
DEFAULT_OUT = DATA_DIR / "raw" / "medical_dialogues.jsonl"
SEED = 20240611

# Keep the repository clean: importing the table must not write __pycache__.
sys.dont_write_bytecode = True
sys.path.insert(0, str(DATA_DIR))
from knowledge import CONDITIONS  # noqa: E402

Turn = dict[str, str]
Conversation = list[Turn]

# The six core question kinds every condition answers, in output order.
KINDS: tuple[str, ...] = ("sym", "cause", "care", "med", "doc", "prev")
REQUIRED_KEYS: tuple[str, ...] = ("name", "dept", *KINDS, "fu1", "fu2")

# Question phrasings per kind; "{c}" is the condition as a patient would say it.
TEMPLATES: dict[str, tuple[str, ...]] = {
    "sym": (
        "{c}有什么症状？",
        "{c}有哪些表现？",
        "{c}的症状是什么？",
        "{c}一般会有哪些症状？",
    ),
    "cause": (
        "{c}是什么原因引起的？",
        "{c}是怎么引起的？",
        "引起{c}的原因有哪些？",
        "{c}的常见病因是什么？",
    ),
    "care": (
        "{c}怎么办？",
        "{c}在家怎么护理？",
        "{c}在家可以怎么处理？",
        "{c}自己该怎么调理？",
    ),
    "med": (
        "{c}吃什么药？",
        "{c}可以用什么药？",
        "{c}常用哪些药？",
        "{c}用什么药好？",
    ),
    "doc": (
        "{c}需要去医院吗？",
        "{c}什么情况下要看医生？",
        "{c}要不要去医院？",
        "{c}出现哪些情况要就医？",
    ),
    "prev": (
        "{c}怎么预防？",
        "{c}平时要注意什么？",
        "怎样预防{c}？",
        "{c}日常生活中要注意什么？",
    ),
}

# Which core question each follow-up chain continues; an entry may override this
# with its own "chain" dict (e.g. to keep a required question single-turn).
FOLLOW_UPS: dict[str, tuple[str, ...]] = {"care": ("fu1", "fu3"), "med": ("fu2",)}


def check_entry(entry: dict) -> None:
    """Fail loudly if a table entry is missing a field or is malformed."""
    missing = [key for key in REQUIRED_KEYS if key not in entry]
    if missing:
        raise ValueError(f"{entry.get('name', '?')}: missing {missing}")
    for key in ("fu1", "fu2", "fu3"):
        if key in entry and (not isinstance(entry[key], tuple) or len(entry[key]) != 2):
            raise ValueError(f"{entry['name']}: {key} must be a (question, answer) tuple")


def question(entry: dict, kind: str, rng: random.Random) -> str:
    """Return the opening question for one kind, honouring per-entry overrides."""
    overrides: dict[str, str] = entry.get("qs", {})
    if kind in overrides:
        return overrides[kind]
    subject = entry.get("q", entry["name"])
    return rng.choice(TEMPLATES[kind]).format(c=subject)


def turns(user: str, assistant: str) -> Conversation:
    """One user/assistant exchange."""
    return [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]


def conversations_for(entry: dict, rng: random.Random) -> list[Conversation]:
    """All conversations generated from one condition."""
    check_entry(entry)
    result: list[Conversation] = []
    chain: dict[str, tuple[str, ...]] = entry.get("chain", FOLLOW_UPS)
    for kind in KINDS:
        convo = turns(question(entry, kind, rng), entry[kind])
        for key in chain.get(kind, ()):
            if key in entry:
                convo += turns(*entry[key])
        result.append(convo)
    return result


def build() -> list[Conversation]:
    """Build every conversation, shuffled deterministically, with unique openings."""
    rng = random.Random(SEED)
    convos = [c for entry in CONDITIONS for c in conversations_for(entry, rng)]
    firsts = [c[0]["content"] for c in convos]
    dupes = sorted({q for q in firsts if firsts.count(q) > 1})
    if dupes:
        raise ValueError(f"duplicate opening questions: {dupes}")
    rng.shuffle(convos)
    return convos


def write(convos: list[Conversation], out: Path) -> None:
    """Write conversations as UTF-8 JSON Lines."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8", newline="\n") as handle:
        for convo in convos:
            handle.write(json.dumps({"conversations": convo}, ensure_ascii=False) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output JSONL path")
    args = parser.parse_args(argv)
    convos = build()
    write(convos, args.out)
    print(f"wrote {len(convos)} conversations from {len(CONDITIONS)} conditions to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
