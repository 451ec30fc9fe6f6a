"""Answer-only labels with the real Qwen2.5 and Qwen3 chat templates, and the original
Qwen-7B-Chat (remote code, no template of its own)."""

from __future__ import annotations

import json

import pytest

from pipeline.errors import ConfigError
from pipeline.modeling import TEMPLATES, ModelSpec, load_tokenizer, render_chat
from pipeline.training.lora import lora_targets
from pipeline.training.preprocess import IGNORE, answer_spans, encode, token_labels
from tests.conftest import ASSETS, read_rows

SYSTEM = {"role": "system", "content": "你是医生。"}
SINGLE = [
    {"role": "user", "content": "感冒有什么症状？"},
    {"role": "assistant", "content": "流鼻涕。"},
]
MULTI = [
    {"role": "user", "content": "头痛怎么办？"},
    {"role": "assistant", "content": "注意休息。"},
    {"role": "user", "content": "孩子可以吃药吗？"},
    {"role": "assistant", "content": "请遵医嘱。"},
]
QWEN25_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
NO_THINK = "<think>\n\n</think>\n\n"


@pytest.fixture(scope="module")
def qwen3_tokenizer():
    """The tiny BPE with Qwen3's template and its <think> / </think> added tokens."""
    from pipeline.training.tiny import build_tokenizer

    rows = read_rows(ASSETS / "conversations.jsonl")
    tok = build_tokenizer(["\n".join(t["content"] for t in r["conversations"]) for r in rows], 600)
    tok.add_tokens(["<think>", "</think>"])
    tok.chat_template = (TEMPLATES / "qwen3.jinja").read_text(encoding="utf-8")
    return tok


def _runs(tok, row) -> tuple[list[str], list[str]]:
    """Decoded runs of consecutive supervised tokens, and the whole text before each run."""
    runs, before, current = [], [], []
    ids, labels = row["input_ids"], row["labels"]
    for i, (tid, label) in enumerate(zip(ids, labels, strict=True)):
        assert label in (IGNORE, tid)
        if label != IGNORE and not current:
            before.append(tok.decode(ids[:i]))
        if label != IGNORE:
            current.append(tid)
        elif current:
            runs.append(tok.decode(current))
            current = []
    if current:
        runs.append(tok.decode(current))
    return runs, before


def _check(tok, messages, expected_text, expected_runs):
    row = encode(tok, messages, max_len=512)
    assert tok.decode(row["input_ids"]) == expected_text == render_chat(tok, messages)
    runs, before = _runs(tok, row)
    assert runs == expected_runs
    assert row["labels"][-1] == IGNORE  # the newline after the last <|im_end|>
    return before


@pytest.mark.parametrize("system", [False, True])
def test_qwen25_single_and_multi_turn(tiny_tokenizer, system):
    head = f"<|im_start|>system\n{SYSTEM['content'] if system else QWEN25_SYSTEM}<|im_end|>\n"
    prefix = [SYSTEM] if system else []
    _check(
        tiny_tokenizer,
        prefix + SINGLE,
        head + "<|im_start|>user\n感冒有什么症状？<|im_end|>\n"
        "<|im_start|>assistant\n流鼻涕。<|im_end|>\n",
        ["流鼻涕。<|im_end|>"],
    )
    before = _check(
        tiny_tokenizer,
        prefix + MULTI,
        head
        + "<|im_start|>user\n头痛怎么办？<|im_end|>\n<|im_start|>assistant\n注意休息。<|im_end|>\n"
        "<|im_start|>user\n孩子可以吃药吗？<|im_end|>\n<|im_start|>assistant\n请遵医嘱。<|im_end|>\n",
        ["注意休息。<|im_end|>", "请遵医嘱。<|im_end|>"],
    )
    assert before[1].endswith("孩子可以吃药吗？<|im_end|>\n<|im_start|>assistant\n")


def test_qwen3_template_is_not_prefix_stable_but_labels_follow_the_full_rendering(
    qwen3_tokenizer,
):
    tok = qwen3_tokenizer
    # Rendered alone, the first exchange carries a think block; inside the longer
    # conversation it does not. Labelling must follow the conversation's own rendering.
    alone = render_chat(tok, MULTI[:2])
    assert NO_THINK in alone and not render_chat(tok, MULTI).startswith(alone)


