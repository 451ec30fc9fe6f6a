"""Stage `train`: PEFT LoRA (or QLoRA with bitsandbytes 4-bit / 8-bit) on the answer-labelled
training split.

    python -m pipeline train

Opens the pipeline's MLflow run, logs every param and the per-step loss / learning rate /
grad norm, and writes the adapter (safetensors, with the tokenizer and the run id) atomically
to models/adapter. The loss curve is also written to reports/train_loss.tsv for `dvc plots`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import ProgressCallback, Trainer, TrainerCallback
from transformers.trainer_pt_utils import LengthGroupedSampler

from pipeline import tracking
from pipeline.config import Config
from pipeline.io import atomic_dir, write_json
from pipeline.modeling import (
    ModelSpec,
    load_model,
    load_tokenizer,
    prepare_for_training,
    sharded_weights,
)
from pipeline.progress import WarmupEstimate
from pipeline.speed import StepClock, resolve, useful_tokens

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    adapter_dir: Path
    run_id: str
    metrics: dict[str, float]


# LoRA targets for architectures whose linear layers peft's "all-linear" does not name well:
# the original Qwen-7B-Chat (remote code) has fused c_attn and c_proj / w1 / w2.
LORA_TARGETS = {"qwen": ("c_attn", "c_proj", "w1", "w2")}


def lora_targets(model_type: str | None, configured: str | tuple[str, ...]) -> str | list[str]:
    """The configured target modules; "all-linear" becomes the known list for LORA_TARGETS."""
    if configured == "all-linear" and model_type in LORA_TARGETS:
        return list(LORA_TARGETS[model_type])
    return configured if isinstance(configured, str) else list(configured)


def lora_model(model, cfg: Config, tok):
    """Wrap the (frozen, possibly k-bit) base in LoRA."""
    from peft import LoraConfig, get_peft_model

    t = cfg.train
    model = prepare_for_training(model, t.gradient_checkpointing)
    token_ids = tok.convert_tokens_to_ids(list(t.lora.trainable_tokens))
    targets = lora_targets(getattr(model.config, "model_type", None), t.lora.target_modules)
    lora = LoraConfig(
        r=t.lora.r,
        lora_alpha=t.lora.alpha,
        lora_dropout=t.lora.dropout,
        target_modules=targets,
        # With tied embeddings peft wraps lm_head too, so the rows stay tied.
        trainable_token_indices=token_ids or None,
        use_rslora=t.lora.use_rslora,
        use_dora=t.lora.use_dora,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)


class _MlflowSteps(TrainerCallback):
    """Sends per-step loss / learning rate / grad norm to the active MLflow run, in batches."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, dict[str, float]]] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            nums = {k: float(v) for k, v in logs.items() if isinstance(v, int | float)}
            self.rows.append((state.global_step, nums))
            if len(self.rows) >= 50:
                self.flush()

    def on_train_end(self, args, state, control, **kwargs):
        self.flush()

    def flush(self) -> None:
        from mlflow.entities import Metric

        import mlflow

        now = int(time.time() * 1000)
        metrics = [
            Metric(k if k.startswith("eval") else f"train/{k}", v, now, step)
            for step, nums in self.rows
            for k, v in nums.items()
        ]
        if metrics and mlflow.active_run():
            mlflow.MlflowClient().log_batch(mlflow.active_run().info.run_id, metrics=metrics)
        self.rows.clear()


class _QuietProgress(ProgressCallback):
    """The usual progress bar, with the loss as its postfix instead of a dict printed per step."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if (
            state.is_world_process_zero
            and self.training_bar is not None
            and logs
            and "loss" in logs
        ):
            self.training_bar.set_postfix(loss=f"{logs['loss']:.3f}", refresh=False)


def world_size() -> int:
    """Processes of this training run, as torchrun / accelerate launch export it (1 otherwise)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def _training_args(cfg: Config, output_dir: Path):
    """Under torchrun / `accelerate launch --multi_gpu` (WORLD_SIZE > 1) this also starts the
    process group: NCCL on GPUs; on CPUs, gloo (use_cpu, which the Trainer would not choose by
    itself: without it each process would train alone, seeing a world of size 1)."""
    import torch
    from transformers import TrainingArguments

    t = cfg.train
    cpu_ddp = world_size() > 1 and not torch.cuda.is_available()
    return TrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=t.epochs,
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.batch_size,
        gradient_accumulation_steps=t.grad_accum,
        learning_rate=t.lr,
        lr_scheduler_type=t.scheduler,
        warmup_steps=t.warmup_ratio,
        weight_decay=t.weight_decay,
        bf16=t.bf16,
        seed=t.seed,
        data_seed=t.seed,
        train_sampling_strategy="group_by_length",  # similar lengths per batch: little padding
        length_column_name="length",
        logging_steps=1,
        eval_strategy="epoch",
        save_strategy="steps",
        save_steps=t.save_steps,
        save_total_limit=2,
        report_to="none",
        remove_unused_columns=True,
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
        # LoRA uses every trainable parameter: spare DDP the search for unused ones.
        ddp_find_unused_parameters=False if world_size() > 1 else None,
        **({"use_cpu": True, "ddp_backend": "gloo"} if cpu_ddp else {}),
        **resolve(t.speed).trainer_kwargs(),
    )


