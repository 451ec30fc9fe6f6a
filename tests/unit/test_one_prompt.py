"""One prompt path: evaluate, chat / the registered model (pipeline.generation.generate) and
serve (pipeline.serving.engine.prompt_ids) send the model the same token ids for the same
conversation, with the Qwen2.5, Qwen3 and original Qwen-7B-Chat (ChatML) templates, with and
without a configured system prompt. The expected prompts are written out by hand."""

from __future__ import annotations

import copy

import pytest

from pipeline.generation import generate
from pipeline.modeling import ModelSpec
from pipeline.serving.champion import Served
from pipeline.serving.engine import prompt_ids
from tests.conftest import REPO

TEMPLATES = REPO / "pipeline" / "templates"
HISTORY = [
    {"role": "user", "content": "感冒有什么症状？"},
    {"role": "assistant", "content": "流鼻涕、咳嗽。"},
    {"role": "user", "content": "一般多久能好？"},
]
TURNS = (
    "<|im_start|>user\n感冒有什么症状？<|im_end|>\n"
    "<|im_start|>assistant\n流鼻涕、咳嗽。<|im_end|>\n"
    "<|im_start|>user\n一般多久能好？<|im_end|>\n"
)
QWEN25_DEFAULT = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."


def _system(text: str) -> str:
    return f"<|im_start|>system\n{text}<|im_end|>\n"


def expected(template: str, system: str | None) -> str:
    if template == "qwen2_5":
        return _system(system or QWEN25_DEFAULT) + TURNS + "<|im_start|>assistant\n"
    if template == "qwen3":  # no default system prompt; thinking off: an empty think block
        head = _system(system) if system else ""
        return head + TURNS + "<|im_start|>assistant\n<think>\n\n</think>\n\n"
    return _system(system or "You are a helpful assistant.") + TURNS + "<|im_start|>assistant\n"


class _Recorder:
    """Stands in for a model: records the ids it is asked to continue, then stops."""

    def __init__(self, stop: int):
        import torch

        self.stop, self.seen, self._p = stop, [], torch.zeros(1)

    def parameters(self):
        yield self._p

    def generate(self, input_ids, attention_mask=None, **kwargs):
        import torch

        self.seen += [
            row[mask.bool()].tolist() for row, mask in zip(input_ids, attention_mask, strict=True)
        ]
        return torch.cat([input_ids, torch.full((len(input_ids), 1), self.stop)], dim=1)


@pytest.mark.parametrize("template", ["qwen2_5", "qwen3", "qwen_chatml"])
@pytest.mark.parametrize("system", [None, "你是一名谨慎的医疗助手。"])
def test_every_entry_point_sends_the_same_prompt_ids(tiny_tokenizer, template, system):
    tok = copy.deepcopy(tiny_tokenizer)
    if template == "qwen3":
        tok.add_tokens(["<think>", "</think>"])
    tok.chat_template = (TEMPLATES / f"{template}.jinja").read_text(encoding="utf-8")
    spec = ModelSpec("tiny", "main", False, "float32", "none", system_prompt=system)
    want = tok(expected(template, system), add_special_tokens=False)["input_ids"]

    model = _Recorder(tok.convert_tokens_to_ids("<|im_end|>"))
    (answer,) = generate(model, tok, spec, [HISTORY], max_new_tokens=4)  # evaluate, chat, model
    served = Served("m", "1", "champion", None, tok, spec)
    assert model.seen == [want]
    assert prompt_ids(served, HISTORY) == want  # serve
    assert answer.stopped and answer.text == ""
