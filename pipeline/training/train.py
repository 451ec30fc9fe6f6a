"""Stage `train`: PEFT LoRA (or QLoRA with bitsandbytes 4-bit / 8-bit) on the answer-labelled
training split.

    python -m pipeline train

Opens the pipeline's MLflow run, logs every param and the per-step loss / learning rate /
grad norm, and writes the adapter (safetensors, with the tokenizer and the run id) atomically
to models/adapter. The loss curve is also written to reports/train_loss.tsv for `dvc plots`.
A killed run resumes from its last complete checkpoint in models/checkpoints, into the same
MLflow run and the same batches (training/resume.py); the Trainer, its arguments, data collator
and callbacks are set up in pipeline/training/trainer.py.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.config import Config
from pipeline.io import atomic_dir, write_json
from pipeline.modeling import (
    ModelSpec,
    load_model,
    load_tokenizer,
    sharded_weights,
)
from pipeline.registry import tracking
from pipeline.training import resume
from pipeline.training.lora import lora_model
from pipeline.training.speed import resolve
from pipeline.training.trainer import StageTrainer, build_trainer, training_args, world_size

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    adapter_dir: Path
    run_id: str
    metrics: dict[str, float]


def _write_loss_curve(path: Path, history: list[dict[str, Any]]) -> None:
    lines = ["step\tloss\tlearning_rate"]
    lines += [
        f"{h['step']}\t{h['loss']:.5f}\t{h.get('learning_rate', 0):.3e}"
        for h in history
        if "loss" in h
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def _warn_if_one_cpu_process() -> None:
    if os.environ.get("ACCELERATE_USE_CPU", "").lower() == "true" and "MASTER_ADDR" in os.environ:
        if world_size() == 1:
            log.warning(
                "train: one process only: `accelerate launch --cpu` starts several only through "
                "mpirun (--mpirun_hostfile); use `torchrun --nproc_per_node N -m pipeline train`"
            )


def _resume(cfg: Config, args, ckpt_dir: Path) -> tuple[Path | None, str | None, str]:
    """(checkpoint to resume or None, its MLflow run id, this run's fingerprint)."""
    print_ = resume.fingerprint(cfg)
    main = args.process_index == 0
    with args.main_process_first(desc="resume point"):  # rank 0 removes stale checkpoints first
        checkpoint, run_id = resume.resume_point(ckpt_dir, print_, remove_stale=main)
    if checkpoint is not None and main:
        log.info("train: resuming from %s (an earlier run stopped there)", checkpoint.name)
    return checkpoint, run_id, print_


def _model_and_data(cfg: Config):
    """The LoRA-wrapped base, its tokenizer, and the train / val datasets (model columns)."""
    from datasets import load_from_disk
    from transformers import set_seed

    spec = ModelSpec.from_config(cfg)
    tok = load_tokenizer(spec)
    set_seed(cfg.train.seed)  # LoRA's initial weights come from the global RNG
    model = lora_model(load_model(spec, **resolve(cfg.train.speed).load_kwargs()), cfg, tok)
    if cfg.train.packing:
        model.config.use_cache = False  # packed rows need it (the Trainer sets it too)
    keep = ["input_ids", "labels", "length"]
    data = {}
    for split in ("train", "val"):
        d = load_from_disk(str(cfg.paths.processed_dir / split))
        data[split] = d.remove_columns([c for c in d.column_names if c not in keep])
    return model, tok, data


def _start_run(cfg: Config, ckpt_dir: Path, print_: str, run_id: str, resumed: bool) -> None:
    """Record which MLflow run the checkpoints belong to; params on a fresh run only."""
    import mlflow

    resume.record(ckpt_dir, print_, run_id)
    if not resumed:
        mlflow.log_params(tracking.flatten(cfg.model_dump(mode="json", by_alias=True)))
    mlflow.set_tags({"stage": "train", **tracking.run_tags(cfg)})


def _save_adapter(trainer: StageTrainer, model, tok, out: Path | None, ckpt_dir: Path) -> None:
    """The adapter (safetensors) and tokenizer into `out` (rank 0; `out` is None elsewhere).
    Under FSDP / ZeRO-3 every rank takes part in gathering the sharded adapter first."""
    if sharded_weights():
        gathered = ckpt_dir / "final-adapter"
        if trainer.is_fsdp_enabled:
            trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
        trainer.save_model(str(gathered))
    if out is None:
        return
    if sharded_weights():
        for name in ("adapter_config.json", "adapter_model.safetensors"):
            shutil.copy2(gathered / name, out / name)
    else:
        model.save_pretrained(str(out), safe_serialization=True)
    tok.save_pretrained(str(out))


def _metrics(cfg: Config, trainer: StageTrainer, result, seconds: float, checkpoint) -> dict:
    tokens = sum(trainer.train_dataset["length"]) * cfg.train.epochs
    model = trainer.model
    return {
        "train_loss": round(result.training_loss, 5),
        "steps": result.global_step,
        "seconds": round(seconds, 1),
        "tokens_per_second": round(tokens / seconds, 1),
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "resumed_from_step": int(checkpoint.name.split("-")[1]) if checkpoint else 0,
        **trainer.clock.metrics(),
    }


def _train(trainer: StageTrainer, checkpoint: Path | None):
    args = trainer.args
    start = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    seconds = time.perf_counter() - start
    log.info(
        "train: rank %d of %d trained %d conversations in %d micro-batches (%d optimizer steps)",
        args.process_index,
        args.world_size,
        trainer.sequences,
        trainer.micro_batches,
        result.global_step,
    )
    return result, seconds


def run(cfg: Config) -> TrainResult:
    """Train; under torchrun / accelerate every process trains on its shard of each epoch, and
    only rank 0 writes the adapter, checkpoints and reports and talks to MLflow (the other
    ranks return an empty run id)."""
    import mlflow

    paths = cfg.paths
    ckpt_dir = paths.root / "models" / "checkpoints"
    _warn_if_one_cpu_process()
    args = training_args(cfg, ckpt_dir)  # starts the process group when distributed
    main = args.process_index == 0
    checkpoint, run_id, print_ = _resume(cfg, args, ckpt_dir)
    model, tok, data = _model_and_data(cfg)
    if main:
        tracking.setup(cfg)
    nothing = contextlib.nullcontext()
    with (
        mlflow.start_run(run_id=run_id, log_system_metrics=True) if main else nothing as active,
        atomic_dir(paths.adapter_dir) if main else nothing as out,
    ):
        if main:
            _start_run(cfg, ckpt_dir, print_, active.info.run_id, checkpoint is not None)
        trainer = build_trainer(cfg, args, model, tok, data)
        result, seconds = _train(trainer, checkpoint)
        per_rank = _gather(trainer.sequences, args.world_size)
        _save_adapter(trainer, model, tok, out, ckpt_dir)
        if not main:
            return TrainResult(paths.adapter_dir, "", {"steps": result.global_step})
        tracking.save_run_id(out, active.info.run_id)
        metrics = _metrics(cfg, trainer, result, seconds, checkpoint)
        mlflow.log_metrics({f"train/{k}": float(v) for k, v in metrics.items()})
        if args.world_size > 1:
            metrics |= {"processes": args.world_size, "conversations_per_rank": per_rank}
    # Finished only once its run is logged and its adapter committed: a run that fails before
    # (the tracking store down after the last step) is resumed from its checkpoints next time.
    resume.finish(ckpt_dir)
    write_json(paths.reports / "train.json", metrics)
    _write_loss_curve(paths.reports / "train_loss.tsv", trainer.state.log_history)
    log.info("train: %s", metrics)
    return TrainResult(paths.adapter_dir, active.info.run_id, metrics)


def _gather(value: int, processes: int) -> list[int]:
    """`value` from every rank, in rank order (just [value] in a single process)."""
    if processes == 1:
        return [value]
    import torch.distributed as dist

    values: list[int] = [0] * processes
    dist.all_gather_object(values, value)
    return values
