"""One team stack per test session (a fresh folder, free ports), stopped by pid at the end
even when a test fails; two workspaces cloned from one bare git origin.

Workspace A made the project: its data/raw is tracked by DVC (data/raw.dvc) and pushed to the
stack's S3 remote. Workspace B is the training machine: the nightly deployment was deployed
from it and its worker runs there."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest

from team.stack import Stack
from tests.conftest import PERMISSIVE_GATE, REPO, TINY_OVERRIDES, read_rows
from tests.e2e import servers
from tests.team.teamkit import Team, dvc, git

ROWS = read_rows(REPO / "data" / "raw" / "medical_dialogues.jsonl")[:60]
OVERRIDES = TINY_OVERRIDES | PERMISSIVE_GATE | {"train.save_steps": 5}


def _workspace_a(root: Path) -> Path:
    servers.dvc_project(root, ROWS, OVERRIDES)
    git(root, "rm", "-r", "-q", "--cached", "data/raw")
    dvc(root, servers.env(), "add", "data/raw")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "data/raw tracked by DVC")
    return root


@pytest.fixture(scope="session")
def team(tmp_path_factory) -> Team:
    from team import postgres
    from team.errors import StackError

    try:
        postgres.bin_dir()
    except StackError as e:
        pytest.skip(f"team stack: {e}")
    tmp = tmp_path_factory.mktemp("team")
    # PostgreSQL runs as the `postgres` user when the tests run as root: its folder must be
    # reachable by it, which pytest's own 0700 temp folders are not.
    base = Path(tempfile.mkdtemp(prefix="team-stack-"))
    os.chmod(base, 0o755)
    a = _workspace_a(tmp / "a")
    origin = tmp / "origin.git"
    git(tmp, "init", "-q", "--bare", "-b", "main", str(origin))
    git(a, "branch", "-M", "main")
    git(a, "remote", "add", "origin", str(origin))
    git(a, "push", "-q", "-u", "origin", "main")
    b = tmp / "b"
    git(tmp, "clone", "-q", str(origin), str(b))
    stack = Stack(base / "stack", b)
    previous = signal.signal(signal.SIGTERM, _stop_then_die(stack, base))
    try:
        stack.up()
        from team import services

        services.configure_dvc(a, stack.read_env())
        dvc(a, servers.env() | stack.read_env(), "push")
        yield Team(stack, base, origin, a, b)
    finally:
        signal.signal(signal.SIGTERM, previous)
        stack.down()
        shutil.rmtree(base, ignore_errors=True)


def _stop_then_die(stack: Stack, base: Path):
    """A SIGTERM to the test run (a CI timeout) skips pytest's finalizers: stop the stack's
    servers by pid first, then die of the signal as usual."""

    def handler(signum, frame):
        stack.down()
        shutil.rmtree(base, ignore_errors=True)
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    return handler
