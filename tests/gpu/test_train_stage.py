"""benchmarks/gpu_train_stage.py's `--smoke` run: the real `preprocess` and `train` stages in a
temporary project on a Qwen-shaped base written by benchmarks/qwen_shape.py, the Hugging Face
default and the fastest configuration, and the accelerate DDP profile with one process.

Runs everywhere (CPU-sized shape); on a CUDA machine the same run goes through the GPU code paths
(4-bit, bf16, Liger when installed). The full 7B measurement is the script itself.
"""

from __future__ import annotations

import json
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def test_smoke_trains_every_variant_through_the_stage(tmp_path):
    sys.path.insert(0, str(REPO / "benchmarks"))
    import gpu_train_stage

    out = tmp_path / "result.json"
    gpu_train_stage.main(["--smoke", "--no-evaluate", "--json", str(out)])
    result = json.loads(out.read_text())
    assert result["model"]["layers"] == 1 and result["preprocess"]["train"]["conversations"] > 0
    runs = result["runs"]
    assert set(runs) == {"hf_default", "fastest", "fastest_accelerate"}
    for name, run in runs.items():
        assert run["exit"] == 0, (name, run.get("log"))
        assert run["steps"] == 2 and run["steady_tokens_per_second"] > 0
        assert run["mfu"] > 0
    assert runs["fastest"]["overrides"]["train.packing"] is True
    if result["device"] != "cpu":  # on CUDA: the stage measured its peak GPU memory
        assert all(run["peak_gpu_mib"] > 0 for run in runs.values())
    assert result["speedup_fastest_vs_hf_default"] > 0
    assert not list((REPO / "benchmarks" / "results").glob("*smoke*"))  # --json was honoured
