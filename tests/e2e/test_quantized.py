"""QLoRA on the CPU: with train.quantization.mode=4bit the same stages train and evaluate."""

import json

import pytest

from pipeline.evaluation import evaluate
from pipeline.training import train
from tests.conftest import REPO, TINY_OVERRIDES, TRAIN_ROWS, read_rows

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("mode", ["4bit", "8bit"])
def test_quantized_lora_trains_and_evaluates(tmp_path, monkeypatch, mode, prepared):
    from safetensors.torch import load_file

    rows = read_rows(REPO / "data" / "raw" / "medical_dialogues.jsonl")[:TRAIN_ROWS]
    cfg = prepared(
        tmp_path / mode,
        rows,
        {
            **TINY_OVERRIDES,
            "train.quantization.mode": mode,
            "train.epochs": 1,
            "evaluate.max_samples": 2,
        },
    )
    monkeypatch.chdir(cfg.root)
    train.run(cfg)
    weights = load_file(cfg.paths.adapter_dir / "adapter_model.safetensors")
    assert any("lora_A" in k for k in weights) and all(
        v.is_floating_point() for v in weights.values()
    )
    config = json.loads((cfg.paths.adapter_dir / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 64
    result = evaluate.run(cfg)
    assert set(result.metrics) == {"constant", "base", "challenger"}
    loss = {who: result.metrics[who]["test"]["answer_loss"] for who in ("base", "challenger")}
    assert loss["challenger"] < loss["base"]
