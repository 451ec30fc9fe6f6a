"""The servers `make` starts for a user run without background work nobody asked for."""

from __future__ import annotations

import subprocess

from tests.conftest import REPO


def _dry(*args: str) -> str:
    """The last command `make -n` prints for `args` (nothing is run), continuation lines joined."""
    dry = subprocess.run(
        ["make", "--no-print-directory", "-n", *args], cwd=REPO, capture_output=True, text=True
    )
    assert dry.returncode == 0, dry.stderr
    return dry.stdout.replace("\\\n", " ").splitlines()[-1]


def test_mlflow_server_starts_without_the_job_runner_unless_asked():
    """MLflow's job runner (seven huey_consumer processes polling a queue of GenAI jobs this
    project never submits) costs ~25 CPU-s in the server's first 90 s idle (docs/prefect.md)."""
    line = _dry("mlflow-server")
    assert "bin/mlflow server" in line
    assert line.startswith("MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false "), line
    assert _dry("mlflow-server", "MLFLOW_JOBS=true").startswith(
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION=true "
    )
