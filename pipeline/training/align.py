"""Stage `align`: preference training (DPO or ORPO, through TRL) of the SFT adapter.

    python -m pipeline align
    dvc exp run -S align.enabled=true      # on; off (the default), the SFT adapter is registered

Reads the preference pairs of `align.data` (pipeline/data/preference.py: TRL's prompt / chosen
/ rejected or MedicalGPT's question / response_chosen / response_rejected, validated and
redacted), loads the base as `train` does (pipeline/modeling.py: LoRA, or 4-bit QLoRA with
`train.quantization`), puts the SFT adapter of models/adapter on it as the trainable adapter and
trains it further:

- dpo: TRL's DPOTrainer. With a PeftModel and no reference model TRL copies the adapter into a
  frozen "ref" adapter, so the reference is the SFT model itself (not the bare base);
- orpo: TRL's ORPOTrainer (`trl.experimental.orpo`): no reference model, an odds-ratio term
  added to the chosen answer's language-model loss.

Writes the aligned adapter (safetensors, the tokenizer, the MLflow run id) to models/aligned and
reports/align.json. Disabled, it writes only models/aligned/align.json saying so; evaluate and
register then take the SFT adapter (`Paths.final_adapter`).
"""

from __future__ import annotations

import logging
import resource
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pipeline.config import Config
from pipeline.data.preference import PreferencePair, align_lineage, read_pairs
from pipeline.io import atomic_dir, write_json
from pipeline.modeling import ModelSpec, load_model, load_tokenizer, prepare_for_training
from pipeline.registry import tracking

log = logging.getLogger(__name__)

STATE_FILE = "align.json"  # in models/aligned: what the stage did (enabled or not)


@dataclass(frozen=True)
class AlignResult:
    adapter_dir: Path  # the adapter evaluate and register use (models/adapter when disabled)
    enabled: bool
    method: str
    pairs: int
    metrics: dict[str, float]


def preference_pairs(cfg: Config) -> tuple[list[PreferencePair], list[Path], int]:
    """Every configured file's pairs (validated, redacted), the files, and the redactions."""
    pairs, files, redacted = [], [], 0
    for source in cfg.align.data:
        path = cfg.root / source.path
        got = read_pairs(path, source.format, shown=source.path)
        pairs += got.pairs
        redacted += got.redacted
        files.append(path)
    return pairs, files, redacted


TOKEN_KEY = "trainable_tokens_delta"  # peft's rows for `trainable_token_indices`


def _token_rows(adapter: Path) -> tuple[list[int], dict[str, Any]]:
    """The SFT adapter's trained embedding rows: their token ids and tensors (none: [], {})."""
    from peft import LoraConfig
    from safetensors.torch import load_file

    indices = LoraConfig.from_pretrained(str(adapter)).trainable_token_indices or []
    if isinstance(indices, dict):  # {"embed_tokens": [...]}: the input embedding's rows
        indices = next(iter(indices.values()), [])
    weights = load_file(str(adapter / "adapter_model.safetensors"))
    return list(indices), {k: v for k, v in weights.items() if TOKEN_KEY in k}


def _trainable_sft(cfg: Config):
    """The base (as `train` loads it) with the SFT adapter on it, its LoRA trainable, and the
    tokenizer. The SFT adapter's trained embedding rows (`<|im_start|>`, `<|im_end|>`) are
    written into the base's (tied) embedding first and stay as trained: TRL computes
    log-probabilities from `lm_head.weight` directly, which peft's trainable-token wrapper
    would hide (TRL 1.16 fails on it), and alignment needs not move them."""
    import torch
    from peft import LoraConfig, PeftModel

    from pipeline.training.speed import resolve

    spec = ModelSpec.from_config(cfg)
    sft = cfg.paths.adapter_dir
    if not (sft / "adapter_model.safetensors").is_file():
        from pipeline.errors import ModelLoadError

        raise ModelLoadError(f"{sft}: no adapter_model.safetensors (run the train stage first)")
    base = load_model(spec, **resolve(cfg.train.speed).load_kwargs())
    base = prepare_for_training(base, cfg.train.gradient_checkpointing)
    ids, rows = _token_rows(sft)
    if ids and rows:
        embedding = base.get_input_embeddings().weight
        with torch.no_grad():
            values = next(iter(rows.values())).to(embedding.device, embedding.dtype)
            embedding[torch.tensor(ids, device=embedding.device)] = values
    lora = LoraConfig.from_pretrained(str(sft))
    lora.trainable_token_indices = None
    model = PeftModel.from_pretrained(base, str(sft), config=lora, is_trainable=True)
    tok = load_tokenizer(replace(spec, source=str(sft)))
    return model, tok, spec


