"""The train stage's speed options (`train.speed` in params.yaml), resolved for this machine, and
the step clock that measures what they buy (tokens/s after warm-up, peak GPU memory).

Options are checked when `train` starts, not when params.yaml loads: the file is shared by
stages that run anywhere (ingest on a laptop, train on a GPU), and a GPU profile must still load
on a CPU. Then:

- an option whose package is not installed is a ConfigError naming the param and the pip
  command (`liger_kernel`, `flash_attention_2`);
- a CUDA-only option on a machine without CUDA falls back with one log line: Liger's Triton
  kernels are left off, flash / flex attention become SDPA;
- `torch_compile` and `auto_batch_size` are honoured everywhere (off by default: on a short CPU
  run compiling takes longer than it saves).
"""

from __future__ import annotations

import importlib.util
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from transformers import TrainerCallback

from pipeline.config import SpeedConfig
from pipeline.errors import ConfigError

log = logging.getLogger(__name__)

# option value -> (module that must import, pip command)
PACKAGES = {
    "liger_kernel": ("liger_kernel", "pip install liger-kernel"),
    "flash_attention_2": ("flash_attn", "pip install flash-attn --no-build-isolation"),
}
CUDA_ONLY_ATTENTION = ("flash_attention_2", "flex_attention")


@dataclass(frozen=True)
class SpeedOptions:
    """What the train stage applies: a load argument and TrainingArguments."""

    attn_implementation: str | None  # None: transformers' own choice (SDPA where it can)
    liger_kernel: bool
    torch_compile: bool
    auto_batch_size: bool

    def load_kwargs(self) -> dict[str, str]:
        return {"attn_implementation": self.attn_implementation} if self.attn_implementation else {}

    def trainer_kwargs(self) -> dict[str, bool]:
        return {
            "use_liger_kernel": self.liger_kernel,
            "torch_compile": self.torch_compile,
            "auto_find_batch_size": self.auto_batch_size,
        }


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _require(param: str, option: str) -> None:
    module, pip = PACKAGES[option]
    if not _installed(module):
        raise ConfigError(
            f"train.speed.{param}: {option} needs the {module!r} package, which is not "
            f"installed: run `{pip}` (or `pip install -e '.[gpu]'`), or set it off in params.yaml"
        )


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@cache
def resolve(speed: SpeedConfig, cuda: bool | None = None) -> SpeedOptions:
    """The options this machine can honour (see the module docstring); logs each fallback once."""
    cuda = _cuda() if cuda is None else cuda
    liger, attn = speed.liger_kernel, speed.attn_implementation
    if liger:
        _require("liger_kernel", "liger_kernel")
    if attn in PACKAGES:
        _require("attn_implementation", attn)
    if liger and not cuda:
        log.warning("train.speed.liger_kernel: no CUDA device; training without Liger kernels")
        liger = False
    if attn in CUDA_ONLY_ATTENTION and not cuda:
        log.warning("train.speed.attn_implementation: %s needs CUDA; using sdpa", attn)
        attn = "sdpa"
    return SpeedOptions(
        attn_implementation=None if attn == "auto" else attn,
        liger_kernel=liger,
        torch_compile=speed.torch_compile,
        auto_batch_size=speed.auto_batch_size,
    )


def useful_tokens(inputs: dict):
    """Tokens of one collated batch that are not padding (all of a packed row). A tensor on the
    batch's device where there is a mask: no GPU sync per micro-batch (StepClock reads it once
    per optimizer step)."""
    if "attention_mask" in inputs:
        return inputs["attention_mask"].sum()
    return inputs["input_ids"].numel()


class StepClock(TrainerCallback):
    """Tokens/s from the end of the first optimizer step (warm-up: CUDA kernels, torch.compile)
    to the end of the last one, and the peak GPU memory allocated while training.

    `tokens` reads the running count of useful tokens this process has trained on.
    Evaluation between epochs falls inside the window; a checkpoint save too.
    """

    def __init__(self, tokens: Callable[[], Any]) -> None:
        self.tokens = tokens
        self.first: tuple[float, int] | None = None
        self.last: tuple[float, int] | None = None

    def _now(self) -> tuple[float, int]:
        if _cuda():
            import torch

            torch.cuda.synchronize()
        return time.perf_counter(), int(self.tokens())

    def on_train_begin(self, args, state, control, **kwargs):
        if _cuda():
            import torch

            torch.cuda.reset_peak_memory_stats()

    def on_step_end(self, args, state, control, **kwargs):
        if self.first is None:
            self.first = self._now()
        else:
            self.last = self._now()

    def metrics(self) -> dict[str, float]:
        """`steady_tokens_per_second` (needs two optimizer steps) and `peak_gpu_mib` (CUDA)."""
        out: dict[str, float] = {}
        if self.first and self.last and self.last[0] > self.first[0]:
            tokens = self.last[1] - self.first[1]
            out["steady_tokens_per_second"] = round(tokens / (self.last[0] - self.first[0]), 1)
        if _cuda():
            import torch

            out["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        return out
