"""Generate the synthetic Chinese medical dialogue corpus used for fine-tuning.

The knowledge table (data/knowledge/*.py) holds short, conservative, hand-written
answers about common conditions across departments. This script turns every
condition into single-turn and multi-turn conversations and writes them as JSON
Lines, one {"conversations": [...]} object per line. Output is deterministic:
two runs produce byte-identical files.

Regenerate from the repository root with:

    python3 data/make_dataset.py            # writes data/raw/medical_dialogues.jsonl
    python3 data/make_dataset.py --out PATH # writes somewhere else

It also writes the safety preference pairs of the `align` stage (knowledge/preference.py) to
data/preference/safety_pairs.jsonl.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent
DEFAULT_OUT = DATA_DIR / "raw" / "medical_dialogues.jsonl"
EVAL_DIR = DATA_DIR / "eval"
PREFERENCE_OUT = DATA_DIR / "preference" / "safety_pairs.jsonl"
SEED = 20240611

# Keep the repository clean: importing the table must not write __pycache__.
sys.dont_write_bytecode = True
sys.path.insert(0, str(DATA_DIR))
from knowledge import (  # noqa: E402
    CONDITIONS,
    emergencies,
    medication,
)
from knowledge.preference import PAIRS as PREFERENCE_PAIRS  # noqa: E402
from knowledge.preference import UNSAFE  # noqa: E402
from knowledge.safety import ANSWERS as SAFETY_ANSWERS  # noqa: E402
from knowledge.safety import (  # noqa: E402
    MEDICATION_FORMS,
    RED_FLAG_COLLOQUIAL,
    RED_FLAG_ENDINGS,
    RED_FLAG_FOLLOW_UPS,
    RED_FLAG_OPENERS,
    RED_FLAG_SIGNS,
    RED_FLAG_STATEMENT_ENDINGS,
    RED_FLAG_STORY_CLOSINGS,
    RED_FLAG_STORY_OPENINGS,
    RED_FLAG_SUBJECTS,
    RED_FLAG_THIRD_PERSON,
    SAFETY_PROBES,
    SAFETY_TRAIN,
)
from knowledge.unknown import CAUTIOUS, UNKNOWN_CONDITIONS  # noqa: E402

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

# Other wordings of the common follow-up questions. Training uses some of them and the recall
# set asks with one that this condition's training conversations never used.
FOLLOW_UP_WORDINGS: tuple[tuple[str, ...], ...] = (
    ("需要做什么检查？", "要做哪些检查？", "去医院要查些什么？"),
    ("孕妇能用吗？", "怀孕了可以用吗？", "孕期能不能用？"),
    ("一般多久能好？", "大概多长时间能好？", "多久可以恢复？"),
    ("吃了药还不好怎么办？", "用了药还没好怎么办？", "吃药没效果怎么办？"),
    ("孩子可以用吗？", "小孩能用吗？", "儿童可以用吗？"),
    ("饮食上要注意什么？", "吃东西要注意什么？", "饮食方面有什么讲究？"),
    ("会复发吗？", "以后还会再犯吗？", "容易复发吗？"),
    ("会传染吗？", "会传给别人吗？", "有传染性吗？"),
    ("孩子可以吃吗？", "小孩能吃吗？", "儿童可以吃吗？"),
    ("需要做手术吗？", "要不要做手术？", "一定要开刀吗？"),
)
WORDINGS: dict[str, tuple[str, ...]] = {w[0]: w for w in FOLLOW_UP_WORDINGS}

# Phrasings per fact in the training data; the recall set asks with one more.
TRAIN_PHRASINGS = 2
# Conditions held out of training entirely: the unseen-topic evaluation set asks about them.
UNSEEN_TOPICS: tuple[str, ...] = (
    "胃食管反流",
    "耳石症",
    "强迫症",
    "甲沟炎",
    "肩周炎",
    "前列腺炎",
    "幼儿急疹",
    "乳腺增生",
    "带状疱疹",
    "干眼症",
)
UNSEEN_KINDS: tuple[str, ...] = ("sym", "med", "doc")
RECALL_CORE_PER_KIND = 12  # recall items per core question kind (6 kinds)
RECALL_FOLLOW_UPS = 24  # recall items asking a follow-up in an unseen wording


def check_entry(entry: dict) -> None:
    """Fail loudly if a table entry is missing a field or is malformed."""
    missing = [key for key in REQUIRED_KEYS if key not in entry]
    if missing:
        raise ValueError(f"{entry.get('name', '?')}: missing {missing}")
    for key in ("fu1", "fu2", "fu3"):
        if key in entry and (not isinstance(entry[key], tuple) or len(entry[key]) != 2):
            raise ValueError(f"{entry['name']}: {key} must be a (question, answer) tuple")


def phrasings(entry: dict, kind: str, rng: random.Random) -> list[str]:
    """Every phrasing of one kind's opening question, in this entry's own random order; a
    fixed question from `qs` comes first (it must stay in training: README examples)."""
    subject = entry.get("q", entry["name"])
    forms = [t.format(c=subject) for t in TEMPLATES[kind]]
    rng.shuffle(forms)
    fixed = entry.get("qs", {}).get(kind)
    return [fixed] + [f for f in forms if f != fixed] if fixed else forms


def turns(user: str, assistant: str) -> Conversation:
    """One user/assistant exchange."""
    return [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]


def follow_up_wordings(question: str, rng: random.Random) -> list[str]:
    forms = list(WORDINGS.get(question, (question,)))
    rng.shuffle(forms)
    return forms


def conversations_for(entry: dict, rng: random.Random) -> tuple[list[Conversation], list[dict]]:
    """Training conversations of one condition and its recall candidates (unseen wordings)."""
    check_entry(entry)
    train: list[Conversation] = []
    recall: list[dict] = []
    chain: dict[str, tuple[str, ...]] = entry.get("chain", FOLLOW_UPS)
    for kind in KINDS:
        asked = phrasings(entry, kind, rng)
        follow = [
            (key, follow_up_wordings(entry[key][0], rng))
            for key in chain.get(kind, ())
            if key in entry
        ]
        for i in range(TRAIN_PHRASINGS):
            convo = turns(asked[i], entry[kind])
            for key, forms in follow:
                convo += turns(forms[i % len(forms)], entry[key][1])
            train.append(convo)
        meta = {"condition": entry["name"], "kind": kind}
        recall.append({**meta, "conversations": turns(asked[TRAIN_PHRASINGS], entry[kind])})
        for key, forms in follow:
            if len(forms) > TRAIN_PHRASINGS:
                recall.append(
                    {
                        "condition": entry["name"],
                        "kind": key,
                        "conversations": turns(asked[0], entry[kind])
                        + turns(forms[TRAIN_PHRASINGS], entry[key][1]),
                    }
                )
    return train, recall


def unknown_conversations(rng: random.Random, names=UNKNOWN_CONDITIONS) -> list[Conversation]:
    """Questions about conditions the table does not cover, answered cautiously."""
    convos = []
    for name in names:
        for kind in rng.sample(KINDS, 1):
            question = rng.choice(TEMPLATES[kind]).format(c=name)
            convos.append(turns(question, CAUTIOUS))
    return convos


def safety_conversations(
    rng: random.Random, answers: dict[str, str] = SAFETY_ANSWERS
) -> list[Conversation]:
    """The written safety chats, and each emergency sign asked by three people."""
    convos = [turns(prompt, answers[category]) for category, prompt in SAFETY_TRAIN]
    for sign in RED_FLAG_SIGNS:
        for who in rng.sample(RED_FLAG_SUBJECTS, 3):
            convos.append(turns(who + sign + rng.choice(RED_FLAG_ENDINGS), answers["red_flag"]))
    return convos


def varied_safety_conversations(
    rng: random.Random, answers: dict[str, str] = SAFETY_ANSWERS
) -> list[Conversation]:
    """Safety chats in the forms patients use besides a question: each emergency sign (the
    written ones and the colloquial ones) as a statement by someone, inside a short story, and
    in a follow-up turn after a harmless question; and the risky-medication requests in the
    same forms (knowledge/safety.py). A small model learns the situation, not the sentence."""
    signs = RED_FLAG_SIGNS + RED_FLAG_COLLOQUIAL
    people = RED_FLAG_SUBJECTS + RED_FLAG_THIRD_PERSON
    urgent = answers["red_flag"]
    convos = []
    for sign in signs:
        convos.append(
            turns(rng.choice(people) + sign + rng.choice(RED_FLAG_STATEMENT_ENDINGS), urgent)
        )
        story = rng.choice(RED_FLAG_STORY_OPENINGS) + rng.choice(people) + sign + "，"
        convos.append(turns(story + rng.choice(RED_FLAG_STORY_CLOSINGS), urgent))
    openers = [(q.format(who=who), a, who) for q, a in RED_FLAG_OPENERS for who in people]
    for sign, (question, answer, who) in zip(signs, rng.sample(openers, len(signs)), strict=True):
        later = rng.choice(RED_FLAG_FOLLOW_UPS) + who + sign + "。"
        convos.append(turns(question, answer) + turns(later, urgent))
    for category, prompt in MEDICATION_FORMS:
        if isinstance(prompt, str):
            convos.append(turns(prompt, answers[category]))
        else:
            convos.append(turns(prompt[0], prompt[1]) + turns(prompt[2], answers[category]))
    return convos


def _add_new(convo: Conversation, convos: list[Conversation], taken: set[str]) -> bool:
    """Append `convo` unless its opening turn is already `taken` (then add it there)."""
    first = convo[0]["content"]
    if first in taken:
        return False
    taken.add(first)
    convos.append(convo)
    return True


def _typo(text: str, rng: random.Random, slips: int = 2) -> str:
    """`text` with up to `slips` characters swapped for a same-sounding one (a pinyin slip)."""
    spots = [i for i, ch in enumerate(text) if ch in emergencies.TYPOS]
    chars = list(text)
    for i in rng.sample(spots, min(slips, len(spots))):
        chars[i] = emergencies.TYPOS[chars[i]]
    return "".join(chars)


def situation_conversations(
    rng: random.Random, taken: set[str], answers: dict[str, str] = SAFETY_ANSWERS
) -> list[Conversation]:
    """Every emergency of knowledge/emergencies.py in two or three of the forms patients use:
    a question with one of many endings, a statement, a story with the emergency in the middle,
    a follow-up turn after a harmless related question, and some of them typed with pinyin
    slips. Opening turns already in `taken` are not reused (and are added to it)."""
    urgent = answers["red_flag"]
    people = sorted({w for w in emergencies.ADULTS + emergencies.ELDERS if w != "我"})
    generic = [(q.format(who=w), a) for q, a in RED_FLAG_OPENERS for w in people]
    convos: list[Conversation] = []

    def add(convo: Conversation) -> bool:
        return _add_new(convo, convos, taken)

    for situation in emergencies.SITUATIONS:
        opener = situation.opener
        for i, sign in enumerate(situation.signs):
            who = rng.choice(situation.who)
            question = who + sign + rng.choice(emergencies.QUESTION_ENDINGS)
            statement = rng.choice(situation.who) + sign + rng.choice(emergencies.STATEMENT_ENDINGS)
            story = (
                rng.choice(emergencies.STORY_DETAILS)
                + rng.choice(emergencies.STORY_OPENINGS)
                + "，"
                + who
                + sign
                + "。"
                + rng.choice(emergencies.STORY_CLOSINGS)
            )
            forms = [question, statement, story]
            for text in (forms[i % 3], forms[(i + 1) % 3]):
                add(turns(text, urgent))
            if rng.random() < 0.4:
                slipped = _typo(rng.choice(forms), rng)
                add(turns(slipped, urgent))
            later = rng.choice(RED_FLAG_FOLLOW_UPS) + who + sign + "。"
            if i == 0 or rng.random() < 0.3:
                firsts = ([opener] if opener and i == 0 else []) + rng.sample(generic, len(generic))
                any(add(turns(q, a) + turns(later, urgent)) for q, a in firsts)
    return convos


MED_QUESTION_ENDINGS: tuple[str, ...] = (
    "，行不行？",
    "，可以吗？",
    "，有没有问题？",
    "，你看呢？",
    "，中不中",
)
MED_OPENERS: tuple[tuple[str, str], ...] = (
    ("{who}平时吃药要注意什么？", "按医嘱按时服药，不要自行加减或停药，有不适及时告诉医生。"),
    ("{who}的药饭前吃还是饭后吃？", "不同的药要求不同，按说明书或医生的嘱咐固定时间服用。"),
    ("{who}的药能和牛奶一起吃吗？", "有些药会受影响，一般用温开水送服，具体看说明书或问药师。"),
)


def _request_forms(body: str, rng: random.Random) -> list[str]:
    """A request (`body`: who and what, no final punctuation) as a question, a statement and a
    story; the caller picks among them."""
    body = body.rstrip("？?。")
    return [
        body + rng.choice(MED_QUESTION_ENDINGS),
        body + rng.choice(emergencies.STATEMENT_ENDINGS),
        rng.choice(emergencies.STORY_DETAILS)
        + rng.choice(emergencies.STORY_OPENINGS)
        + "，"
        + body
        + "。"
        + rng.choice(emergencies.STORY_CLOSINGS),
    ]


def medication_conversations(
    rng: random.Random,
    taken: set[str],
    answers: dict[str, str] = SAFETY_ANSWERS,
    conditions: list[dict] = CONDITIONS,
) -> list[Conversation]:
    """The risky-medication, diagnosis and identity situations of knowledge/medication.py in
    the same forms as the emergencies (so that the form does not decide the answer), and every
    condition of the table told as a statement and answered with its care advice (a statement
    is not an emergency). Opening turns in `taken` are not reused (and are added to it)."""
    people = list(emergencies.ADULTS + emergencies.ELDERS)
    openers = [(q.format(who=w), a) for q, a in MED_OPENERS for w in people if w != "我"]
    requests: list[tuple[str, str]] = []
    for drug in medication.DOSE_DRUGS:
        for want in rng.sample(medication.DOSE_WANTS, 2):
            requests.append(("high_risk_dose", f"{rng.choice(people)}在吃{drug}，{want}"))
    for drug in medication.ANTIBIOTICS:
        for want in rng.sample(medication.ANTIBIOTIC_WANTS, 2):
            why = rng.choice(medication.ANTIBIOTIC_FOR)
            requests.append(
                ("antibiotic_no_rx", f"{rng.choice(people)}{why}，{want.format(d=drug)}")
            )
    for kind, drug in medication.LONG_TERM:
        for want in rng.sample(medication.STOP_WANTS, 2):
            requests.append(("stop_medication", f"{rng.choice(people)}吃的{kind}{drug}，{want}"))
    for symptom, fear in medication.DIAGNOSIS_FEARS:
        for demand in rng.sample(medication.DIAGNOSIS_DEMANDS, 2):
            requests.append(("diagnosis", rng.choice(people) + symptom + demand.format(x=fear)))
    convos: list[Conversation] = []

    def add(convo: Conversation) -> bool:
        return _add_new(convo, convos, taken)

    for i, (category, body) in enumerate(requests):
        answer = answers[category]
        forms = _request_forms(body, rng)
        text = forms[i % 3]
        if rng.random() < 0.25:
            text = _typo(text, rng)
        if rng.random() < 0.2:
            any(
                add(turns(q, a) + turns(text, answer)) for q, a in rng.sample(openers, len(openers))
            )
        else:
            add(turns(text, answer))
    for ask in medication.IDENTITY_ASKS:
        add(turns(ask, answers["identity"]))
        slipped = _typo(ask, rng, 1)
        add(turns(slipped, answers["identity"]))
    for entry in conditions:
        told = rng.choice(("我", "家里有人")) + "得了" + entry.get("q", entry["name"])
        told += rng.choice(emergencies.STATEMENT_ENDINGS[:-1])
        # the care advice, opened differently: the same answer in a third chat would make it a
        # template (scoring.TEMPLATE_USES), which earns no credit
        add(turns(told, "别太着急，" + entry["care"]))
    return convos


def _mix_in(train: list[Conversation], extra: list[Conversation], rng: random.Random) -> None:
    """Insert `extra` at seeded places (after the held-out sets are drawn, so that adding
    training chats does not change which recall questions are asked)."""
    for convo in extra:
        train.insert(rng.randrange(len(train) + 1), convo)


def _pick(rows: list[dict], k: int, rng: random.Random) -> list[dict]:
    return rng.sample(rows, min(k, len(rows)))


def build(
    conditions: list[dict] = CONDITIONS,
    unseen_topics: tuple[str, ...] = UNSEEN_TOPICS,
    unknown: tuple[str, ...] = UNKNOWN_CONDITIONS,
    safety_answers: dict[str, str] = SAFETY_ANSWERS,
    forms: bool = True,
) -> dict[str, list[dict]]:
    """Training conversations and the held-out evaluation sets, all deterministic. The
    arguments let tests build a smaller corpus, or a deliberately wrong one, the same way;
    `forms=False` leaves out the situation and medication chats in patients' forms (770 chats
    that would outweigh a corpus of a few conditions)."""
    rng = random.Random(SEED)
    trained = [e for e in conditions if e["name"] not in unseen_topics]
    missing = set(unseen_topics) - {e["name"] for e in conditions}
    if missing:
        raise ValueError(f"unseen topics not in the knowledge table: {sorted(missing)}")
    train: list[Conversation] = []
    candidates: list[dict] = []
    for entry in trained:
        convos, recall = conversations_for(entry, rng)
        train += convos
        candidates += recall
    train += unknown_conversations(rng, unknown) + safety_conversations(rng, safety_answers)
    varied = varied_safety_conversations(random.Random(SEED + 1), safety_answers)
    firsts = [c[0]["content"] for c in train + varied]
    dupes = sorted({q for q in firsts if firsts.count(q) > 1})
    if dupes:
        raise ValueError(f"duplicate opening questions: {dupes}")
    taken = set(firsts)
    if forms:
        varied += situation_conversations(random.Random(SEED + 3), taken, safety_answers)
        varied += medication_conversations(random.Random(SEED + 4), taken, safety_answers, trained)
    rng.shuffle(train)
    recall = [
        r
        for kind in KINDS
        for r in _pick([c for c in candidates if c["kind"] == kind], RECALL_CORE_PER_KIND, rng)
    ]
    recall += _pick([c for c in candidates if c["kind"] not in KINDS], RECALL_FOLLOW_UPS, rng)
    unseen = [
        {
            "condition": e["name"],
            "kind": kind,
            "conversations": turns(
                rng.choice(TEMPLATES[kind]).format(c=e.get("q", e["name"])), e[kind]
            ),
        }
        for e in conditions
        if e["name"] in unseen_topics
        for kind in UNSEEN_KINDS
    ]
    _mix_in(train, varied, random.Random(SEED + 2))
    probes = [{"id": i, "category": c, "prompt": p} for i, c, p in SAFETY_PROBES]
    train_prompts = {c[0]["content"] for c in train}
    if train_prompts & {p["prompt"] for p in probes}:
        raise ValueError("a safety probe is also a training prompt")
    return {
        "train": [{"conversations": c} for c in train],
        "recall": [_with_id("recall", i, r) for i, r in enumerate(recall)],
        "unseen_topics": [_with_id("unseen", i, r) for i, r in enumerate(unseen)],
        "safety_probes": probes,
    }


# A preference prompt sharing this many characters in a row with a safety probe is too close.
PROBE_WINDOW = 10


def preference_pairs(
    pairs: list[tuple[str, str]] = PREFERENCE_PAIRS,
    answers: dict[str, str] = SAFETY_ANSWERS,
    probes: list[tuple[str, str, str]] = SAFETY_PROBES,
) -> list[dict]:
    """TRL prompt / chosen / rejected rows: the category's safe answer against one of its
    unsafe answers (rotated); refuses a prompt that shares a long window with a probe."""
    windows = {
        p[i : i + PROBE_WINDOW] for _, _, p in probes for i in range(len(p) - PROBE_WINDOW + 1)
    }
    rows, seen = [], {}
    for n, (category, prompt) in enumerate(pairs):
        close = [prompt[i : i + PROBE_WINDOW] for i in range(len(prompt) - PROBE_WINDOW + 1)]
        if any(w in windows for w in close):
            raise ValueError(f"preference prompt {prompt!r} is too close to a safety probe")
        k = seen[category] = seen.get(category, -1) + 1
        unsafe = UNSAFE[category]
        rows.append(
            {
                "id": f"pref-{n:03d}",
                "category": category,
                "prompt": prompt,
                "chosen": answers[category],
                "rejected": unsafe[k % len(unsafe)],
            }
        )
    return rows


def _with_id(prefix: str, i: int, row: dict) -> dict:
    """A project-format record whose id names the condition and the question kind."""
    return {
        "id": f"{prefix}-{i:03d}:{row['condition']}:{row['kind']}",
        "conversations": row["conversations"],
    }


def write(rows: list[dict], out: Path) -> None:
    """Write rows as UTF-8 JSON Lines."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8", newline="\n") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="training JSONL path")
    parser.add_argument("--eval-dir", type=Path, default=EVAL_DIR, help="evaluation sets folder")
    parser.add_argument("--preference-out", type=Path, default=PREFERENCE_OUT)
    args = parser.parse_args(argv)
    sets = build()
    write(sets["train"], args.out)
    write(preference_pairs(), args.preference_out)
    for name in ("recall", "unseen_topics", "safety_probes"):
        write(sets[name], args.eval_dir / f"{name}.jsonl")
    counts = {name: len(rows) for name, rows in sets.items()}
    print(f"wrote {counts} from {len(CONDITIONS)} conditions to {args.out} and {args.eval_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
