"""The team tier's PostgreSQL-restart test restarts the database once the nightly run's
training has saved a checkpoint. December 2026 (CI-like clone, `make test-team`): it restarted
it while train was still removing the previous run's stale checkpoints, before a single step;
train failed opening its MLflow experiment, the next run had nothing to resume, and the test
failed on "resuming from checkpoint-". The wait read a checkpoint directory's mtime, which each
removed file makes newer."""

from __future__ import annotations

import os
import time

from pipeline.training.resume import CHECKPOINT_FILES
from tests.team.teamkit import saved_checkpoint_since


def _checkpoint(folder, step: int, mtime: float | None = None):
    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    for name in CHECKPOINT_FILES:
        (path / name).write_text("{}" if name.endswith(".json") else "x")
        if mtime is not None:
            os.utime(path / name, (mtime, mtime))
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def test_a_stale_checkpoint_being_removed_is_not_this_runs_checkpoint(tmp_path):
    checkpoints = tmp_path / "checkpoints"
    stale = _checkpoint(checkpoints, 320, mtime=time.time() - 600)  # the last run's
    started = time.time() - 1
    (stale / CHECKPOINT_FILES[0]).unlink()  # train's rmtree of stale checkpoints, under way
    assert stale.stat().st_mtime > started  # what the old wait read: "saved"
    assert not saved_checkpoint_since(checkpoints, started)
    _checkpoint(checkpoints, 5)  # this run's first save
    assert saved_checkpoint_since(checkpoints, started)
