"""`python -m tests.e2e.killed_train K`: `python -m pipeline train` that kills itself with a real
SIGKILL right after optimizer step K, as `kill -9` would, but at a step a test can choose.

The kill comes from a Trainer callback's on_step_end, before the Trainer saves step K's
checkpoint: with K not a multiple of train.save_steps, the steps after the last checkpoint are
lost and a resumed run has to redo them.
"""

from __future__ import annotations

import os
import runpy
import signal
import sys

from transformers import TrainerCallback

from pipeline.training.trainer import StageTrainer


class _KillAfter(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


def main(step: int) -> None:
    original = StageTrainer.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.add_callback(_KillAfter(step))

    StageTrainer.__init__ = init
    sys.argv = ["pipeline", "train"]
    runpy.run_module("pipeline", run_name="__main__")


if __name__ == "__main__":
    main(int(sys.argv[1]))
