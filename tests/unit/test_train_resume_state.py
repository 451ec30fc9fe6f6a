"""What a resumed run restores: the data order of any epoch, and only complete checkpoints."""

from __future__ import annotations

import json

import torch

from pipeline.training import resume

LENGTHS = [5, 40, 7, 33, 12, 18, 25, 9, 30, 14, 21, 3, 27, 16, 11, 38]


def _order(epoch: int, seed: int = 42) -> list[int]:
    sampler = resume.EpochSampler(4, LENGTHS, seed)
    sampler.set_epoch(epoch)
    return list(sampler)


def test_epoch_order_depends_on_seed_and_epoch_only_not_on_the_global_rng():
    torch.manual_seed(0)
    first = [_order(e) for e in range(3)]
    torch.manual_seed(1234)
    torch.rand(1000)  # a run that consumed the global RNG differently (dropout, resume)
    assert [_order(e) for e in range(3)] == first
    assert first[0] != first[1] != first[2]  # still shuffled anew every epoch
    assert _order(0, seed=7) != first[0]
    assert all(sorted(o) == list(range(len(LENGTHS))) for o in first)


def test_a_resumed_epoch_sees_the_same_batches_as_an_uninterrupted_one():
    """The Trainer restores its RNG only after an epoch's iterator has started: the order must
    not come from there. A sampler iterated again for the same epoch gives the same order."""
    sampler = resume.EpochSampler(4, LENGTHS, 42)
    sampler.set_epoch(2)
    before = list(sampler)
    sampler.set_epoch(0)
    list(sampler)
    sampler.set_epoch(2)
    assert list(sampler) == before


def _checkpoint(root, step: int, *, state: str = '{"global_step": 1}', skip: str = ""):
    path = root / f"checkpoint-{step}"
    path.mkdir(parents=True)
    for name in resume.CHECKPOINT_FILES:
        if name != skip:
            (path / name).write_text(state if name == "trainer_state.json" else "x")
    return path


def test_resume_skips_a_checkpoint_a_kill_left_half_written(tmp_path):
    ckpt = tmp_path / "checkpoints"
    ckpt.mkdir()
    (ckpt / resume.STATE_FILE).write_text(json.dumps({"fingerprint": "f", "run_id": "r"}))
    good = _checkpoint(ckpt, 10)
    assert resume.resume_point(ckpt, "f") == (good, "r")
    _checkpoint(ckpt, 15, state='{"global_step": 1')  # killed while writing trainer_state
    _checkpoint(ckpt, 20, skip="rng_state.pth")
    assert resume.resume_point(ckpt, "f") == (good, "r")
    assert resume.resume_point(ckpt, "other") == (None, None) and not ckpt.exists()


def test_checkpoints_of_earlier_code_are_not_resumed(project, monkeypatch):
    """Checkpoints written before the data order was seeded per epoch resume into the wrong
    batches: a new checkpoint format changes the fingerprint, so they are discarded."""
    from pipeline.config import load_config

    cfg = load_config(project / "params.yaml")
    now = resume.fingerprint(cfg)
    monkeypatch.setattr(resume, "CHECKPOINT_FORMAT", resume.CHECKPOINT_FORMAT - 1)
    assert resume.fingerprint(cfg) != now


def test_a_finished_run_is_not_resumed_so_a_forced_rerun_trains_again(tmp_path):
    """`dvc repro --force` (and the nightly flow's force) reruns `train` with unchanged inputs:
    resuming from the finished run's last checkpoint would train nothing (found in issue 17's
    work: a forced retrain logged `resumed_from_step` = the last step)."""
    ckpt = tmp_path / "checkpoints"
    resume.record(ckpt, "f", "r")
    last = _checkpoint(ckpt, 40)
    assert resume.resume_point(ckpt, "f") == (last, "r")  # interrupted: resume
    resume.finish(ckpt)
    assert resume.resume_point(ckpt, "f") == (None, None) and not ckpt.exists()
