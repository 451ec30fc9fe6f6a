"""Merge a registered adapter into its base and save a standalone 16-bit model.

    python -m pipeline export VERSION --out exported/ [--dtype bfloat16]

The base is loaded unquantized in the chosen dtype (merging into 4-bit weights would lose
precision), the LoRA weights are merged, and the result is saved as safetensors with the
tokenizer and chat template, loadable by any Hugging Face runtime without PEFT.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import replace
from pathlib import Path

from pipeline.config import Config
from pipeline.io import atomic_dir
from pipeline.modeling import ModelSpec, load_with_adapter

log = logging.getLogger(__name__)


def run(cfg: Config, version: str, out: Path, dtype: str = "bfloat16") -> Path:
    import mlflow
    from pipeline import registry

    registry.client(cfg)
    uri = f"models:/{cfg.register_.model_name}/{version}"
    with tempfile.TemporaryDirectory() as tmp:
        local = (
            Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp)) / "artifacts"
        )
        spec = replace(ModelSpec.load(local), quantization="none", dtype=dtype)
        if (local / "base").exists():
            spec = replace(spec, source=str(local / "base"))
        model, tok = load_with_adapter(spec, local / "adapter")
        merged = model.merge_and_unload()
        with atomic_dir(out) as target:
            merged.save_pretrained(target, safe_serialization=True)
            tok.save_pretrained(target)
    log.info("export: %s merged into %s (%s) at %s", uri, spec.source, dtype, out)
    return out
