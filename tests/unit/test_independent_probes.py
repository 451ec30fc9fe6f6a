"""The independent probes (data/eval/safety_probes_independent.jsonl) stay independent: written
apart from the training chats, never read by data generation, sharing no 12-character window
(after normalisation) with any training prompt; and they cover what issue 18 asks for."""

from __future__ import annotations

import builtins
import io
import json
import re
import sys
import unicodedata
from collections import Counter
from pathlib import Path

import pytest

from pipeline.config import load_config
from pipeline.errors import ConfigError, DataValidationError
from pipeline.evaluation import evalsets, safety
from tests.conftest import REPO

sys.dont_write_bytecode = True
sys.path.insert(0, str(REPO / "data"))
import make_dataset  # noqa: E402

PROBES = REPO / "data" / "eval" / "safety_probes_independent.jsonl"
WINDOW = 12
FORMS = ("stmt", "third", "narr", "coll", "misspell", "turn")
MEDICATION = ("high_risk_dose", "antibiotic_no_rx", "stop_medication", "diagnosis")


def _norm(text: str) -> str:
    return re.sub(r"[\W_]+", "", unicodedata.normalize("NFKC", text).lower())


def _windows(text: str) -> set[str]:
    t = _norm(text)
    return {t[i : i + WINDOW] for i in range(len(t) - WINDOW + 1)}


def shared_windows(training_prompts: list[str], probes: list[safety.Probe]) -> dict[str, str]:
    """{probe id: a training prompt} for every probe whose user turns share a window with it."""
    owner = {
        w: p.id
        for p in probes
        for t in p.history
        if t["role"] == "user"
        for w in _windows(t["content"])
    }
    return {owner[w]: text for text in training_prompts for w in _windows(text) if w in owner}


def _raw_prompts() -> list[str]:
    """Every user prompt of every JSON / JSON Lines file under data/raw: conversations
    (project, ShareGPT, OpenAI) and preference pairs (TRL's prompt, MedicalGPT's question)."""
    out: list[str] = []
    for path in sorted((REPO / "data" / "raw").rglob("*.json*")):
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".json":  # a JSON array of records
            rows = json.loads(text)
        else:
            rows = [json.loads(x) for x in text.splitlines() if x.strip()]
        for row in rows:
            for key in ("prompt", "question", "instruction", "input"):
                if isinstance(row.get(key), str):
                    out.append(row[key])
            turns = row.get("conversations") or row.get("messages") or []
            if isinstance(row.get("prompt"), list):  # TRL's conversational preference format
                turns = turns or row["prompt"]
            out += [
                t.get("content", t.get("value", ""))
                for t in turns
                if t.get("role", t.get("from")) in ("user", "human")
            ]
    return out


def _generated_prompts() -> list[str]:
    return [
        t["content"]
        for row in make_dataset.build()["train"]
        for t in row["conversations"]
        if t["role"] == "user"
    ]


def test_the_probes_cover_situations_forms_and_categories():
    probes = safety.load_probes(PROBES)
    cats = Counter(p.category for p in probes)
    red = [p for p in probes if p.category == "red_flag"]
    situations = {p.id.split("-")[2] for p in red}
    assert len(probes) >= 120 and len(red) >= 70 and len(situations) >= 15, (len(probes), cats)
    red_forms = {p.id.split("-")[3] for p in red}
    med_forms = {p.id.split("-")[3] for p in probes if p.category in MEDICATION}
    assert set(FORMS) <= red_forms and set(FORMS) <= med_forms
    assert all(cats[c] >= 10 for c in MEDICATION)
    turns = [p for p in probes if p.context]
    assert len(turns) >= 20 and all(p.id.split("-")[3] == "turn" for p in turns)
    narratives = [p for p in red if p.id.split("-")[3] == "narr"]
    assert all(len(p.prompt) >= 60 for p in narratives)


def test_no_training_prompt_shares_a_window_with_a_probe():
    probes = safety.load_probes(PROBES)
    hits = shared_windows(_generated_prompts() + _raw_prompts(), probes)
    assert not hits, f"training prompts share a {WINDOW}-character window with probes: {hits}"


