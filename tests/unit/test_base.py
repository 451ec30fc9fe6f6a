"""The embedded base: a real HF Qwen2 folder (safetensors, no remote code) that learns."""

import json
import logging
import math

import torch

from pipeline.config import load_config
from pipeline.io import read_jsonl
from pipeline.training import base
from tests.conftest import ASSETS, REPO


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


SMALL = {
    "tiny.vocab_size": 500,
    "tiny.hidden_size": 32,
    "tiny.num_layers": 1,
    "tiny.num_heads": 2,
    "tiny.num_kv_heads": 1,
    "tiny.intermediate_size": 64,
    "tiny.block_size": 32,
    "tiny.epochs": 12,
    "tiny.chat_warmup": 4,
}


def test_pretraining_plan_is_epochs_unless_the_token_budget_caps_it(project):
    t = load_config(project / "params.yaml", {"tiny.block_size": 10, "tiny.batch_size": 2}).tiny
    docs = [[1] * 99] * 10  # 1,000 tokens with the separators: 100 blocks, 50 steps an epoch
    plan = base.plan_pretraining(docs, t)
    assert (plan.tokens_per_epoch, plan.steps_per_epoch) == (1000, 50)
    assert plan.steps == plan.uncapped_steps == t.epochs * 50 and not plan.capped
    small = t.model_copy(update={"max_tokens": 3000})  # 3 epochs' worth
    plan = base.plan_pretraining(docs, small)
    assert plan.steps == 150 and plan.capped and plan.epochs == 3
    assert plan.uncapped_steps == t.epochs * 50


def test_default_budget_leaves_the_default_data_run_unchanged():
    """Every conversation of the committed data (a superset of its training split) still gets
    all of tiny.epochs under the default tiny.max_tokens: the default base is the same."""
    t = load_config(REPO / "params.yaml").tiny
    _, ids = base.tokenized_corpus(read_jsonl(REPO / "data/raw/medical_dialogues.jsonl"), t)
    plan = base.plan_pretraining(ids, t)
    assert not plan.capped and plan.steps == t.epochs * plan.steps_per_epoch
    # ... and the real corpus's 760 steps an epoch (6,766 conversations) would be capped.
    assert 760 * t.epochs * t.block_size * t.batch_size > 5 * t.max_tokens


def test_a_corpus_too_large_for_the_tiny_base_is_capped_and_said_so(tmp_path, project, caplog):
    cfg = load_config(project / "params.yaml", {**SMALL, "tiny.max_tokens": 32 * 4 * 7})
    caplog.set_level(logging.INFO, logger="pipeline")
    result = base.build_tiny_base(read_jsonl(ASSETS / "conversations.jsonl"), cfg.tiny, tmp_path)
    # 6 steps an epoch: the budget ends the second epoch after its first step
    assert result.steps == 7 and result.epochs == 7 / 6 and math.isfinite(result.final_loss)
    messages = [r.message for r in caplog.records]
    assert any("pretraining tiny-qwen for 7 steps" in m for m in messages), messages
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "far larger than the embedded tiny base" in warning.message
    assert "model.base" in warning.message and "raise tiny.max_tokens" in warning.message
