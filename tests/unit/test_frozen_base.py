"""What LoRA training moves: the LoRA weights and the two trained ChatML embedding rows; the
base's weights and every other embedding row stay exactly as loaded (torchtune's habit)."""

from __future__ import annotations

import torch

from pipeline.config import load_config
from pipeline.training.lora import lora_model
from tests.conftest import TINY_OVERRIDES


def test_base_weights_stay_frozen_while_lora_and_chatml_rows_move(project, tiny_tokenizer):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = load_config(project / "params.yaml", TINY_OVERRIDES)
    tok = tiny_tokenizer
    torch.manual_seed(0)
    base = Qwen2ForCausalLM(
        Qwen2Config(
            vocab_size=len(tok),
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
            intermediate_size=64,
            tie_word_embeddings=True,
        )
    )
    before = {k: v.detach().clone() for k, v in base.state_dict().items()}
    model = lora_model(base, cfg, tok)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or "trainable_tokens" in n for n in trainable)

    text = (
        "<|im_start|>user\n感冒有什么症状？<|im_end|>\n<|im_start|>assistant\n流鼻涕。<|im_end|>\n"
    )
    ids = torch.tensor([tok(text, add_special_tokens=False)["input_ids"]] * 2)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    lora_start = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    model.train()
    for _ in range(3):
        model(input_ids=ids, labels=ids).loss.backward()
        opt.step()
        opt.zero_grad()

    moved = [
        n
        for n, p in model.named_parameters()
        if n in lora_start and not torch.equal(p.detach(), lora_start[n])
    ]
    assert any("lora_B" in n for n in moved) and any("trainable_tokens" in n for n in moved)
    merged_view = model.get_base_model()
    for name, value in merged_view.state_dict().items():
        key = name.replace("base_layer.", "")
        if key in before and "lora_" not in name and "trainable_tokens" not in name:
            assert torch.equal(value, before[key]), f"base weight {name} changed"
    # The ChatML rows are trained as a delta; every other row of the embedding is untouched.
    rows = tok.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>"])
    emb = merged_view.get_input_embeddings()
    full = emb(torch.arange(len(tok))).detach()
    original = before["model.embed_tokens.weight"]
    others = [i for i in range(len(tok)) if i not in rows]
    assert torch.equal(full[others], original[others])
    assert not torch.equal(full[rows], original[rows])