def test_the_window_check_finds_a_probe_reworded_into_training():
    probes = safety.load_probes(PROBES)
    probe = next(p for p in probes if p.id.startswith("ind-rf-stroke-narr"))
    # a generator that reuses the middle of a narrative, punctuation and spacing changed
    leaked = "我家老人" + probe.prompt[30:50].replace("，", " ") + "，怎么办？"
    assert probe.id in shared_windows([*_generated_prompts()[:50], leaked], probes)
    followup = next(p for p in probes if p.context)
    assert followup.id in shared_windows([followup.prompt], probes)


def test_data_generation_never_reads_the_probes(tmp_path, monkeypatch):
    name = PROBES.name
    sources = [
        REPO / "data" / "make_dataset.py",
        *sorted((REPO / "data" / "knowledge").glob("*.py")),
    ]
    for src in sources:
        assert name not in src.read_text(encoding="utf-8"), src
    opened: list[str] = []
    real_open = builtins.open
    real_io_open = io.open

    def spy(file, *args, **kwargs):
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", spy)
    monkeypatch.setattr(io, "open", spy)
    assert (
        make_dataset.main(["--out", str(tmp_path / "train.jsonl"), "--eval-dir", str(tmp_path)])
        == 0
    )
    monkeypatch.setattr(builtins, "open", real_open)
    monkeypatch.setattr(io, "open", real_io_open)
    assert opened, "the spy saw no file at all"
    assert not [f for f in opened if Path(f).name == name]
    assert not (tmp_path / name).exists()


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"id": "x", "category": "red_flag", "messages": []}, "non-empty list"),
        (
            {
                "id": "x",
                "category": "red_flag",
                "messages": [{"role": "assistant", "content": "你好"}],
            },
            "messages[0] has role 'assistant'",
        ),
        (
            {
                "id": "x",
                "category": "red_flag",
                "messages": [
                    {"role": "user", "content": "头疼"},
                    {"role": "assistant", "content": "休息"},
                ],
            },
            "must end with the user turn",
        ),
        (
            {
                "id": "x",
                "category": "red_flag",
                "messages": [
                    {"role": "user", "content": "头疼"},
                    {"role": "assistant", "content": " "},
                    {"role": "user", "content": "吐了"},
                ],
            },
            "messages[1] has an empty content",
        ),
        ({"id": "x", "category": "red_flag", "prompt": "a", "messages": []}, "expected an object"),
    ],
)
def test_a_bad_multi_turn_probe_is_an_error_naming_file_line_and_id(tmp_path, record, message):
    path = tmp_path / "probes.jsonl"
    good = {"id": "ok", "category": "identity", "prompt": "你是谁？"}
    path.write_text(
        json.dumps(good) + "\n" + json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    with pytest.raises(DataValidationError) as err:
        safety.load_probes(path)
    assert f"{path}:2" in str(err.value) and message in str(err.value)


def test_a_multi_turn_probe_is_asked_with_its_turns_and_scored_on_them():
    items = evalsets.safety_items(PROBES, "safety_independent")
    item = next(i for i in items if len(i.history) == 3)
    assert [t["role"] for t in item.history] == ["user", "assistant", "user"]
    assert item.set == "safety_independent" and item.kind == "safety"
    assert evalsets.file_sets([PROBES], REPO)["safety_probes_independent"][0].kind == "safety"


def test_the_default_config_gates_on_the_independent_probes_and_rejects_a_mislabelled_set():
    cfg = load_config(REPO / "params.yaml")
    sets = {s.name: s for s in cfg.evaluate.sets}
    assert sets["safety_independent"].kind == "safety"
    assert (REPO / sets["safety_independent"].path) == PROBES
    wrong = [{**sets["safety_independent"].model_dump(), "format": "project"}]
    with pytest.raises(ConfigError, match="kind safety, format probes"):
        load_config(REPO / "params.yaml", {"evaluate.sets": wrong})


def test_score_without_files_reads_both_probe_sets():
    from pipeline.evaluation.score import probe_files

    cfg = load_config(REPO / "params.yaml")
    files = probe_files(cfg)
    assert files == [REPO / "data/eval/safety_probes.jsonl", PROBES]
    sets = evalsets.file_sets(files, REPO)
    assert {k: len(v) for k, v in sets.items()} == {
        "safety_probes": 63,
        "safety_probes_independent": len(safety.load_probes(PROBES)),
    }
