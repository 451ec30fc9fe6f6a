"""Resuming an interrupted `train` run exactly where it stopped, bit-identical.

A run writes checkpoints to models/checkpoints with a state file naming the run's fingerprint
(checkpoint format, model / train params, training data, base weights) and its MLflow run. A
later run with the same fingerprint resumes from the last *complete* checkpoint into the same
MLflow run; checkpoints of anything else, or of a run that finished, are stale and removed.
`EpochSampler` makes the data order of every epoch depend on (seed, epoch) alone, so the
resumed epoch skips exactly the batches already trained on.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from transformers.trainer_pt_utils import LengthGroupedSampler

from pipeline.config import Config
from pipeline.io import write_json

STATE_FILE = "pipeline_state.json"
# Bumped when what a checkpoint means changes: checkpoints of earlier code are then discarded.
# 2: the data order comes from (seed, epoch) (EpochSampler), not from the global RNG.
CHECKPOINT_FORMAT = 2

# What a checkpoint must hold to resume exactly: the Trainer writes trainer_state.json last.
CHECKPOINT_FILES = (
    "adapter_model.safetensors",
    "optimizer.pt",
    "scheduler.pt",
    "rng_state.pth",
    "trainer_state.json",
)


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


def complete(checkpoint: Path) -> bool:
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
    state = _state(ckpt_dir)
    # a finished run's checkpoints are not a resume point: a forced rerun (`dvc repro --force`,
    # the nightly flow's force) with the same inputs trains again from the start
    if state.get("fingerprint") != expected or state.get("finished"):
        if remove_stale:
            shutil.rmtree(ckpt_dir, ignore_errors=True)
        return None, None
    done = [c for c in ckpt_dir.glob("checkpoint-*") if complete(c)]
    last = max(done, key=lambda c: int(c.name.split("-")[1]), default=None)
    return last, state.get("run_id")


def record(ckpt_dir: Path, print_: str, run_id: str) -> None:
    """Name the fingerprint and MLflow run the checkpoints in `ckpt_dir` belong to."""
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    write_json(ckpt_dir / STATE_FILE, {"fingerprint": print_, "run_id": run_id})


def finish(ckpt_dir: Path) -> None:
    """Mark the checkpoints in `ckpt_dir` as those of a finished run (kept for inspection,
    never resumed: the next run with the same fingerprint starts over)."""
    write_json(ckpt_dir / STATE_FILE, {**_state(ckpt_dir), "finished": True})


def _state(ckpt_dir: Path) -> dict:
    """The state file of `ckpt_dir` ({} when there is none)."""
    state_file = ckpt_dir / STATE_FILE
    return json.loads(state_file.read_text()) if state_file.exists() else {}


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
