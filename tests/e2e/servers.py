"""Helpers for end-to-end tests that need real servers or a real DVC project.

- `dvc_project`: a copy of this repository's pipeline (code, dvc.yaml, prefect.yaml, .dvc/config)
  as its own git + DVC repository, with tiny params and a slice of the data.
- `server`: a server subprocess on a free loopback port, polled until healthy, always stopped.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from pipeline.environment import offline_env
from tests.conftest import REPO, make_project

BIN = Path(sys.executable).parent
# What a DVC copy of the project needs: stage code (dvc.yaml's deps), the flows, the configs.
PROJECT_FILES = ("pipeline", "flows", "dvc.yaml", "prefect.yaml", ".dvc/config", ".dvcignore")


def env(**extra: str) -> dict[str, str]:
    """The environment for a subprocess: this venv's tools first on PATH, offline settings."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
    base |= {
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(REPO),
    }
    return offline_env(base, hub_offline=True) | extra


def run(cmd: list[str], cwd: Path, environ: dict[str, str], timeout: float = 600) -> str:
    out = subprocess.run(cmd, cwd=cwd, env=environ, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{' '.join(cmd)} -> {out.returncode}\n{out.stdout}\n{out.stderr}"
    return out.stdout


def dvc_project(root: Path, rows: list[dict], overrides: dict) -> Path:
    """This repository's pipeline as a fresh git + DVC project with its own params and data."""
    make_project(root, rows, overrides)
    for name in PROJECT_FILES:
        src, dst = REPO / name, root / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dst)
    shutil.copy2(REPO / ".gitignore", root / ".gitignore")
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com"]
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "project"]):
        run(git + cmd, root, env())
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}:\n{tail(log)}")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        time.sleep(0.5)
    raise AssertionError(f"{url} not healthy after {timeout:.0f} s:\n{tail(log)}")


def tail(path: Path, chars: int = 6000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"


@contextlib.contextmanager
def process(cmd: list[str], cwd: Path, environ: dict[str, str], log: Path) -> Iterator:
    """A background process writing to `log`; terminated (then killed) on the way out."""
    with log.open("w") as out:
        proc = subprocess.Popen(
            cmd, cwd=cwd, env=environ, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            yield proc
        finally:
            stop(proc)


def stop(proc: subprocess.Popen) -> None:
    """Stop a process and its children (its own session, started by `process`)."""
    import signal

    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@contextlib.contextmanager
def server(
    cmd: list[str], health: str, cwd: Path, environ: dict[str, str], log: Path, timeout=180
) -> Iterator[subprocess.Popen]:
    with process(cmd, cwd, environ, log) as proc:
        wait_healthy(health, proc, log, timeout)
        yield proc


@contextlib.contextmanager
def mlflow_server(workdir: Path) -> Iterator[str]:
    """`mlflow server` on a free loopback port, its store and artifacts under `workdir`."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    cmd = [
        str(BIN / "mlflow"),
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        f"sqlite:///{workdir / 'server.db'}",
        "--artifacts-destination",
        str(workdir / "artifacts"),
    ]
    url = f"http://127.0.0.1:{port}"
    environ = env(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")  # as `make mlflow-server`
    with server(cmd, f"{url}/health", workdir, environ, workdir / "mlflow-server.log"):
        yield url


def job_runners(workdir: Path) -> list[str]:
    """The command lines of MLflow's background job runners (`huey_consumer`) serving the
    store under `workdir`: what `mlflow server` starts unless job execution is off."""
    import psutil

    found = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            cmdline = " ".join(proc.cmdline())
            if "huey_consumer" in cmdline and str(workdir) in str(proc.environ()):
                found.append(cmdline)
    return found


# A Prefect database migrated once per test session (the `prefect_db` fixture): a server on a
# fresh PREFECT_HOME runs every migration first, about 7 s of each start on 2 cores, where a
# user's server (its database kept in ~/.prefect) runs them once.
PREFECT_DB: list[Path] = []


def prefect_home(home: Path) -> Path:
    """`home` for PREFECT_HOME, holding a copy of the session's migrated database if there is
    one (a server or a flow's temporary server then starts without migrating)."""
    home.mkdir(parents=True, exist_ok=True)
    if PREFECT_DB and not (home / "prefect.db").exists():
        shutil.copy2(PREFECT_DB[0], home / "prefect.db")
    return home


def migrate_prefect_db(home: Path) -> Path:
    """A Prefect database under `home` with every migration applied; its path."""
    run(
        [str(BIN / "prefect"), "server", "database", "upgrade", "-y"],
        home.parent,
        env(PREFECT_HOME=str(prefect_home(home))),
    )
    return home / "prefect.db"


@contextlib.contextmanager
def prefect_server(workdir: Path) -> Iterator[str]:
    """`prefect server start` on a free loopback port, PREFECT_HOME under `workdir`."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    cmd = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    environ = env(
        PREFECT_HOME=str(prefect_home(workdir / "server-home")),
        PREFECT_SERVER_API_HOST="127.0.0.1",
        PREFECT_SERVER_UI_ENABLED="false",
    )
    url = f"http://127.0.0.1:{port}/api"
    with server(cmd, f"{url}/health", workdir, environ, workdir / "prefect-server.log"):
        yield url
