"""The transformers Trainer as the `train` stage sets it up.

`training_args` (TrainingArguments from the `train` params; starts the process group when
distributed), `data_collator` (padded or packed batches), and `build_trainer`: a Trainer with a
resumable data order (training/resume.py's EpochSampler) that counts what it trains on, and its
callbacks (per-step metrics to MLflow, a quiet progress bar, the planned steps and a measured
estimate, the step clock of pipeline/training/speed.py).
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path
from typing import Any

from transformers import ProgressCallback, Trainer, TrainerCallback

from pipeline.config import Config
from pipeline.progress import WarmupEstimate
from pipeline.training.resume import EpochSampler
from pipeline.training.speed import StepClock, resolve, useful_tokens

log = logging.getLogger(__name__)


def world_size() -> int:
    """Processes of this training run, as torchrun / accelerate launch export it (1 otherwise)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def training_args(cfg: Config, output_dir: Path):
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


def _sequences(inputs: dict[str, Any]) -> int:
    """Conversations in one collated batch: rows, or position restarts in a packed row."""
    if "position_ids" in inputs:
        return int((inputs["position_ids"] == 0).sum())
    return int(inputs["input_ids"].shape[0])


class StageTrainer(Trainer):
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


class _Estimate(TrainerCallback):
    """Logs the planned optimizer steps before the first one and, a few steps in, how long
    the rest will take (rank 0 only), timed per token: batches grouped by length differ."""

    def __init__(self, trainer: StageTrainer) -> None:
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


def build_trainer(cfg: Config, args, model, tok, data) -> StageTrainer:
    """The Trainer over data["train"] (and data["val"] when it has rows), with its callbacks;
    `trainer.clock` holds the steady tokens/s and peak GPU memory once it has trained."""
    trainer = StageTrainer(
        model=model,
        args=args,
        train_dataset=data["train"],
        eval_dataset=data["val"] if len(data["val"]) else None,
        data_collator=data_collator(cfg, tok),
    )
    trainer.add_callback(_Estimate(trainer))
    quiet_progress(trainer)
    trainer.clock = StepClock(lambda: trainer.tokens)  # steady tokens/s, peak GPU memory
    trainer.add_callback(trainer.clock)
    return trainer


def quiet_progress(trainer: Trainer) -> None:
    """The stage's logging on any Trainer (TRL's included): per-step metrics to the active MLflow
    run, and one progress bar with the loss as its postfix instead of a dict printed per step."""
    trainer.add_callback(_MlflowSteps())
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(_QuietProgress())
