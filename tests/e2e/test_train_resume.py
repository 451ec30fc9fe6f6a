"""Training is reproducible and resumable: same inputs give the same adapter file, and a run
killed with SIGKILL resumes from its last checkpoint when started again."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time

import pytest

from pipeline import base, ingest, preprocess, split, train, validate
from pipeline.config import load_config
from tests.conftest import REPO, TINY_OVERRIDES, make_project, read_rows

pytestmark = pytest.mark.slow
OVERRIDES = {**TINY_OVERRIDES, "train.epochs": 4, "train.batch_size": 4, "train.save_steps": 5}


def _prepared(root):
    rows = read_rows(REPO / "data" / "raw" / "medical_dialogues.jsonl")[:60]
    make_project(root, rows, OVERRIDES)
    cfg = load_config(root / "params.yaml")
    for stage in (ingest, validate, split, base, preprocess):
        stage.run(cfg)
    return cfg


def _adapter_sha(cfg) -> str:
    return hashlib.sha256(
        (cfg.paths.adapter_dir / "adapter_model.safetensors").read_bytes()
    ).hexdigest()


def test_same_inputs_give_a_bit_identical_adapter_and_sigkill_resumes(tmp_path, monkeypatch):
    cfg = _prepared(tmp_path / "a")
    monkeypatch.chdir(cfg.root)
    first = train.run(cfg)
    reference = _adapter_sha(cfg)
    assert first.metrics["resumed_from_step"] == 0
    import shutil

    shutil.rmtree(cfg.root / "models" / "checkpoints")  # a fresh start, not a resume
    train.run(cfg)
    assert _adapter_sha(cfg) == reference

    # Kill a run once it has written a checkpoint, then run the same command again.
    shutil.rmtree(cfg.root / "models" / "checkpoints")
    command = [sys.executable, "-m", "pipeline", "train"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        command, cwd=cfg.root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    marker = cfg.root / "models" / "checkpoints" / "checkpoint-5" / "trainer_state.json"
    deadline = time.monotonic() + 240
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert marker.exists(), "no checkpoint before the deadline"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    again = subprocess.run(
        command, cwd=cfg.root, env=env, capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resuming from checkpoint-" in again.stderr
    resumed = train_report(cfg)
    assert resumed["resumed_from_step"] >= 5 and resumed["steps"] == first.metrics["steps"]
    assert _adapter_sha(cfg) == reference  # as good as uninterrupted: the very same weights


def train_report(cfg) -> dict:
    import json

    return json.loads((cfg.paths.reports / "train.json").read_text())
