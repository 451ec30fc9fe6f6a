"""QLoRA on CUDA through the project's loader (skipped without a GPU; CI has none).

benchmarks/gpu_qlora.py measures tokens/s and peak memory; this checks the code paths it relies
on: 4-bit NF4 layers on the GPU, LoRA weights trainable, loss falling over a few steps.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

REPO = Path(__file__).resolve().parents[2]


def test_4bit_qlora_trains_on_cuda(tmp_path):
    import bitsandbytes as bnb

    from pipeline.config import load_config
    from pipeline.modeling import ModelSpec, load_model
    from pipeline.training.tiny import build_tokenizer, new_model

    sys.path.insert(0, str(REPO / "benchmarks"))
    import gpu_qlora

    cfg = load_config(REPO / "params.yaml")
    tok = build_tokenizer(["感冒有什么症状？发热、咳嗽、流鼻涕。"] * 20, 400)
    new_model(tok, cfg.tiny).save_pretrained(tmp_path, safe_serialization=True)
    tok.save_pretrained(tmp_path)
    spec = ModelSpec(
        source=str(tmp_path),
        revision="main",
        trust_remote_code=False,
        dtype="bfloat16",
        quantization="4bit",
        compute_dtype="bfloat16",
    )
    model = load_model(spec)
    layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert layers and all(m.weight.device.type == "cuda" for m in layers)
    assert layers[0].weight.quant_state.quant_type == "nf4"

    result = gpu_qlora.tiny(steps=8, smoke=False)
    assert result["peak_gpu_mib"] > 0
    assert result["last_loss"] < result["first_loss"]
