"""The shipped profiles: params profiles (`make run PROFILE=configs/<name>.yaml`) and accelerate
configs (configs/accelerate/)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.config import load_config
from tests.conftest import REPO

PROFILE = REPO / "configs" / "qwen2.5-7b-qlora.yaml"
PROFILES = sorted((REPO / "configs").glob("*.yaml"))
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


def _run_profile():
    spec = importlib.util.spec_from_file_location(
        "run_profile", REPO / "configs" / "run_profile.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.stem)
def test_profile_opens_with_the_command_that_runs_it(path: Path):
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first == f"# make run PROFILE=configs/{path.name}"


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.stem)
def test_profile_command_writes_every_value_into_params_and_keeps_comments(path, tmp_path):
    """What `make run PROFILE=...` does short of running DVC: the values land in params.yaml,
    the typed config reads them back, and every comment line of params.yaml survives."""
    params = tmp_path / "params.yaml"
    original = (REPO / "params.yaml").read_text(encoding="utf-8")
    params.write_text(original, encoding="utf-8")
    changes = _run_profile().apply(path, params)
    overrides = _flatten(yaml.safe_load(path.read_text()))
    assert changes and len(changes) <= len(overrides)
    applied = load_config(params, check_base=False)  # no overrides: only what was written
    for dotted, value in overrides.items():
        node = applied
        for key in dotted.split("."):
            node = getattr(node, {"validate": "validate_", "register": "register_"}.get(key, key))
        assert (list(node) if isinstance(node, tuple) else node) == value, dotted
    comments = [line.strip() for line in original.splitlines() if line.strip().startswith("#")]
    written = params.read_text(encoding="utf-8")
    assert [c for c in comments if c not in written] == []


def test_profile_with_an_unknown_key_changes_nothing_and_names_it(tmp_path):
    from pipeline.errors import ConfigError

    params = tmp_path / "params.yaml"
    params.write_text((REPO / "params.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    before = params.read_bytes()
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  lora:\n    rank: 8\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"profile .*bad.yaml.*train\.lora\.rank"):
        _run_profile().apply(bad, params)
    assert params.read_bytes() == before


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.stem)
def test_make_run_with_a_profile_runs_the_profile_script(path: Path):
    """`make -n` prints what `make run PROFILE=...` would run, without running it."""
    name = f"configs/{path.name}"
    dry = subprocess.run(
        ["make", "--no-print-directory", "-n", "run", f"PROFILE={name}"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines()[-1].endswith(f"python configs/run_profile.py {name}")
    printed = subprocess.run(
        [sys.executable, "configs/run_profile.py", "--print", name],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.splitlines()[-1] == "dvc exp run"


def test_gpu_page_shows_the_profile_itself():
    """The GPU page includes the profile file (a snippet), so the two cannot drift."""
    page = (REPO / "docs" / "gpu.md").read_text(encoding="utf-8")
    assert '--8<-- "configs/qwen2.5-7b-qlora.yaml"' in page
    assert "make run PROFILE=configs/qwen2.5-7b-qlora.yaml" in page


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


def test_gpu_page_names_every_accelerate_profile():
    page = (REPO / "docs" / "gpu.md").read_text(encoding="utf-8")
    for path in ACCELERATE:
        assert f"configs/accelerate/{path.name}" in page
