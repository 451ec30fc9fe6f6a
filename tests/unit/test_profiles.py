"""The shipped GPU profiles: a params override for Qwen2.5-7B QLoRA and accelerate configs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from pipeline.config import load_config
from tests.conftest import REPO

PROFILE = REPO / "configs" / "qwen2.5-7b-qlora.yaml"
ACCELERATE = sorted((REPO / "configs" / "accelerate").glob("*.yaml"))


def _flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out |= _flatten(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_qlora_profile_names_only_params_keys_and_loads():
    overrides = _flatten(yaml.safe_load(PROFILE.read_text()))
    # an unknown key is a ConfigError; the hub base is not on this machine (a GPU profile)
    cfg = load_config(REPO / "params.yaml", overrides, check_base=False)
    assert cfg.model.base == "Qwen/Qwen2.5-7B-Instruct" and cfg.model.dtype == "bfloat16"
    q = cfg.train.quantization
    assert (q.mode, q.quant_type, q.double_quant, q.compute_dtype) == (
        "4bit",
        "nf4",
        True,
        "bfloat16",
    )
    t = cfg.train
    assert (t.lora.r, t.lora.alpha, t.lr, t.gradient_checkpointing, t.bf16) == (
        16,
        32,
        2e-4,
        True,
        True,
    )


def test_readme_gpu_recipe_is_the_profile():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    recipe = re.search(r"## GPU recipe.*?```yaml\n(.*?)```", readme, re.S).group(1)
    assert yaml.safe_load(recipe) == yaml.safe_load(PROFILE.read_text())


@pytest.mark.parametrize("path", ACCELERATE, ids=lambda p: p.stem)
def test_accelerate_profiles_parse(path: Path):
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils import DistributedType

    config = load_config_from_file(str(path))  # unknown keys are refused
    expected = {
        "ddp": DistributedType.MULTI_GPU,
        "deepspeed_zero2": DistributedType.DEEPSPEED,
        "deepspeed_zero3": DistributedType.DEEPSPEED,
        "fsdp": DistributedType.FSDP,
    }[path.stem]
    assert config.distributed_type == expected and config.num_processes >= 2
    assert config.mixed_precision == "bf16" and not config.use_cpu
    if expected == DistributedType.DEEPSPEED:
        grad_accum = yaml.safe_load(PROFILE.read_text())["train"]["grad_accum"]
        assert config.deepspeed_config["gradient_accumulation_steps"] == grad_accum
        assert config.deepspeed_config["zero_stage"] == int(path.stem[-1])
    assert f"--config_file configs/accelerate/{path.name}" in path.read_text()


def test_readme_names_every_accelerate_profile():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for path in ACCELERATE:
        assert f"configs/accelerate/{path.name}" in readme
