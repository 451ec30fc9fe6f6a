"""The align stage's plumbing (pipeline/training/align.py): which adapter evaluate and register
take, TRL's config per method, and the SFT adapter's trained embedding rows carried through
preference training (TRL reads lm_head.weight directly, so they are moved into the base for
training and put back into the saved adapter)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.config import load_config
from pipeline.evaluation.evaluate import candidate_adapters
from pipeline.training import align
from tests.conftest import make_project


def test_disabled_writes_only_its_state_and_the_sft_adapter_is_the_challenger(tmp_path):
    cfg = load_config(make_project(tmp_path / "p", None, {"align.enabled": False}) / "params.yaml")
    result = align.run(cfg)
    assert not result.enabled and result.adapter_dir == cfg.paths.adapter_dir
    assert sorted(p.name for p in cfg.paths.aligned_dir.iterdir()) == ["align.json"]
    assert json.loads((cfg.paths.aligned_dir / "align.json").read_text()) == {"enabled": False}
    assert candidate_adapters(cfg) == {"challenger": cfg.paths.adapter_dir}
    on = load_config(cfg.root / "params.yaml", {"align.enabled": True})
    assert candidate_adapters(on) == {
        "challenger": cfg.paths.aligned_dir,
        "sft": cfg.paths.adapter_dir,
    }


def test_disabled_starts_in_a_second_without_torch_or_mlflow(tmp_path):
    # Off is the default: every `dvc repro` and flow run passes through align. Importing torch,
    # transformers, peft and MLflow for it cost 6 to 7 s of each run (measured, 2 cores).
    import subprocess
    import sys

    from tests.conftest import REPO

    root = make_project(tmp_path / "p", None, {"align.enabled": False})
    code = (
        "import sys\n"
        "from pipeline import run_stage\n"
        "from pipeline.config import load_config\n"
        "result = run_stage('align', load_config('params.yaml'))\n"
        "heavy = ('torch', 'transformers', 'peft', 'trl', 'mlflow', 'datasets')\n"
        "print(result.enabled, sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        env={**__import__("os").environ, "PYTHONPATH": str(REPO)},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "False []", out.stdout


@pytest.mark.parametrize(("method", "config"), [("dpo", "DPOConfig"), ("orpo", "ORPOConfig")])
def test_each_method_gets_its_trl_config_with_beta(tmp_path, method, config):
    over = {"align.method": method, "align.beta": 0.25, "align.lr": 1e-4}
    cfg = load_config(make_project(tmp_path / "p", None, over) / "params.yaml")
    args = align._args(cfg, tmp_path / "out")
    assert type(args).__name__ == config and args.beta == 0.25 and args.learning_rate == 1e-4
    if method == "orpo":
        assert type(args).__module__.startswith("trl.experimental.orpo")


def _tiny_sft(tmp_path: Path, tok) -> tuple[Path, Path, list[int]]:
    """A 1-layer Qwen2 base and an SFT adapter whose ChatML embedding rows were 'trained'."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from pipeline.modeling import TEMPLATES

    tok.chat_template = (TEMPLATES / "qwen2_5.jinja").read_text()
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        tie_word_embeddings=True,
    )
    base_dir, sft_dir = tmp_path / "base", tmp_path / "sft"
    Qwen2ForCausalLM(config).save_pretrained(base_dir, safe_serialization=True)
    tok.save_pretrained(base_dir)
    ids = tok.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>"])
    lora = LoraConfig(r=4, target_modules="all-linear", trainable_token_indices=ids)
    model = get_peft_model(Qwen2ForCausalLM.from_pretrained(base_dir), lora)
    for name, param in model.named_parameters():
        if "trainable_tokens_delta" in name:
            with torch.no_grad():
                param.copy_(torch.randn_like(param))
    model.save_pretrained(sft_dir, safe_serialization=True)
    tok.save_pretrained(sft_dir)
    return base_dir, sft_dir, ids


def test_the_sft_embedding_rows_survive_preference_training(tmp_path, tiny_tokenizer):
    import shutil

    import torch

    from pipeline.modeling import ModelSpec, load_model, load_with_adapter

    base_dir, sft_dir, ids = _tiny_sft(tmp_path, tiny_tokenizer)
    root = make_project(tmp_path / "p", None, {"model.base": str(base_dir)})
    shutil.copytree(sft_dir, root / "models" / "adapter")
    cfg = load_config(root / "params.yaml")
    _, rows = align._token_rows(cfg.paths.adapter_dir)
    trained = next(iter(rows.values()))
    bare = load_model(ModelSpec.from_config(cfg)).get_input_embeddings().weight[ids]
    assert not torch.allclose(bare, trained)  # the rows differ from the base's

    model, tok, spec = align._trainable_sft(cfg)
    emb = model.get_base_model().get_input_embeddings()
    assert torch.equal(emb.weight[ids], trained)
    assert model.get_base_model().lm_head.weight is emb.weight  # tied: TRL reads these rows
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    out = tmp_path / "aligned"
    out.mkdir()
    align._save(model, tok, out, cfg.paths.adapter_dir)
    loaded, _ = load_with_adapter(spec, out)  # as evaluate and the registered model load it
    probe = torch.tensor([ids])
    got = loaded.get_input_embeddings()(probe)[0]
    assert torch.allclose(got, trained)
    assert json.loads((out / "adapter_config.json").read_text())["trainable_token_indices"]