@pytest.mark.parametrize("system", [False, True])
def test_qwen3_single_turn_think_block_is_prompt(qwen3_tokenizer, system):
    head = "<|im_start|>system\n你是医生。<|im_end|>\n" if system else ""  # no default system
    messages = ([SYSTEM] if system else []) + SINGLE
    before = _check(
        qwen3_tokenizer,
        messages,
        head + "<|im_start|>user\n感冒有什么症状？<|im_end|>\n"
        f"<|im_start|>assistant\n{NO_THINK}流鼻涕。<|im_end|>\n",
        ["流鼻涕。<|im_end|>"],
    )
    # What the model is trained to continue is exactly the inference prompt (thinking off).
    prompt = render_chat(qwen3_tokenizer, messages[:-1], add_generation_prompt=True)
    assert before == [prompt] and prompt.endswith(f"<|im_start|>assistant\n{NO_THINK}")


@pytest.mark.parametrize("system", [False, True])
def test_qwen3_multi_turn_labels_each_answer_once(qwen3_tokenizer, system):
    head = "<|im_start|>system\n你是医生。<|im_end|>\n" if system else ""
    messages = ([SYSTEM] if system else []) + MULTI
    before = _check(
        qwen3_tokenizer,
        messages,
        head
        + "<|im_start|>user\n头痛怎么办？<|im_end|>\n<|im_start|>assistant\n注意休息。<|im_end|>\n"
        "<|im_start|>user\n孩子可以吃药吗？<|im_end|>\n"
        f"<|im_start|>assistant\n{NO_THINK}请遵医嘱。<|im_end|>\n",
        ["注意休息。<|im_end|>", "请遵医嘱。<|im_end|>"],
    )
    assert before[0].endswith("头痛怎么办？<|im_end|>\n<|im_start|>assistant\n")
    assert before[1] == render_chat(qwen3_tokenizer, messages[:-1], add_generation_prompt=True)
    row = encode(qwen3_tokenizer, messages, max_len=512)
    think_ids = set(qwen3_tokenizer.convert_tokens_to_ids(["<think>", "</think>"]))
    assert think_ids <= set(row["input_ids"])
    assert not think_ids & {y for y in row["labels"] if y != IGNORE}


def test_slow_tokenizer_path_gives_the_same_labels(tiny_tokenizer):
    class Slow:  # the original Qwen-7B-Chat's tokenizer has no offset mapping
        is_fast = False

        def __call__(self, text, **kwargs):
            return tiny_tokenizer(text, add_special_tokens=False)

    messages = [SYSTEM, *MULTI]
    text, spans = answer_spans(tiny_tokenizer, messages)
    assert token_labels(Slow(), text, spans) == token_labels(tiny_tokenizer, text, spans)


def _remote_code_dir(tmp_path, tok):
    """A folder shaped like Qwen/Qwen-7B-Chat: remote-code config, tokenizer without template."""
    folder = tmp_path / "qwen-7b-chat"
    tok.save_pretrained(folder)
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    (folder / "config.json").write_text(
        json.dumps(
            {
                "model_type": "qwen",
                "architectures": ["QWenLMHeadModel"],
                "auto_map": {
                    "AutoConfig": "configuration_qwen.QWenConfig",
                    "AutoModelForCausalLM": "modeling_qwen.QWenLMHeadModel",
                },
            }
        )
    )
    return folder


def _spec(folder, trust: bool) -> ModelSpec:
    return ModelSpec(str(folder), "main", trust, "float32", "none")


def test_remote_code_qwen_needs_trust_remote_code(tmp_path, tiny_tokenizer):
    folder = _remote_code_dir(tmp_path, tiny_tokenizer)
    with pytest.raises(ConfigError, match=r"QWenLMHeadModel.*trust_remote_code: true"):
        load_tokenizer(_spec(folder, trust=False))


def test_remote_code_qwen_gets_make_context_chatml(tmp_path, tiny_tokenizer):
    tok = load_tokenizer(_spec(_remote_code_dir(tmp_path, tiny_tokenizer), trust=True))
    # Qwen-7B-Chat's make_context: default system prompt, turns joined by newlines.
    prompt = render_chat(tok, MULTI[:3], add_generation_prompt=True)
    assert prompt == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n头痛怎么办？<|im_end|>\n<|im_start|>assistant\n注意休息。<|im_end|>\n"
        "<|im_start|>user\n孩子可以吃药吗？<|im_end|>\n<|im_start|>assistant\n"
    )
    runs, _ = _runs(tok, encode(tok, MULTI, 512))
    assert runs == ["注意休息。<|im_end|>", "请遵医嘱。<|im_end|>"]


def test_lora_targets_by_model_type():
    assert lora_targets("qwen", "all-linear") == ["c_attn", "c_proj", "w1", "w2"]
    assert lora_targets("qwen2", "all-linear") == "all-linear"
    assert lora_targets("qwen3", "all-linear") == "all-linear"
    assert lora_targets("qwen", ("c_attn",)) == ["c_attn"]
