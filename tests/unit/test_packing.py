"""Packing (`train.packing: true`): several conversations in one row, none attending to another.

The logits and the loss of a packed batch must equal those of each conversation run on its
own (and of the usual padded batch), to 1e-5.
"""

from __future__ import annotations

import pytest

from pipeline.config import load_config
from pipeline.training.preprocess import encode
from pipeline.training.trainer import data_collator
from tests.conftest import ASSETS, REPO, read_rows


@pytest.fixture(scope="module")
def features(tiny_tokenizer):
    rows = read_rows(ASSETS / "conversations.jsonl")[:4]
    return [
        {k: encode(tiny_tokenizer, r["conversations"], 512)[k] for k in ("input_ids", "labels")}
        for r in rows
    ]


def _model(tok, attn: str):
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=len(tok),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=128,
        attn_implementation=attn,
    )
    model = Qwen2ForCausalLM(config).eval()
    # As the Trainer does (TrainingArguments.use_cache is False): with a KV cache, transformers
    # does not look for packed sequences and the conversations would see each other.
    model.config.use_cache = False
    return model


def _collators(tok, packing: bool):
    cfg = load_config(REPO / "params.yaml", {"train.packing": packing})
    return data_collator(cfg, tok)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_batch_equals_each_conversation_alone(tiny_tokenizer, features, attn):
    import torch

    model = _model(tiny_tokenizer, attn)
    packed = _collators(tiny_tokenizer, packing=True)(features)
    assert packed["input_ids"].shape == (1, sum(len(f["input_ids"]) for f in features))
    assert "attention_mask" not in packed
    padded = _collators(tiny_tokenizer, packing=False)(features)
    with torch.no_grad():
        out = model(**packed)
        pad_out = model(**padded)
        start = 0
        for f in features:
            n = len(f["input_ids"])
            alone = model(input_ids=torch.tensor([f["input_ids"]]))
            torch.testing.assert_close(
                out.logits[0, start : start + n], alone.logits[0], atol=1e-5, rtol=0
            )
            start += n
    # Token-weighted loss over the answers: the same as the padded batch's.
    assert abs(out.loss.item() - pad_out.loss.item()) < 1e-5


def test_concatenation_without_position_ids_would_leak(tiny_tokenizer, features):
    """The check above can fail: plain concatenation lets the second conversation see the first."""
    import torch

    model = _model(tiny_tokenizer, "sdpa")
    packed = _collators(tiny_tokenizer, packing=True)(features[:2])
    n = len(features[0]["input_ids"])
    with torch.no_grad():
        leaky = model(input_ids=packed["input_ids"]).logits[0, n:]
        alone = model(input_ids=torch.tensor([features[1]["input_ids"]])).logits[0]
    assert (leaky - alone).abs().max() > 1e-3
