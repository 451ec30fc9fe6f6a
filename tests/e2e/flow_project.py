"""One tiny DVC copy of the project, built once by `dvc repro` for the flow tests and copied per
test: a gate that always passes, checkpoints every 5 training steps. The nightly test runs the
same rows and params from scratch through the flow and compares the two dvc.lock files."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import PERMISSIVE_GATE, REPO, TINY_OVERRIDES, read_rows
from tests.e2e import servers

ROWS = read_rows(REPO / "data" / "raw" / "medical_dialogues.jsonl")[:80]
OVERRIDES = TINY_OVERRIDES | PERMISSIVE_GATE | {"train.save_steps": 5}


def build(root: Path) -> str:
    """The project at `root`, reproduced by `dvc repro`; its output."""
    servers.dvc_project(root, ROWS, OVERRIDES)
    environ = servers.env(PYTHONPATH=str(root))
    return servers.run([sys.executable, "-m", "dvc", "repro"], root, environ, timeout=1200)


def copy(built: Path, root: Path) -> Path:
    return Path(shutil.copytree(built, root, symlinks=True))


def flow_env(root: Path, tmp: Path, **extra: str) -> dict[str, str]:
    return servers.env(
        PYTHONPATH=str(root),
        PREFECT_HOME=str(servers.prefect_home(tmp / "prefect-home")),
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120",  # 2 busy cores: be patient
        **extra,
    )


def dvc_status(root: Path) -> str:
    return servers.run([sys.executable, "-m", "dvc", "status"], root, servers.env())


def start(module: str, root: Path, environ: dict[str, str], log: Path, *args: str):
    """`python -m <module>` in its own process group, output to `log`."""
    out = log.open("w")
    return subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=root,
        env=environ,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def wait_for(predicate, timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout:.0f} s\n{servers.tail(log)}")