def _save(model, tok, out: Path, sft: Path) -> None:
    """The trained LoRA with the SFT adapter's embedding rows and token config put back: one
    adapter over the original base, loaded like any other (pipeline/modeling.py)."""
    import json

    from safetensors.torch import load_file, save_file

    # DPO added a frozen "ref" copy of the adapter: only the trained one is saved.
    model.save_pretrained(str(out), safe_serialization=True, selected_adapters=["default"])
    tok.save_pretrained(str(out))
    _, rows = _token_rows(sft)
    if not rows:
        return
    weights = load_file(str(out / "adapter_model.safetensors"))
    save_file({**weights, **rows}, str(out / "adapter_model.safetensors"))
    config = json.loads((out / "adapter_config.json").read_text())
    sft_config = json.loads((sft / "adapter_config.json").read_text())
    config["trainable_token_indices"] = sft_config["trainable_token_indices"]
    (out / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n")


def _args(cfg: Config, output_dir: Path):
    """DPOConfig or ORPOConfig from the `align` params (precision and checkpointing as `train`)."""
    a, t = cfg.align, cfg.train
    common = dict(
        output_dir=str(output_dir),
        num_train_epochs=a.epochs,
        per_device_train_batch_size=a.batch_size,
        gradient_accumulation_steps=a.grad_accum,
        learning_rate=a.lr,
        lr_scheduler_type="linear",
        beta=a.beta,
        max_length=a.max_length,
        seed=a.seed,
        data_seed=a.seed,
        bf16=t.bf16,
        gradient_checkpointing=t.gradient_checkpointing,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        dataloader_num_workers=0,
    )
    if a.method == "orpo":
        from trl.experimental.orpo import ORPOConfig

        return ORPOConfig(**common)
    from trl import DPOConfig

    return DPOConfig(**common)


def build_trainer(cfg: Config, model, tok, pairs: list[PreferencePair], output_dir: Path):
    """TRL's trainer for `align.method` over the pairs (conversational rows; the tokenizer's
    own chat template renders them, as `train` rendered the chats)."""
    from datasets import Dataset

    from pipeline.training.trainer import quiet_progress

    system = cfg.model.system_prompt
    data = Dataset.from_list([p.as_trl(system) for p in pairs])
    args = _args(cfg, output_dir)
    if cfg.align.method == "orpo":
        from trl.experimental.orpo import ORPOTrainer

        trainer = ORPOTrainer(model=model, args=args, train_dataset=data, processing_class=tok)
    else:
        from trl import DPOTrainer

        trainer = DPOTrainer(
            model=model, ref_model=None, args=args, train_dataset=data, processing_class=tok
        )
    quiet_progress(trainer)
    return trainer


def _tokens(tok, pairs: list[PreferencePair], system: str | None) -> int:
    """Prompt + chosen + rejected tokens of one epoch (what a preference step reads)."""
    from pipeline.modeling import render_chat

    total = 0
    for p in pairs:
        row = p.as_trl(system)
        for answer in ("chosen", "rejected"):
            text = render_chat(tok, row["prompt"] + row[answer])
            total += len(tok(text, add_special_tokens=False)["input_ids"])
    return total


def _reset_peak_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def peak_memory_mb() -> float:
    """Peak GPU memory allocated (CUDA), else this process's peak resident set size."""
    import torch

    if torch.cuda.is_available():
        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)


def _summary(trainer, result, seconds: float, tokens: int, epochs: float) -> dict[str, float]:
    logs = [h for h in trainer.state.log_history if "loss" in h]
    last = logs[-1] if logs else {}
    metrics = {
        "train_loss": round(result.training_loss, 5),
        "steps": result.global_step,
        "seconds": round(seconds, 1),
        "tokens_per_second": round(tokens * epochs / seconds, 1) if seconds else 0.0,
        "peak_memory_mb": peak_memory_mb(),
    }
    for key in ("rewards/accuracies", "rewards/margins", "log_odds_ratio"):
        if key in last:
            metrics[key.replace("/", "_")] = round(float(last[key]), 5)
    return metrics


def _disabled(cfg: Config) -> AlignResult:
    with atomic_dir(cfg.paths.aligned_dir) as out:
        write_json(out / STATE_FILE, {"enabled": False})
    write_json(cfg.paths.reports / "align.json", {"enabled": False})
    log.info("align: disabled (align.enabled: false); the SFT adapter is the one evaluated")
    return AlignResult(cfg.paths.adapter_dir, False, "sft-only", 0, {})


def run(cfg: Config) -> AlignResult:
    if not cfg.align.enabled:  # the default: no torch, transformers or MLflow to import
        return _disabled(cfg)
    import mlflow

    paths, a = cfg.paths, cfg.align
    pairs, _, redacted = preference_pairs(cfg)
    log.info("align: %s on %d preference pairs (beta %g)", a.method, len(pairs), a.beta)
    model, tok, _ = _trainable_sft(cfg)
    with tracking.resume_run(cfg) as active, atomic_dir(paths.aligned_dir) as out:
        trainer = build_trainer(cfg, model, tok, pairs, paths.root / "models" / "align-checkpoints")
        _reset_peak_memory()
        start = time.perf_counter()
        result = trainer.train()
        seconds = time.perf_counter() - start
        _save(model, tok, out, paths.adapter_dir)
        tracking.save_run_id(out, active.info.run_id)
        tokens = _tokens(tok, pairs, cfg.model.system_prompt)
        metrics = _summary(trainer, result, seconds, tokens, a.epochs)
        metrics |= {"pairs": len(pairs), "redacted_texts": redacted}
        state = {"enabled": True, **align_lineage(cfg), "metrics": metrics}
        write_json(out / STATE_FILE, state)
        # Tags, not params: the run is the SFT run's, and MLflow refuses to change a param when
        # align reruns with other settings on the same SFT adapter (a dvc exp over align.*).
        mlflow.set_tags({f"align.{k}": str(v) for k, v in _params(cfg).items()})
        mlflow.log_metrics({f"align/{k}": float(v) for k, v in metrics.items()})
    write_json(paths.reports / "align.json", state)
    log.info("align: %s", metrics)
    return AlignResult(paths.aligned_dir, True, a.method, len(pairs), metrics)


def _params(cfg: Config) -> dict[str, Any]:
    """The align params as MLflow params (the data files go to lineage instead)."""
    return {k: v for k, v in cfg.align.model_dump(mode="json").items() if k != "data"}
