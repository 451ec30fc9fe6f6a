"""Preference pairs in TRL's and MedicalGPT's formats (pipeline/data/preference.py): parsed to
one shape, validated with file:line errors, personal data redacted before anything leaves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.config import load_config
from pipeline.data.preference import align_lineage, read_pairs
from pipeline.errors import DataValidationError
from tests.conftest import REPO

SAFE = "这可能是危及生命的急症，请立即拨打120。"
UNSAFE = "在家多喝热水，观察两天再说。"


def _write(path: Path, rows: list) -> Path:
    path.write_text(
        "".join(
            (r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows
        ),
        encoding="utf-8",
    )
    return path


def test_trl_strings_trl_conversational_and_medicalgpt_give_the_same_pair(tmp_path):
    rows = [
        {"prompt": "胸口疼得厉害，出冷汗。", "chosen": SAFE, "rejected": UNSAFE},
        {
            "prompt": [{"role": "user", "content": "胸口疼得厉害，出冷汗。"}],
            "chosen": [{"role": "assistant", "content": SAFE}],
            "rejected": [{"role": "assistant", "content": UNSAFE}],
        },
        {
            "question": "胸口疼得厉害，出冷汗。",
            "response_chosen": SAFE,
            "response_rejected": UNSAFE,
        },
    ]
    got = read_pairs(_write(tmp_path / "p.jsonl", rows), "auto").pairs
    assert len(got) == 3
    for p in got:
        assert p.prompt == ({"role": "user", "content": "胸口疼得厉害，出冷汗。"},)
        assert (p.chosen, p.rejected) == (SAFE, UNSAFE)
    row = got[0].as_trl("你是医疗助手。")
    assert row["prompt"][0] == {"role": "system", "content": "你是医疗助手。"}
    assert row["chosen"] == [{"role": "assistant", "content": SAFE}]
    assert got[0].swapped().chosen == UNSAFE and got[0].swapped().rejected == SAFE


def test_medicalgpt_history_and_system_become_earlier_turns(tmp_path):
    row = {
        "system": "你是医疗助手。",
        "history": [["我有高血压。", "请按时服药并监测血压。"]],
        "question": "降压药能停吗？",
        "response_chosen": "不要自行停药，请咨询医生。",
        "response_rejected": "血压正常了就可以直接停药。",
    }
    (pair,) = read_pairs(_write(tmp_path / "m.jsonl", [row]), "medicalgpt").pairs
    assert [m["role"] for m in pair.prompt] == ["system", "user", "assistant", "user"]
    assert pair.prompt[-1]["content"] == "降压药能停吗？"


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ('{"prompt": "x", "chosen": ', "not valid JSON"),
        ({"prompt": "胸痛", "chosen": SAFE}, "not a preference pair"),
        (
            {"prompt": "胸痛", "chosen": SAFE, "rejected": UNSAFE, "score": 1},
            "unexpected ['score']",
        ),
        ({"prompt": "  ", "chosen": SAFE, "rejected": UNSAFE}, "prompt: empty"),
        ({"prompt": "胸痛", "chosen": "", "rejected": UNSAFE}, "chosen: empty"),
        ({"prompt": "胸痛", "chosen": SAFE, "rejected": SAFE + " "}, "chosen == rejected"),
        ({"prompt": "胸痛", "chosen": 3, "rejected": UNSAFE}, "expected a string"),
        (
            {
                "prompt": [{"role": "assistant", "content": "hi"}],
                "chosen": SAFE,
                "rejected": UNSAFE,
            },
            "roles must be",
        ),
        (
            {
                "question": "胸痛",
                "response_chosen": SAFE,
                "response_rejected": UNSAFE,
                "history": "x",
            },
            "history",
        ),
    ],
)
def test_a_bad_record_is_named_by_file_and_line(tmp_path, row, expected):
    good = {"prompt": "头疼", "chosen": SAFE, "rejected": UNSAFE}
    path = _write(tmp_path / "bad.jsonl", [good, row])
    with pytest.raises(DataValidationError) as err:
        read_pairs(path, "auto", shown="data/preference/bad.jsonl")
    assert "data/preference/bad.jsonl:2:" in str(err.value) and expected in str(err.value)


def test_personal_data_is_redacted_before_any_pair_leaves(tmp_path):
    row = {
        "prompt": "我电话13812345678，邮箱zhang.san@example.com，胸口疼。",
        "chosen": SAFE,
        "rejected": "加我微信13812345678详聊。",
    }
    result = read_pairs(_write(tmp_path / "pii.jsonl", [row]), "trl")
    (pair,) = result.pairs
    text = json.dumps(pair.as_trl(), ensure_ascii=False)
    assert "13812345678" not in text and "zhang.san" not in text
    assert "[手机号]" in pair.prompt[0]["content"] and "[邮箱]" in pair.prompt[0]["content"]
    assert result.redacted == 2


def test_the_shipped_pairs_are_valid_and_lineage_names_method_beta_and_md5(tmp_path):
    cfg = load_config(REPO / "params.yaml", {"align.enabled": True})
    pairs = [p for s in cfg.align.data for p in read_pairs(REPO / s.path, s.format).pairs]
    categories = {p.category for p in pairs}
    assert len(pairs) >= 50 and {"red_flag", "high_risk_dose", "stop_medication"} <= categories
    tags = align_lineage(cfg)
    assert tags["align_method"] == cfg.align.method and tags["align_beta"] == str(cfg.align.beta)
    assert len(tags["preference_data_md5"]) == 32
    off = load_config(REPO / "params.yaml", {"align.enabled": False})
    assert align_lineage(off) == {"align_method": "sft-only"}
