"""Training is reproducible and resumable: same inputs give the same adapter file, and a run
killed with SIGKILL between two checkpoints, even twice, resumes to that very file."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys

import pytest

from pipeline.training import resume, train
from tests.conftest import REPO, TINY_OVERRIDES, TRAIN_ROWS, read_rows

pytestmark = pytest.mark.slow
# About 55 training conversations in batches of 4: 13-14 steps an epoch; a checkpoint every
# 5 steps, so the kills below land mid-epoch and between checkpoints (checked in the test).
OVERRIDES = {**TINY_OVERRIDES, "train.epochs": 4, "train.batch_size": 4, "train.save_steps": 5}
# Killed after step 17 (epoch 2; last checkpoint 15), then the resumed run after step 33
# (epoch 3; last checkpoint 30). Before the fix the order of the epoch a run resumed in was
# the first epoch's, and the adapter differed.
KILLS = (17, 33)


def _adapter_sha(cfg) -> str:
    return hashlib.sha256(
        (cfg.paths.adapter_dir / "adapter_model.safetensors").read_bytes()
    ).hexdigest()


def _train_report(cfg) -> dict:
    return json.loads((cfg.paths.reports / "train.json").read_text())


def _run(cfg, *module_args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", *module_args],
        cwd=cfg.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_same_inputs_give_a_bit_identical_adapter_and_sigkill_resumes(
    tmp_path, monkeypatch, prepared
):
    rows = read_rows(REPO / "data" / "raw" / "medical_dialogues.jsonl")[:TRAIN_ROWS]
    cfg = prepared(tmp_path / "a", rows, OVERRIDES)
    monkeypatch.chdir(cfg.root)
    first = train.run(cfg)
    reference = _adapter_sha(cfg)
    per_epoch = math.ceil(len(read_rows(cfg.paths.split_file("train"))) / 4)
    assert first.metrics["resumed_from_step"] == 0
    assert first.metrics["steps"] == 4 * per_epoch
    assert all(k % per_epoch and k % 5 and k < 4 * per_epoch for k in KILLS)

    shutil.rmtree(cfg.root / "models" / "checkpoints")  # a fresh start, not a resume
    train.run(cfg)
    assert _adapter_sha(cfg) == reference

    # Killed between checkpoints, resumed and killed again between checkpoints, resumed.
    shutil.rmtree(cfg.root / "models" / "checkpoints")
    last = 0
    for step in KILLS:
        killed = _run(cfg, "tests.e2e.killed_train", str(step))
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
        assert (f"resuming from checkpoint-{last}" in killed.stderr) == (last > 0)
        last = step // cfg.train.save_steps * cfg.train.save_steps
    checkpoint = cfg.root / "models" / "checkpoints" / f"checkpoint-{last}"
    # The ChatML embedding rows (trainable_token_indices) are in the checkpoint, trained.
    from safetensors.torch import load_file

    weights = load_file(checkpoint / "adapter_model.safetensors")
    rows = [v for k, v in weights.items() if "trainable_tokens_delta" in k]
    assert rows and all(r.abs().sum() > 0 for r in rows)

    again = _run(cfg, "pipeline", "train")
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"resuming from checkpoint-{last}" in again.stderr
    resumed = _train_report(cfg)
    assert resumed["resumed_from_step"] == last and resumed["steps"] == first.metrics["steps"]
    # Byte-identical safetensors: the same tensors, in the same order, with the same header.
    assert _adapter_sha(cfg) == reference


def test_a_run_that_fails_after_its_last_step_is_resumed_not_restarted(
    tmp_path, monkeypatch, prepared
):
    """The tracking store failing after the last training step (team tier: PostgreSQL restarted
    while a nightly run trained) fails the stage and commits no adapter; its checkpoints are
    not those of a finished run, so the next run resumes from them instead of training again."""
    import mlflow

    rows = read_rows(REPO / "data" / "raw" / "medical_dialogues.jsonl")[:TRAIN_ROWS]
    cfg = prepared(tmp_path / "a", rows, {**OVERRIDES, "train.epochs": 1})
    monkeypatch.chdir(cfg.root)

    def store_down(*args, **kwargs):
        raise mlflow.exceptions.MlflowException("API request failed: database unavailable")

    with monkeypatch.context() as patched:
        patched.setattr(mlflow, "log_metrics", store_down)
        with pytest.raises(mlflow.exceptions.MlflowException):
            train.run(cfg)
    assert not (cfg.paths.adapter_dir / "adapter_model.safetensors").exists()
    ckpt_dir = cfg.root / "models" / "checkpoints"
    last, _ = resume.resume_point(ckpt_dir, resume.fingerprint(cfg), remove_stale=False)
    assert last is not None, json.loads((ckpt_dir / resume.STATE_FILE).read_text())
    again = train.run(cfg)
    assert again.metrics["resumed_from_step"] == int(last.name.split("-")[1]) > 0
