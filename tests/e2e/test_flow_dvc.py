"""`python -m flows.full_pipeline` on a tiny project that `dvc repro` built: it runs nothing
when DVC says everything is up to date; SIGTERM to its process group (the temporary Prefect
server included) ends it within seconds with a clear line, leaves train stale in `dvc status`,
and the next run resumes training from the checkpoint, with the stages' own log lines and
progress bars in the run's log."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from flows.shutdown import GRACE_S
from pipeline import STAGES
from pipeline.training.resume import complete
from tests.e2e import flow_project, servers

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_db")]


def _mtimes(root: Path) -> dict[str, int]:
    tracked = ["dvc.lock", "data", "models", "reports", "mlflow"]
    files = [root / "dvc.lock"] + [
        f for top in tracked[1:] for f in (root / top).rglob("*") if f.is_file()
    ]
    return {str(f.relative_to(root)): f.stat().st_mtime_ns for f in files}


def _flow(root: Path, tmp: Path, timeout: float = 900) -> tuple[str, float]:
    start = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "flows.full_pipeline"],
        cwd=root,
        env=flow_project.flow_env(root, tmp),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-6000:]
    return text, time.monotonic() - start


def test_flow_runs_nothing_on_an_up_to_date_project(flow_built, tmp_path):
    root = flow_project.copy(flow_built, tmp_path / "p")
    assert "up to date" in flow_project.dvc_status(root)
    before = _mtimes(root)

    text, seconds = _flow(root, tmp_path)

    for name in STAGES:
        assert f"stage {name}: up to date (dvc status), skipped" in text, text[-4000:]
        assert f"stage {name}: started" not in text
    assert "every stage up to date: nothing ran" in text
    assert _mtimes(root) == before  # no output, lock or MLflow file touched
    print(f"flow on an up-to-date project: {seconds:.1f} s")


def _set(root: Path, section: str, key: str, value) -> None:
    tree = yaml.safe_load((root / "params.yaml").read_text())
    tree[section][key] = value
    (root / "params.yaml").write_text(yaml.safe_dump(tree, allow_unicode=True))


def test_sigterm_stops_the_flow_within_seconds_and_training_resumes(flow_built, tmp_path):
    root = flow_project.copy(flow_built, tmp_path / "p")
    _set(root, "train", "lr", 0.0021)
    # About 60 steps, a checkpoint every 5 (two kept): the first complete checkpoint is there
    # after step 5 and training goes on for ~55 more, seconds even on an idle machine, while
    # the test looks every 0.5 s for any complete one (a particular one may be rotated away).
    _set(root, "train", "epochs", 6)
    checkpoints = root / "models" / "checkpoints"
    shutil.rmtree(checkpoints)  # the build's (train would remove them as stale anyway)
    assert flow_project.dvc_status(root).startswith("train:")
    log = tmp_path / "flow.log"
    proc = flow_project.start(
        "flows.full_pipeline", root, flow_project.flow_env(root, tmp_path), log
    )
    try:
        flow_project.wait_for(
            lambda: any(map(complete, checkpoints.glob("checkpoint-*"))) or proc.poll() is not None,
            600,
            "a first complete checkpoint",
            log,
        )
        assert proc.poll() is None, "the flow ended before the first checkpoint"
        sent = time.monotonic()
        os.killpg(proc.pid, signal.SIGTERM)  # the flow and its temporary server alike
        proc.wait(timeout=GRACE_S + 20)
        took = time.monotonic() - sent
    finally:
        servers.stop(proc)
    text = log.read_text(errors="replace")
    print(f"exited {took:.1f} s after SIGTERM with {proc.returncode}")
    # Its temporary server got the signal too: nothing is left to report to, so the flow does
    # not wait out the grace kept for a server that still answers (it did: 10.0 s, every time).
    assert took < GRACE_S / 2, text[-4000:]
    assert "nothing left to report to, exiting now" in text, text[-4000:]
    assert proc.returncode == 143, text[-4000:]
    assert (
        "SIGTERM: stopping the flow run during stage train: train is not recorded in dvc.lock"
        in (text)
    )
    with pytest.raises(ProcessLookupError):  # nothing of the flow's process group is left
        os.killpg(proc.pid, 0)
    assert flow_project.dvc_status(root).startswith("train:")  # not recorded: will rerun

    text, _ = _flow(root, tmp_path)

    assert "train: resuming from checkpoint-" in text, text[-6000:]  # the stage's own log line
    assert "stage train: started (changed deps: params.yaml (train modified)" in text
    assert "stage train: done in" in text
    assert "progress: 100% " in text  # the Trainer's progress bar, as log lines
    for name in ("ingest", "validate", "split", "base", "preprocess"):
        assert f"stage {name}: up to date (dvc status), skipped" in text
    assert "up to date" in flow_project.dvc_status(root)
