"""Long work says so: the estimate after a few measured steps."""

from __future__ import annotations

import logging

import pytest

from pipeline import progress
from pipeline.progress import WarmupEstimate, duration


@pytest.mark.parametrize(
    ("seconds", "text"), [(40, "40 s"), (12 * 60, "12 min"), (5.9 * 3600, "5.9 h")]
)
def test_duration(seconds, text):
    assert duration(seconds) == text


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_estimate_leaves_out_the_first_step_and_waits_for_enough_time(monkeypatch, caplog):
    clock = _Clock()
    monkeypatch.setattr(progress.time, "perf_counter", clock)
    timer = WarmupEstimate("base", planned=30_400, warmup=5, seconds=3.0)
    caplog.set_level(logging.INFO, logger="pipeline.progress")
    clock.now = 60.0  # a slow first step (one-off costs) is not measured
    timer.step()
    for _ in range(5):
        clock.now += 0.5
        timer.step()
    assert timer.seconds_per_step is None and not caplog.records  # 5 steps, but only 2.5 s
    clock.now += 0.5
    timer.step()
    assert timer.seconds_per_step == pytest.approx(0.5)
    (record,) = caplog.records
    assert "30393 steps left" in record.message and "4.2 h" in record.message
    for _ in range(10):
        timer.step()
    assert len(caplog.records) == 1  # said once


def test_estimate_per_unit_of_work_when_steps_differ(monkeypatch, caplog):
    """Batches grouped by length: a long batch first must not make the whole run look long."""
    clock = _Clock()
    monkeypatch.setattr(progress.time, "perf_counter", clock)
    timer = WarmupEstimate("train", planned=100, done=40, warmup=2, seconds=0, mean_work=100)
    caplog.set_level(logging.INFO, logger="pipeline.progress")
    timer.step(1000)
    clock.now += 4.0  # 400 tokens in 4 s
    timer.step(400)
    clock.now += 1.0  # 100 tokens in 1 s
    timer.step(100)
    assert timer.seconds_per_step == pytest.approx(1.0)  # 0.01 s a token x 100 tokens a step
    assert "57 steps left" in caplog.records[0].message


def test_the_train_estimate_reads_a_device_tensor_token_count_per_step(caplog):
    """`StageTrainer` counts tokens as a tensor (no GPU sync per micro-batch); the estimate must
    see the count grow (an in-place `+=` once made every step's work 0: an endless estimate)."""
    import logging
    from types import SimpleNamespace

    import torch

    from pipeline import progress
    from pipeline.training.trainer import _Estimate

    trainer = SimpleNamespace(tokens=torch.tensor(0), train_dataset={"length": [100] * 40})
    estimate = _Estimate(trainer)
    args = SimpleNamespace(
        num_train_epochs=1, train_batch_size=4, gradient_accumulation_steps=1, world_size=1
    )
    state = SimpleNamespace(max_steps=10, global_step=0, is_world_process_zero=True)
    caplog.set_level(logging.INFO, logger="pipeline")
    estimate.on_train_begin(args, state, None)
    estimate.timer.warmup, estimate.timer.seconds = 2, 0.0
    for _ in range(5):
        for _ in range(4):  # micro-batches, as StageTrainer.training_step counts them
            trainer.tokens += torch.tensor(100)  # in place: the callback must copy the count
        estimate.on_step_end(args, state, None)
    assert estimate.timer.seconds_per_step is not None
    assert 0 < estimate.timer.seconds_per_step < 60
    assert any("s a step, from" in r.message for r in caplog.records)
    assert progress.duration(estimate.timer.seconds_per_step * 5)
