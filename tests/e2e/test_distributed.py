"""Two CPU processes (torchrun, gloo) run the same train stage: both train on their shard of
each epoch, only rank 0 writes the adapter and reports and logs to MLflow."""

from __future__ import annotations

import json
import math
import os
import re
import socket
import subprocess
import sys

import pytest

from tests.conftest import REPO, TINY_OVERRIDES, TRAIN_ROWS, read_rows

pytestmark = pytest.mark.slow
OVERRIDES = {**TINY_OVERRIDES, "train.epochs": 2, "train.batch_size": 4}
RANK_LINE = re.compile(
    r"train: rank (\d) of (\d) trained (\d+) conversations in (\d+) micro-batches "
    r"\((\d+) optimizer steps\)"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_share_the_epoch_and_rank_zero_writes(tmp_path, prepared):
    import mlflow
    from pipeline.modeling import ModelSpec, load_with_adapter
    from pipeline.registry import tracking

    rows = read_rows(REPO / "data" / "raw" / "medical_dialogues.jsonl")[:TRAIN_ROWS]
    cfg = prepared(tmp_path / "ddp", rows, OVERRIDES)
    root = cfg.root
    n_train = json.loads((cfg.paths.reports / "split.json").read_text())["train"]

    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    command += ["--master_port", str(_free_port()), "-m", "pipeline", "train"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    ranks = {int(m[0]): m for m in RANK_LINE.findall(done.stderr)}
    assert set(ranks) == {0, 1}, done.stderr[-3000:]
    batch, epochs = cfg.train.batch_size, int(cfg.train.epochs)
    alone_steps = epochs * math.ceil(n_train / batch)  # one process, same per-device batch
    shared_steps = epochs * math.ceil(math.ceil(n_train / 2) / batch)
    for _, world, conversations, micro_batches, steps in ranks.values():
        assert int(world) == 2 and int(steps) == shared_steps < alone_steps
        assert int(micro_batches) == shared_steps
        # Each rank trains on its own half (the shorter shard is topped up to even length).
        assert n_train * epochs / 2 <= int(conversations) <= shared_steps * batch

    report = json.loads((cfg.paths.reports / "train.json").read_text())
    assert report["steps"] == shared_steps and report["processes"] == 2
    assert report["conversations_per_rank"] == [int(ranks[r][2]) for r in (0, 1)]
    assert done.stderr.count("INFO pipeline.training.train: train: {") == 1  # rank 0's summary only

    experiment = tracking.setup(cfg)
    runs = mlflow.search_runs(
        experiment_ids=[experiment],
        filter_string="attributes.run_name != 'data-validation'",  # the validate stage's run
        output_format="list",
    )
    assert len(runs) == 1 and runs[0].data.metrics["train/steps"] == shared_steps
    run_file = json.loads((cfg.paths.adapter_dir / tracking.RUN_FILE).read_text())
    assert run_file["run_id"] == runs[0].info.run_id

    model, tok = load_with_adapter(ModelSpec.from_config(cfg), cfg.paths.adapter_dir)
    ids = tok("感冒有什么症状？", return_tensors="pt")["input_ids"]
    assert model(input_ids=ids).logits.shape[-1] == len(tok)