def _sequences(inputs: dict[str, Any]) -> int:
    """Conversations in one collated batch: rows, or position restarts in a packed row."""
    if "position_ids" in inputs:
        return int((inputs["position_ids"] == 0).sum())
    return int(inputs["input_ids"].shape[0])


class EpochSampler(LengthGroupedSampler):
    """group_by_length's order (similar lengths per batch), drawn from (seed, epoch) alone.

    The Trainer's own LengthGroupedSampler draws each epoch's order from the global torch RNG
    when the epoch's iterator starts. A resumed run restores that RNG only after its iterator
    has started, so the epoch it resumes in got the order of the run's *first* epoch: the
    batches it skipped were not the ones already trained on, and the adapter differed. Here
    the order depends only on the seed and the epoch the Trainer sets (`set_epoch`), so a
    resumed run sees exactly the batches an uninterrupted one would.
    """

    def __init__(self, batch_size: int, lengths: list[int], seed: int) -> None:
        import torch

        super().__init__(batch_size, lengths=lengths, generator=torch.Generator())
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        self.generator.manual_seed(self.seed + self.epoch)
        return super().__iter__()


class _Trainer(Trainer):
    """The Trainer with a resumable data order, counting what this process trains on (each
    rank gets its own shard)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.micro_batches = 0
        self.sequences = 0
        self.tokens = 0

    def _get_train_sampler(self, train_dataset=None):
        dataset = self.train_dataset if train_dataset is None else train_dataset
        batch = self.args.train_batch_size * self.args.gradient_accumulation_steps
        lengths = [len(ids) for ids in dataset["input_ids"]]
        return EpochSampler(batch, lengths, self.args.data_seed)

    def training_step(self, model, inputs, num_items_in_batch=None):
        self.micro_batches += 1
        self.sequences += _sequences(inputs)
        # Not in place: the count may be a device tensor that callbacks keep a reference to.
        self.tokens = self.tokens + useful_tokens(inputs)
        return super().training_step(model, inputs, num_items_in_batch)


class _Estimate(TrainerCallback):
    """Logs the planned optimizer steps before the first one and, a few steps in, how long
    the rest will take (rank 0 only), timed per token: batches grouped by length differ."""

    def __init__(self, trainer: _Trainer) -> None:
        self.trainer = trainer
        self.timer: WarmupEstimate | None = None
        self.tokens = 0

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        per_epoch = math.ceil(state.max_steps / args.num_train_epochs)
        log.info(
            "train: %d optimizer steps planned (%g epochs x %d steps of %d conversations)%s",
            state.max_steps,
            args.num_train_epochs,
            per_epoch,
            args.train_batch_size * args.gradient_accumulation_steps * args.world_size,
            f", {state.global_step} done before this run" if state.global_step else "",
        )
        tokens = sum(self.trainer.train_dataset["length"]) * args.num_train_epochs
        per_step = tokens / args.world_size / state.max_steps  # this rank's share
        self.timer = WarmupEstimate("train", state.max_steps, state.global_step, mean_work=per_step)
        self.tokens = int(self.trainer.tokens)

    def on_step_end(self, args, state, control, **kwargs):
        if self.timer is not None:
            now = int(self.trainer.tokens)  # one read per optimizer step
            self.timer.step(now - self.tokens)
            self.tokens = now


def data_collator(cfg: Config, tok):
    """Batches for the Trainer: padded to the longest member (default), or with
    `train.packing` the batch's conversations concatenated into one row without padding.

    Packed rows carry `position_ids` that restart at 0 for every conversation and no attention
    mask; transformers' masking utilities (`find_packed_sequence_indices`) then build a
    block-diagonal causal mask for eager and SDPA attention (flash attention uses the same
    boundaries), so no conversation attends to another. That needs the model to run without a
    KV cache, as the Trainer trains (`use_cache=False`). The first label of each conversation is
    -100, so no token is predicted across a boundary either.
    """
    from transformers import DataCollatorForSeq2Seq, DataCollatorWithFlattening

    if cfg.train.packing:
        return DataCollatorWithFlattening(return_position_ids=True, separator_id=-100)
    return DataCollatorForSeq2Seq(tok, padding="longest", label_pad_token_id=-100)


def _write_loss_curve(path: Path, history: list[dict[str, Any]]) -> None:
    lines = ["step\tloss\tlearning_rate"]
    lines += [
        f"{h['step']}\t{h['loss']:.5f}\t{h.get('learning_rate', 0):.3e}"
        for h in history
        if "loss" in h
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


STATE_FILE = "pipeline_state.json"
# Bumped when what a checkpoint means changes: checkpoints of earlier code are then discarded.
# 2: the data order comes from (seed, epoch) (EpochSampler), not from the global RNG.
CHECKPOINT_FORMAT = 2


def fingerprint(cfg: Config) -> str:
    """What a checkpoint must match to be resumed: the checkpoint format, model/train params
    and the training data."""
    paths = cfg.paths
    params = cfg.model_dump(mode="json", by_alias=True, include={"model", "train"})
    digest = hashlib.sha256(
        json.dumps({"format": CHECKPOINT_FORMAT, **params}, sort_keys=True).encode()
    )
    for f in sorted((paths.processed_dir / "train").glob("*")):
        digest.update(f.name.encode() + f.read_bytes())
    base_weights = paths.base_dir / "model.safetensors"
    if base_weights.exists():
        digest.update(base_weights.read_bytes())
    return digest.hexdigest()


# What a checkpoint must hold to resume exactly: the Trainer writes trainer_state.json last.
CHECKPOINT_FILES = (
    "adapter_model.safetensors",
    "optimizer.pt",
    "scheduler.pt",
    "rng_state.pth",
    "trainer_state.json",
)


def _complete(checkpoint: Path) -> bool:
    """Every file of the checkpoint is there and its state file parses (a run killed while
    writing one leaves it half-written; the previous checkpoint is resumed instead)."""
    if not all((checkpoint / name).is_file() for name in CHECKPOINT_FILES):
        return False
    try:
        json.loads((checkpoint / "trainer_state.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False
    return True


def resume_point(
    ckpt_dir: Path, expected: str, *, remove_stale: bool = True
) -> tuple[Path | None, str | None]:
    """The last complete checkpoint and MLflow run of an interrupted run with the same
    fingerprint; checkpoints of anything else are stale and removed (by rank 0 only)."""
    state_file = ckpt_dir / STATE_FILE
    state = json.loads(state_file.read_text()) if state_file.exists() else {}
    if state.get("fingerprint") != expected:
        if remove_stale:
            shutil.rmtree(ckpt_dir, ignore_errors=True)
        return None, None
    done = [c for c in ckpt_dir.glob("checkpoint-*") if _complete(c)]
    last = max(done, key=lambda c: int(c.name.split("-")[1]), default=None)
    return last, state.get("run_id")


def _warn_if_one_cpu_process() -> None:
    if os.environ.get("ACCELERATE_USE_CPU", "").lower() == "true" and "MASTER_ADDR" in os.environ:
        if world_size() == 1:
            log.warning(
                "train: one process only: `accelerate launch --cpu` starts several only through "
                "mpirun (--mpirun_hostfile); use `torchrun --nproc_per_node N -m pipeline train`"
            )


def _resume(cfg: Config, args, ckpt_dir: Path) -> tuple[Path | None, str | None, str]:
    """(checkpoint to resume or None, its MLflow run id, this run's fingerprint)."""
    print_ = fingerprint(cfg)
    main = args.process_index == 0
    with args.main_process_first(desc="resume point"):  # rank 0 removes stale checkpoints first
        checkpoint, run_id = resume_point(ckpt_dir, print_, remove_stale=main)
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

    ckpt_dir.mkdir(parents=True, exist_ok=True)
    write_json(ckpt_dir / STATE_FILE, {"fingerprint": print_, "run_id": run_id})
    if not resumed:
        mlflow.log_params(tracking.flatten(cfg.model_dump(mode="json", by_alias=True)))
    mlflow.set_tags({"stage": "train", **tracking.run_tags(cfg)})


def _trainer(cfg: Config, args, model, tok, data) -> _Trainer:
    trainer = _Trainer(
        model=model,
        args=args,
        train_dataset=data["train"],
        eval_dataset=data["val"] if len(data["val"]) else None,
        data_collator=data_collator(cfg, tok),
        callbacks=[_MlflowSteps()],
    )
    trainer.add_callback(_Estimate(trainer))
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(_QuietProgress())
    trainer.clock = StepClock(lambda: trainer.tokens)  # steady tokens/s, peak GPU memory
    trainer.add_callback(trainer.clock)
    return trainer


def _save_adapter(trainer: _Trainer, model, tok, out: Path | None, ckpt_dir: Path) -> None:
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


def _metrics(cfg: Config, trainer: _Trainer, result, seconds: float, checkpoint) -> dict:
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


def _train(trainer: _Trainer, checkpoint: Path | None):
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
    args = _training_args(cfg, ckpt_dir)  # starts the process group when distributed
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
        trainer = _trainer(cfg, args, model, tok, data)
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
