"""The embedded base: a real HF Qwen2 folder (safetensors, no remote code) that learns."""

import json
import math

import torch

from pipeline import base
from pipeline.config import load_config
from pipeline.io import read_jsonl
from tests.conftest import ASSETS


def test_repacking_changes_neighbours_between_epochs():
    docs = [[i] * 3 for i in range(1, 30)]
    gen = torch.Generator().manual_seed(0)
    first, second = (base._packed_blocks(docs, 0, 8, gen) for _ in range(2))
    assert first.shape == second.shape == (116 // 8, 8)  # 29 docs of 3 + 29 separators
    assert not torch.equal(first, second)


def test_tiny_base_builds_loads_and_learns(tmp_path, project):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg = load_config(
        project / "params.yaml",
        {
            "tiny.vocab_size": 500,
            "tiny.hidden_size": 32,
            "tiny.num_layers": 1,
            "tiny.num_heads": 2,
            "tiny.num_kv_heads": 1,
            "tiny.intermediate_size": 64,
            "tiny.block_size": 32,
            "tiny.epochs": 12,
            "tiny.chat_warmup": 4,
        },
    )
    rows = read_jsonl(ASSETS / "conversations.jsonl")
    out = tmp_path / "base"
    result = base.build_tiny_base(rows, cfg.tiny, out)
    assert (out / "model.safetensors").exists() and not list(out.glob("*.bin"))
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "qwen2" and config["tie_word_embeddings"] is True
    assert "auto_map" not in config  # loads without remote code
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out, use_safetensors=True)
    assert len(tok) == result.vocab_size == model.config.vocab_size
    assert model.generation_config.eos_token_id == tok.convert_tokens_to_ids(
        ["<|im_end|>", "<|endoftext|>"]
    )
    assert result.final_loss < 0.8 * math.log(result.vocab_size)  # well below a uniform guess


def test_external_base_is_only_referenced(project):
    cfg = load_config(  # not downloadable here: only the reference is under test
        project / "params.yaml", {"model.base": "Qwen/Qwen2.5-7B-Instruct"}, check_base=False
    )
    result = base.run(cfg)
    assert not result.built
    assert [p.name for p in cfg.paths.base_dir.iterdir()] == ["reference.json"]
    ref = json.loads((cfg.paths.base_dir / "reference.json").read_text())
    assert ref == {"base": "Qwen/Qwen2.5-7B-Instruct", "revision": "main"}
