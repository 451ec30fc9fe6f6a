"""`make run PROFILE=...` for real, on a one-stage DVC project (no model): the profile's values
land in params.yaml with its comments kept, `dvc exp run` reruns the stage that reads them, and
DVC records the run as an experiment."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow

STAGE = """stages:
  echo:
    cmd: python -c "import yaml; p = yaml.safe_load(open('params.yaml'))['train'];
      open('out.txt', 'w').write(f\\"{p['lr']} {p['lora']['r']}\\")"
    params:
      - train.lr
      - train.lora.r
    outs:
      - out.txt
"""


def _run(root: Path, *argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{argv}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
    return done


def test_make_run_with_a_profile_runs_a_dvc_experiment(tmp_path):
    root = tmp_path / "project"
    (root / "configs").mkdir(parents=True)
    shutil.copytree(
        REPO / "pipeline", root / "pipeline", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(REPO / "configs" / "run_profile.py", root / "configs")
    shutil.copy(REPO / "params.yaml", root)
    (root / "dvc.yaml").write_text(STAGE, encoding="utf-8")
    (root / "configs" / "try.yaml").write_text(
        "# make run PROFILE=configs/try.yaml\ntrain:\n  lr: 0.0005\n  lora:\n    r: 8\n",
        encoding="utf-8",
    )
    _run(root, "git", "init", "-q")
    _run(root, sys.executable, "-m", "dvc", "init", "-q")
    _run(root, sys.executable, "-m", "dvc", "repro")
    assert (root / "out.txt").read_text() == "0.002 64"
    _run(root, "git", "add", "-A")
    _run(root, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "default")
    before = (root / "params.yaml").read_text(encoding="utf-8")

    # what `make run PROFILE=configs/try.yaml` runs (tests/unit/test_profiles.py checks that)
    _run(root, sys.executable, "configs/run_profile.py", "configs/try.yaml")

    assert (root / "out.txt").read_text() == "0.0005 8"
    after = (root / "params.yaml").read_text(encoding="utf-8")
    assert len(before.splitlines()) == len(after.splitlines())
    changed = [
        (a, b) for a, b in zip(before.splitlines(), after.splitlines(), strict=True) if a != b
    ]
    assert len(changed) == 2
    assert all(b.split("#")[1:] == a.split("#")[1:] for a, b in changed)  # comments kept
    show = _run(root, sys.executable, "-m", "dvc", "exp", "show", "--json")
    assert "0.0005" in show.stdout
